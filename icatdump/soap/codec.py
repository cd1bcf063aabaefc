"""Entities and values in ICAT's SOAP XML, both directions.

One codec serves both sides: the local server decodes request beans and
encodes replies with it, and ``SoapClient`` decodes search/get replies with it
(lxml is an order of magnitude faster than suds' unmarshaller on big
results).  Encoding writes strings directly rather than building a tree,
because replies are large and flat.

Wire conventions (ICAT-FACTS §2.6): children are unqualified, top-level beans
carry ``xsi:type`` naming the instance type, nested beans are typed by the
schema, an empty or missing element is null, dates are xs:dateTime.
Attribute values are converted by their field's rule (:mod:`icatdump.rules`),
as a file reader converts them.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Callable

from ..entity import Entity
from ..errors import DecodeError
from ..schema import ATTRIBUTE, META_ATTRS, ONE, Schema
from ..rules import field_rule
from ..types import UTC, ValueProblem, parse_datetime
from .wsdl import ENUM_TYPES

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI_TYPE = "{%s}type" % XSI
XSI_NIL = "{%s}nil" % XSI

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


# -- encoding -------------------------------------------------------------------

def escape(text: str) -> str:
    """Text content with the XML specials (and CR, which parsers fold) escaped."""
    return text.translate(_ESCAPES)


def value_text(value) -> str:
    """A Python value as XSD lexical text (xs:boolean, xs:double, xs:dateTime...)."""
    text = _TEXT_OF.get(type(value))
    return text(value) if text is not None else _other_text(value)


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(value)


def _datetime_text(value: _dt.datetime) -> str:
    tz = value.tzinfo
    if tz is UTC:               # what the catalogue reads: no conversion to make
        return value.isoformat()
    if tz is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _other_text(value) -> str:
    """Subclasses of the types of :data:`_TEXT_OF`, and anything else as its str()."""
    if isinstance(value, bool):
        return _bool_text(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, _dt.datetime):
        return _datetime_text(value)
    return escape(str(value))


#: The text of a value by its exact type: one dict look-up instead of a chain
#: of isinstance() for each of the (mostly str) values of a reply.
_TEXT_OF: dict[type, Callable[[Any], str]] = {
    str: escape, int: str, bool: _bool_text, float: _float_text, _dt.datetime: _datetime_text}


def scalar_type(value) -> str:
    """The ``xsi:type`` of a scalar search result."""
    if isinstance(value, bool):
        return "xs:boolean"
    if isinstance(value, int):
        return "xs:long"
    if isinstance(value, float):
        return "xs:double"
    if isinstance(value, _dt.datetime):
        return "xs:dateTime"
    return "xs:string"


def encode_entity(out: list, entity: Entity, tag: str, typed: bool, _path=(),
                  memo: dict | None = None) -> None:
    """Append ``entity`` as element ``tag`` to ``out`` (a list of strings).

    Only what the entity holds is written: attributes that are set, included
    many-to-one relations and included one-to-many lists, so a child never
    carries a back reference to its parent unless that path was included.  An
    object met again on its own path (a cyclic include) is written shallow.

    ``memo`` (a dict kept for one reply) holds each object's text apart from
    its relations, keyed by identity: the catalogue shares an object included
    by many results (the dataset of a page of datafiles), and each of its
    copies in the reply is then written from that text instead of from its
    values again.
    """
    if memo is None:
        memo = {}
    parts = memo.get(id(entity))
    if parts is None:
        parts = memo[id(entity)] = _bean_parts(entity)
    if typed:
        out.append('<%s xsi:type="ns2:%s">' % (tag, entity.type.instance_name))
    else:
        out.append("<%s>" % tag)
    shallow = entity in _path       # by identity: an Entity has no __eq__
    path = _path + (entity,)
    for part in parts:
        if part.__class__ is str:
            out.append(part)
        elif not shallow:
            name, related, many = part
            if many:
                for child in related:
                    encode_entity(out, child, name, False, path, memo)
            else:
                encode_entity(out, related, name, False, path, memo)
    out.append("</%s>" % tag)


def _bean_parts(entity: Entity) -> list:
    """A bean's content in JAXB's order (the audit fields around the id,
    then the fields by name): runs of text for its values, and ``(name,
    related, many)`` for each included relation, written where they fall."""
    values = entity.values
    parts: list = []
    text = []
    for name in META_ATTRS[:2]:
        v = values.get(name)
        if v is not None:
            text.append("<%s>%s</%s>" % (name, value_text(v), name))
    if entity.id is not None:
        text.append("<id>%d</id>" % entity.id)
    for name in META_ATTRS[2:]:
        v = values.get(name)
        if v is not None:
            text.append("<%s>%s</%s>" % (name, value_text(v), name))
    fields = entity.type.fields
    for name in sorted(values):
        f = fields.get(name)
        if f is None:
            continue
        v = values[name]
        if v is None:
            continue
        if f.kind == ATTRIBUTE:
            text.append("<%s>%s</%s>" % (name, value_text(v), name))
        else:
            if text:
                parts.append("".join(text))
                text = []
            parts.append((name, v, f.kind != ONE))
    if text:
        parts.append("".join(text))
    return parts


def encode_bean(out: list, entity: Entity, tag: str, typed: bool = True,
                children: bool = True, _parent=None) -> None:
    """Append ``entity`` as a request bean (create, update, delete).

    Unlike a reply, a request names related objects by id only (that is all
    ICAT reads of them) and embeds one-to-many children in full, unless
    ``children`` is false (update ignores them).  A child's reference back to
    the parent being created is left out; ICAT sets it itself.
    """
    etype = entity.type
    if typed:
        out.append('<%s xsi:type="ns2:%s">' % (tag, etype.instance_name))
    else:
        out.append("<%s>" % tag)
    if entity.id is not None:
        out.append("<id>%d</id>" % entity.id)
    values = entity.values
    fields = etype.fields
    for name in sorted(values):
        f = fields.get(name)
        v = values[name]
        if f is None or v is None:
            continue
        if f.kind == ATTRIBUTE:
            out.append("<%s>%s</%s>" % (name, value_text(v), name))
        elif f.kind == ONE:
            if v is _parent:
                continue
            if v.id is None:
                raise ValueError("%s.%s refers to a %s that has not been created yet"
                                 % (etype.name, name, v.type.name))
            out.append("<%s><id>%d</id></%s>" % (name, v.id, name))
        elif children:
            for child in v:
                encode_bean(out, child, name, False, True, entity)
    out.append("</%s>" % tag)


def encode_result(out: list, item, tag: str = "return", memo: dict | None = None) -> None:
    """Append one search result: an entity, a scalar or a multi-value row;
    ``memo``: see :func:`encode_entity` (one for all results of a reply)."""
    if isinstance(item, Entity):
        encode_entity(out, item, tag, True, (), memo)
    elif item is None:
        out.append('<%s xsi:nil="true"/>' % tag)
    elif isinstance(item, (tuple, list)):
        out.append('<%s xsi:type="ns2:fieldSet">' % tag)
        for v in item:
            encode_result(out, v, "fields", memo)
        out.append("</%s>" % tag)
    else:
        out.append('<%s xsi:type="%s">%s</%s>' % (tag, scalar_type(item), value_text(item), tag))


# -- decoding -------------------------------------------------------------------

def local(tag) -> str:
    """Element name without namespace (children are unqualified, but be lenient)."""
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def xsi_type(elem) -> tuple[str | None, str | None]:
    """``(namespace, local name)`` of an element's xsi:type, or ``(None, None)``."""
    value = elem.get(XSI_TYPE)
    if not value:
        return None, None
    prefix, _, name = value.rpartition(":")
    return elem.nsmap.get(prefix or None), name


def decode_entity(elem, schema: Schema, etype=None, keep_meta: bool = False,
                  lenient: bool = False, fill: bool = False, shared: dict | None = None,
                  _path: str = "", naive=UTC) -> Entity:
    """Build an :class:`Entity` from a bean element.

    The type comes from ``xsi:type`` when present, else from ``etype`` (the
    schema type of the relation the element sits in).  Empty elements are
    null; unknown elements are ignored, as JAXB does.  Meta attributes
    (createId...) are kept in ``values`` only if ``keep_meta``.  With
    ``lenient``, a value that does not convert is kept as its text, so that
    the catalogue behind a server reports it with its own VALIDATION message.
    With ``fill``, every attribute gets a key (None when absent), as the
    embedded catalogue's entities have.  With ``shared`` (a dict kept for
    one response), a related object reached by the same relation path is
    decoded once and shared, as the embedded catalogue shares it: the
    thousand datafiles of a page refer to one dataset, not a thousand
    copies of it.  Dates without offset are read in ``naive`` (see
    :func:`~icatdump.types.parse_datetime`; the local server's ``timezone``).
    """
    _, tname = xsi_type(elem)
    if tname is not None:
        try:
            etype = schema.by_instance_name(tname)
        except KeyError:
            if etype is None:
                raise DecodeError("%s is not an ICAT entity" % tname) from None
    if etype is None:
        raise DecodeError("bean %s has no type" % local(elem.tag))
    fields = etype.fields
    values = dict.fromkeys(etype.attrs) if fill else {}
    entity = Entity(etype, values)
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue            # comments, processing instructions
        name = local(tag)
        f = fields.get(name)
        if f is None:
            if name == "id":
                entity.id = decode_long(child.text, "id")
            elif keep_meta and name in META_ATTRS:
                text = child.text
                values[name] = (parse_datetime(text) if name.endswith("Time") else text) \
                    if text else None
            continue
        if f.kind == ATTRIBUTE:
            if child.get(XSI_NIL) == "true":
                values[name] = None
                continue
            try:
                if f.type == "Date" and naive is not UTC and child.text and child.text.strip():
                    values[name] = parse_datetime(child.text, naive)
                else:
                    values[name] = field_rule(etype.name, f).convert(child.text)
            except ValueProblem as exc:
                if not lenient:
                    raise DecodeError(str(exc)) from None
                values[name] = child.text
        elif f.kind == ONE:
            if child.get(XSI_NIL) == "true" and len(child) == 0:
                values[name] = None
                continue
            path = _path + "." + name
            ident = _id_text(child) if shared is not None else None
            related = shared.get((path, ident)) if ident else None
            if related is None:
                related = decode_entity(child, schema, schema[f.type], keep_meta, lenient, fill,
                                        shared, path, naive)
                if ident:
                    shared[(path, ident)] = related
            values[name] = related
        else:
            lst = values.get(name)
            if lst is None:
                lst = values[name] = []
            if child.get(XSI_NIL) != "true":
                lst.append(decode_entity(child, schema, schema[f.type], keep_meta, lenient, fill,
                                         shared, _path + "." + name, naive))
    return entity


_LONG_MIN, _LONG_MAX = -2 ** 63, 2 ** 63 - 1


def decode_long(text: str | None, what: str) -> int | None:
    """An xs:long from a message (ids, primary keys); empty is None.

    Anything else than a Java long is the sender's mistake (DecodeError),
    not an internal error of whoever reads it.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise DecodeError("%s %r is not a number" % (what, text)) from None
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise DecodeError("%s %s is out of range for a long" % (what, text))
    return value


def _id_text(elem) -> str | None:
    """The text of a bean element's ``id`` child (the same object has the
    same one wherever it is included)."""
    for child in elem:
        if isinstance(child.tag, str) and local(child.tag) == "id":
            return (child.text or "").strip() or None
    return None


_INTS = {"long", "int", "short", "byte", "integer", "unsignedInt", "unsignedShort",
         "unsignedByte", "unsignedLong", "nonNegativeInteger", "positiveInteger"}
_FLOATS = {"double", "float", "decimal"}


def decode_scalar(text: str | None, xtype: str):
    """An XSD-typed value (``xtype`` without prefix) as a Python value."""
    if xtype == "string":
        return text or ""
    if text is None:
        return None
    text = text.strip()
    if xtype in _INTS:
        return int(text)
    if xtype in _FLOATS:
        return float({"INF": "inf", "-INF": "-inf"}.get(text, text))
    if xtype == "boolean":
        return text in ("true", "1")
    if xtype == "dateTime":
        return parse_datetime(text)
    return text


def decode_result(elem, schema: Schema, keep_meta: bool = False, fill: bool = True,
                  shared: dict | None = None):
    """One search result element: an Entity, a scalar or a tuple (fieldSet);
    ``shared``: see :func:`decode_entity`."""
    if elem.get(XSI_NIL) == "true":
        return None
    ns, tname = xsi_type(elem)
    if ns == XSD:
        return decode_scalar(elem.text, tname)
    if tname == "fieldSet":
        return tuple(decode_result(c, schema, keep_meta, fill, shared) for c in elem
                     if isinstance(c.tag, str))
    if tname is None:
        return elem.text
    if tname in ENUM_TYPES or (not _has_child_elements(elem) and not _is_entity(schema, tname)):
        # An enum constant (``SELECT p.valueType``): JAXB types it by the
        # enum's schema type, ``xsi:type="ns2:parameterValueType"``.
        return (elem.text or "").strip()
    return decode_entity(elem, schema, None, keep_meta, fill=fill, shared=shared)



def _has_child_elements(elem) -> bool:
    return any(isinstance(child.tag, str) for child in elem)


def _is_entity(schema: Schema, tname: str) -> bool:
    try:
        schema.by_instance_name(tname)
    except KeyError:
        return False
    return True
