"""The WSDL and XSD of an ICAT server, generated from an entity schema.

ICAT publishes a JAX-WS (Metro) WSDL whose types live in a separate schema
document at ``?xsd=1``.  SOAP clients (suds, and so python-icat) build their
whole object model from these two documents, so their shape matters more than
their prose: every entity is a complexType extending ``entityBaseBean``,
elements are unqualified and alphabetical, primitive booleans are required,
and every list (``return`` of list operations, ``fields``, ``fieldNames``,
one-to-many relations) is ``maxOccurs="unbounded"`` — otherwise suds would
collapse a one-item list into a bare value.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from ..schema import ATTRIBUTE, ENUMS, MANY, ONE, Schema

TNS = "http://icatproject.org"

#: Java attribute types → XSD types (enums are named simple types).
XSD_TYPES = {
    "String": "xs:string", "Long": "xs:long", "Integer": "xs:int",
    "Double": "xs:double", "Date": "xs:dateTime", "boolean": "xs:boolean",
    "ParameterValueType": "tns:parameterValueType", "StudyStatus": "tns:studyStatus",
}

#: The base type's own elements, in JAXB's (alphabetical) order.
BASE_FIELDS = (("createId", "xs:string"), ("createTime", "xs:dateTime"),
               ("id", "xs:long"), ("modId", "xs:string"), ("modTime", "xs:dateTime"))

EXCEPTION_TYPES = ("BAD_PARAMETER", "INTERNAL", "INSUFFICIENT_PRIVILEGES",
                   "NO_SUCH_OBJECT_FOUND", "OBJECT_ALREADY_EXISTS", "SESSION",
                   "VALIDATION", "NOT_IMPLEMENTED")

# An element spec is (name, type, occurrence) where occurrence is "opt"
# (minOccurs=0), "req" (exactly one) or "list" (0..unbounded).
_SID = ("sessionId", "xs:string", "opt")
_BEAN = ("bean", "tns:entityBaseBean", "opt")
_BEANS = ("beans", "tns:entityBaseBean", "list")

#: operation → (request elements, response ``return`` element or None).
OPERATIONS = {
    "login": ((("plugin", "xs:string", "opt"), ("credentials", None, "opt")),
              ("xs:string", "opt")),
    "logout": ((_SID,), None),
    "refresh": ((_SID,), None),
    "getRemainingMinutes": ((_SID,), ("xs:double", "req")),
    "getUserName": ((_SID,), ("xs:string", "opt")),
    "getApiVersion": ((), ("xs:string", "opt")),
    "getVersion": ((), ("xs:string", "opt")),
    "getEntityNames": ((), ("xs:string", "list")),
    "getEntityInfo": ((("beanName", "xs:string", "opt"),), ("tns:entityInfo", "opt")),
    "getAuthenticatorInfo": ((), ("tns:authenticatorInfo", "list")),
    "getProperties": ((_SID,), ("xs:string", "list")),
    "search": ((_SID, ("query", "xs:string", "opt")), ("xs:anyType", "list")),
    "get": ((_SID, ("query", "xs:string", "opt"), ("primaryKey", "xs:long", "req")),
            ("tns:entityBaseBean", "opt")),
    "create": ((_SID, _BEAN), ("xs:long", "req")),
    "createMany": ((_SID, _BEANS), ("xs:long", "list")),
    "update": ((_SID, _BEAN), None),
    "delete": ((_SID, _BEAN), None),
    "deleteMany": ((_SID, _BEANS), None),
    "isAccessAllowed": ((_SID, _BEAN, ("accessType", "tns:accessType", "opt")),
                        ("xs:boolean", "req")),
}

#: Helper complexTypes of the API (not entities).
_HELPER_TYPES = {
    "entityInfo": (("classComment", "xs:string", "opt"),
                   ("constraints", "tns:constraint", "nlist"),
                   ("fields", "tns:entityField", "nlist")),
    "constraint": (("fieldNames", "xs:string", "nlist"),),
    "entityField": (("comment", "xs:string", "opt"), ("name", "xs:string", "opt"),
                    ("notNullable", "xs:boolean", "req"), ("relType", "tns:relType", "opt"),
                    ("stringLength", "xs:int", "opt"), ("type", "xs:string", "opt")),
    "authenticatorInfo": (("admin", "xs:boolean", "req"), ("friendly", "xs:string", "opt"),
                          ("keys", "tns:authenticatorCredentialKey", "nlist"),
                          ("mnemonic", "xs:string", "opt")),
    "authenticatorCredentialKey": (("hide", "xs:boolean", "req"), ("name", "xs:string", "opt"),
                                   ("pattern", "xs:string", "opt")),
    "fieldSet": (("fields", "xs:anyType", "nlist"),),
    "IcatException": (("message", "xs:string", "opt"), ("offset", "xs:int", "req"),
                      ("type", "tns:icatExceptionType", "opt")),
}

#: The XSD names of the enumerations the WSDL defines, with their values
#: (the codec reads an element of these types as text).
ENUM_TYPES = {
    "parameterValueType": ENUMS["ParameterValueType"],
    "studyStatus": ENUMS["StudyStatus"],
    "relType": (ATTRIBUTE, "MANY", "ONE"),
    "accessType": ("READ", "UPDATE", "DELETE", "CREATE"),
    "icatExceptionType": EXCEPTION_TYPES,
}

_CREDENTIALS = (
    '<xs:element name="credentials" minOccurs="0"><xs:complexType><xs:sequence>'
    '<xs:element name="entry" minOccurs="0" maxOccurs="unbounded"><xs:complexType>'
    '<xs:sequence><xs:element name="key" type="xs:string" minOccurs="0"/>'
    '<xs:element name="value" type="xs:string" minOccurs="0"/></xs:sequence>'
    '</xs:complexType></xs:element></xs:sequence></xs:complexType></xs:element>')


def _element(name, type_, occurs) -> str:
    if type_ is None and name == "credentials":
        return _CREDENTIALS
    occ = {"opt": ' minOccurs="0"', "req": "",
           "list": ' minOccurs="0" maxOccurs="unbounded"',
           "nlist": ' nillable="true" minOccurs="0" maxOccurs="unbounded"'}[occurs]
    return '<xs:element name="%s" type="%s"%s/>' % (name, type_, occ)


def _sequence(elements) -> str:
    if not elements:
        return "<xs:sequence/>"
    return "<xs:sequence>%s</xs:sequence>" % "".join(_element(*e) for e in elements)


def entity_elements(etype) -> list[tuple[str, str, str]]:
    """An entity's own elements in JAXB order (alphabetical), as element specs."""
    specs = []
    for name, f in sorted(etype.fields.items()):
        if f.kind == ATTRIBUTE:
            xtype = XSD_TYPES.get(f.type, "xs:string")
            specs.append((name, xtype, "req" if f.type == "boolean" else "opt"))
        elif f.kind == ONE:
            specs.append((name, "tns:" + _instance(f.type), "opt"))
        else:
            specs.append((name, "tns:" + _instance(f.type), "nlist"))
    return specs


def _instance(name: str) -> str:
    return name[0].lower() + name[1:]


def make_xsd(schema: Schema) -> bytes:
    """The ``?xsd=1`` schema document: operation wrappers, entities, helpers."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<xs:schema xmlns:tns="%s" xmlns:xs="http://www.w3.org/2001/XMLSchema" '
           'version="1.0" targetNamespace="%s">' % (TNS, TNS)]
    names = [(op, op) for op in OPERATIONS] + [(op + "Response", op + "Response")
                                               for op in OPERATIONS]
    names.append(("IcatException", "IcatException"))
    for el, t in sorted(names):
        out.append('<xs:element name="%s" type="tns:%s"/>' % (el, t))
    for op, (request, response) in OPERATIONS.items():
        out.append('<xs:complexType name="%s">%s</xs:complexType>' % (op, _sequence(request)))
        resp = [("return",) + response] if response else []
        out.append('<xs:complexType name="%sResponse">%s</xs:complexType>'
                   % (op, _sequence(resp)))
    out.append('<xs:complexType name="entityBaseBean" abstract="true">%s</xs:complexType>'
               % _sequence([(n, t, "opt") for n, t in BASE_FIELDS]))
    for etype in schema:
        out.append('<xs:complexType name="%s"><xs:complexContent>'
                   '<xs:extension base="tns:entityBaseBean">%s</xs:extension>'
                   '</xs:complexContent></xs:complexType>'
                   % (etype.instance_name, _sequence(entity_elements(etype))))
    for name, elements in _HELPER_TYPES.items():
        out.append('<xs:complexType name="%s">%s</xs:complexType>' % (name, _sequence(elements)))
    for name, values in ENUM_TYPES.items():
        out.append('<xs:simpleType name="%s"><xs:restriction base="xs:string">%s'
                   '</xs:restriction></xs:simpleType>'
                   % (name, "".join('<xs:enumeration value="%s"/>' % v for v in values)))
    out.append("</xs:schema>")
    return "\n".join(out).encode("utf-8")


def make_wsdl(service_url: str) -> bytes:
    """The WSDL document; its types are imported from ``<service_url>?xsd=1``."""
    xsd_url = quoteattr(service_url + "?xsd=1")
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" '
           'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
           'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="%s" '
           'targetNamespace="%s" name="ICATService">' % (TNS, TNS),
           '<types><xsd:schema><xsd:import namespace="%s" schemaLocation=%s/>'
           '</xsd:schema></types>' % (TNS, xsd_url)]
    for op in OPERATIONS:
        for msg in (op, op + "Response"):
            out.append('<message name="%s"><part name="parameters" element="tns:%s"/></message>'
                       % (msg, msg))
    out.append('<message name="IcatException">'
               '<part name="fault" element="tns:IcatException"/></message>')
    out.append('<portType name="ICAT">')
    for op in OPERATIONS:
        out.append('<operation name="%s"><input message="tns:%s"/>'
                   '<output message="tns:%sResponse"/>'
                   '<fault message="tns:IcatException" name="IcatException"/></operation>'
                   % (op, op, op))
    out.append('</portType>')
    out.append('<binding name="ICATPortBinding" type="tns:ICAT">'
               '<soap:binding transport="http://schemas.xmlsoap.org/soap/http" '
               'style="document"/>')
    for op in OPERATIONS:
        out.append('<operation name="%s"><soap:operation soapAction=""/>'
                   '<input><soap:body use="literal"/></input>'
                   '<output><soap:body use="literal"/></output>'
                   '<fault name="IcatException"><soap:fault name="IcatException" '
                   'use="literal"/></fault></operation>' % op)
    out.append('</binding>')
    out.append('<service name="ICATService"><port name="ICATPort" '
               'binding="tns:ICATPortBinding"><soap:address location=%s/></port></service>'
               % quoteattr(service_url))
    out.append('</definitions>')
    return "\n".join(out).encode("utf-8")


def entity_info(schema: Schema, name: str) -> dict | None:
    """``getEntityInfo`` for ``name`` as a plain dict, or None if unknown.

    Besides the entities, ICAT answers for the abstract ``Parameter`` (the
    fields every ``*Parameter`` shares) and ``EntityBaseBean``; python-icat
    asks for ``Parameter`` first, so it must work.
    """
    meta = [_field("id", ATTRIBUTE, "Long"), _field("createId", ATTRIBUTE, "String"),
            _field("createTime", ATTRIBUTE, "Date"), _field("modId", ATTRIBUTE, "String"),
            _field("modTime", ATTRIBUTE, "Date")]
    if name == "EntityBaseBean":
        return {"classComment": None, "constraint": [], "fields": meta}
    if name == "Parameter":
        base = next((schema[n] for n in ("DatafileParameter", "DatasetParameter",
                                         "InvestigationParameter") if n in schema), None)
        if base is None:
            return None
        fields = [f for f in base.fields.values() if f.kind != ONE or f.name == "type"]
        return {"classComment": None, "constraint": [],
                "fields": meta + [_from_field(f) for f in sorted(fields, key=lambda f: f.name)]}
    if name not in schema:
        return None
    etype = schema[name]
    return {"classComment": etype.comment, "constraint": list(etype.constraint),
            "fields": meta + [_from_field(f) for _, f in sorted(etype.fields.items())]}


def _from_field(f) -> dict:
    length = (f.length or 255) if f.kind == ATTRIBUTE and f.type == "String" else None
    return _field(f.name, f.kind, f.type, f.not_null and f.kind != MANY, length)


def _field(name, kind, type_, not_null=False, length=None) -> dict:
    return {"name": name, "relType": kind, "type": type_, "notNullable": bool(not_null),
            "stringLength": length, "comment": None}

