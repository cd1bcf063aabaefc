"""``SoapClient``: the :class:`~icatdump.client.Client` of a real ICAT server.

suds-community reads the server's WSDL and builds the small requests
(built with ``nosend``: we post the envelope ourselves).  Replies are *not*
unmarshalled by suds but decoded with lxml and the shared codec, straight
into :class:`~icatdump.entity.Entity` — 0.12 s instead of ~5 s for a
5000-object search reply.  Requests that carry beans (and login, so that
suds never sees a password) are written by the codec: building beans with
suds took ~8 ms per object (doc/soap.md).  No suds type leaves this module.

The schema comes from the server (``getEntityNames``/``getEntityInfo``) and
is used as is, so a 4.x or 5.0 server's entities come out in that shape.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

import suds.cache
import suds.client
import suds.transport
from lxml import etree
from suds.transport.http import HttpTransport

from ..client import Client, IcatError, SessionError, error_for
from ..entity import Entity
from ..errors import ServerError
from ..schema import MANY, ONE, Schema
from . import codec

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_REQUEST_HEAD = ('<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="%s" '
                 'xmlns:ns2="http://icatproject.org" xmlns:xsi="%s"><SOAP-ENV:Header/>'
                 '<SOAP-ENV:Body>' % (SOAP_ENV, codec.XSI))
_REQUEST_TAIL = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
DEFAULT_PATH = "/ICATService/ICAT"
#: Refresh the session when fewer minutes than this remain (as python-icat).
REFRESH_MARGIN = 30.0
#: Calls that change the catalogue: never sent twice, since a lost reply
#: does not tell whether the server applied them.
NOT_IDEMPOTENT = frozenset(("create", "createMany", "update", "delete", "deleteMany"))
#: Stands for the current session id in :meth:`SoapClient._invoke` arguments,
#: so that a call repeated after a new login carries the new one.
SID = object()


class _Transient(ServerError):
    """No usable reply: the connection dropped, or a 5xx that is no ICAT fault."""


class _HideCredentials(logging.Filter):
    """Drop suds debug records that would show a login request (a password)."""

    def filter(self, record):
        try:
            return "credentials>" not in record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not our business
            return True


_FILTER = _HideCredentials()
for _name in ("suds.client", "suds.transport.http", "suds.transport"):
    logging.getLogger(_name).addFilter(_FILTER)


def service_urls(url: str) -> tuple[str, str]:
    """``(service URL, WSDL URL)`` from a server, service or WSDL URL."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if not path or path == "/":
        path = DEFAULT_PATH
    service = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return service, service + "?wsdl"


def ssl_context(cfg) -> ssl.SSLContext:
    """Certificate checking as configured: ``--no-check-certificate`` or a CA file."""
    if cfg is not None and getattr(cfg, "check_cert", True) is False:
        return ssl._create_unverified_context()  # noqa: S323 - the user asked for it
    cafile = getattr(cfg, "cacert", None) if cfg is not None else None
    return ssl.create_default_context(cafile=cafile or None)


class _Transport(HttpTransport):
    """suds' HTTP transport with our SSL context and proxies, one opener reused."""

    def __init__(self, context, proxies, timeout):
        super().__init__(timeout=timeout)
        handlers = [urllib.request.HTTPSHandler(context=context)]
        handlers.append(urllib.request.ProxyHandler(proxies) if proxies is not None
                        else urllib.request.ProxyHandler())
        self.urlopener = urllib.request.build_opener(*handlers)


class SoapClient(Client):
    """A connection to an ICAT server over SOAP (suds-community + lxml).

    ``cfg`` may carry ``check_cert`` (bool), ``cacert`` (path) and
    ``proxies`` (dict scheme → proxy URL); it may be None.

    ICAT's createMany returns the ids of the top-level objects only; with
    ``learn_child_ids`` (the default, as the Client contract wants) the ids
    of embedded children are looked up afterwards, one search per relation
    and batch.  Ingest, which never refers to embedded children by id, may
    switch it off to save those searches (47 of 156 for the 5.0 example).

    Faults: calls that only read (search, get, getEntityInfo...) are
    repeated on a dropped connection or an HTTP 5xx, up to ``retries``
    times with exponential backoff from ``backoff`` seconds; writes are
    not (the error then says so).  A session that has expired is renewed
    by logging in again with the credentials of :meth:`login`, which are
    kept in memory for that purpose only.

    One instance is not meant to be shared between threads.
    """

    retries = 4
    backoff = 0.5
    #: Log in again when the session has expired (needs a :meth:`login` first).
    renew_session = True

    def __init__(self, url: str, cfg=None, timeout: float = 600.0,
                 learn_child_ids: bool = True):
        self.learn_child_ids = learn_child_ids
        self.url, self.wsdl_url = service_urls(url)
        proxies = getattr(cfg, "proxies", None) if cfg is not None else None
        self._transport = _Transport(ssl_context(cfg), proxies, timeout)
        self.timeout = timeout
        try:
            self._suds = suds.client.Client(
                self.wsdl_url, transport=self._transport, cache=suds.cache.NoCache(),
                nosend=True, prettyxml=False, location=self.url)
        except urllib.error.URLError as exc:
            raise ConnectionError("cannot read the WSDL at %s: %s"
                                  % (self.wsdl_url, getattr(exc, "reason", exc))) from None
        self._parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                       load_dtd=False, huge_tree=True)
        self.session_id = None
        self.user_name = None
        self._login_args = None
        self._expires = 0.0
        self._max_entities = 10000
        self.apiversion = self._text("getApiVersion")
        names = [e.text for e in self._invoke("getEntityNames")]
        infos = {name: self._entity_info(name) for name in names}
        self.schema = Schema.from_entity_info(infos, self.apiversion)

    # -- transport ------------------------------------------------------------
    def _invoke(self, op: str, *args) -> list:
        """Call ``op`` with the request suds builds from the WSDL; the
        ``return`` elements of the reply (lxml).  :data:`SID` in ``args``
        stands for the session id."""
        return self._call(op, lambda: getattr(self._suds.service, op)(
            *(self._sid() if a is SID else a for a in args)).envelope)

    def _call(self, op: str, build) -> list:
        """Post the envelope ``build()`` makes; once more, with a fresh
        envelope, after renewing an expired session."""
        try:
            return self._post(build(), op not in NOT_IDEMPOTENT)
        except SessionError:
            if not self.renew_session or self._login_args is None or op in ("login", "logout"):
                raise
            logging.getLogger(__name__).info("ICAT session expired; logging in again")
            self.session_id = None
            self.login(*self._login_args)
        return self._post(build(), op not in NOT_IDEMPOTENT)

    def _invoke_beans(self, op: str, tag: str, entities, children=True) -> list:
        """Call a bean-carrying operation with a request built by the codec.

        suds needs ~8 ms per object to build and marshal a bean (measured:
        5000 datafiles in createMany batches of 1000 took 45 s); the codec
        writes the same XML (JAXB element order, xsi:type on each bean) in a
        few µs.
        """
        def build():
            out = [_REQUEST_HEAD, "<ns2:%s><sessionId>%s</sessionId>"
                   % (op, codec.escape(self._sid()))]
            for entity in entities:
                codec.encode_bean(out, entity, tag, True, children)
            out.append("</ns2:%s>%s" % (op, _REQUEST_TAIL))
            return "".join(out).encode("utf-8")
        return self._call(op, build)

    def _post(self, envelope: bytes, idempotent: bool = False) -> list:
        """Send a request; repeat it on a transient failure if ``idempotent``."""
        attempt = 0
        while True:
            try:
                return self._post_once(envelope)
            except _Transient as exc:
                if not idempotent:
                    raise ConnectionError("%s (a write request, not repeated: it may or may "
                                          "not have been applied)" % exc) from None
                if attempt >= self.retries:
                    raise ConnectionError("%s (gave up after %d attempts)"
                                          % (exc, attempt + 1)) from None
                time.sleep(self.backoff * 2 ** attempt)
                attempt += 1

    def _post_once(self, envelope: bytes) -> list:
        request = suds.transport.Request(self.url, envelope, self.timeout)
        request.headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        try:
            reply = self._transport.send(request).message
        except suds.transport.TransportError as exc:
            body = exc.fp.read() if exc.fp is not None else b""
            if exc.httpcode == 500 and body:
                try:
                    self._raise_fault(body)
                except ConnectionError as bad:      # a 500 that is no SOAP fault
                    raise _Transient(str(bad)) from None
            error = _Transient if exc.httpcode and exc.httpcode >= 500 else ConnectionError
            raise error("ICAT at %s answered HTTP %s: %s"
                        % (self.url, exc.httpcode, exc)) from None
        except urllib.error.URLError as exc:
            raise _Transient("cannot reach ICAT at %s: %s"
                             % (self.url, getattr(exc, "reason", exc))) from None
        except (http.client.HTTPException, socket.timeout, OSError) as exc:
            raise _Transient("connection to ICAT at %s failed: %s"
                             % (self.url, exc or type(exc).__name__)) from None
        if reply is None:
            raise _Transient("ICAT at %s sent an empty reply" % self.url)
        body = self._body(reply)
        if len(body) and codec.local(body[0].tag) == "Fault":
            self._raise_fault(reply)
        return [el for el in (body[0] if len(body) else ()) if isinstance(el.tag, str)]

    def _body(self, data: bytes):
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as exc:
            raise ConnectionError("ICAT at %s sent a malformed reply: %s"
                                  % (self.url, exc)) from None
        body = root.find("{%s}Body" % SOAP_ENV)
        if body is None:
            raise ConnectionError("ICAT at %s sent a reply without SOAP body" % self.url)
        return body

    def _raise_fault(self, data: bytes):
        """Raise the IcatError an ICAT fault describes."""
        body = self._body(data)
        fault = body.find("{%s}Fault" % SOAP_ENV)
        if fault is None:
            raise ConnectionError("ICAT at %s failed without a SOAP fault" % self.url)
        text = " ".join((fault.findtext("faultstring") or "").split())
        detail = fault.find("detail")
        exc = None
        if detail is not None:
            for el in detail.iter():
                if isinstance(el.tag, str) and codec.local(el.tag) == "IcatException":
                    exc = el
                    break
        if exc is None:
            raise IcatError(text or "SOAP fault without message")
        message = " ".join((exc.findtext("message") or text).split())
        offset = exc.findtext("offset")
        offset = int(offset) if offset and offset.strip().lstrip("-").isdigit() else -1
        raise error_for((exc.findtext("type") or "INTERNAL").strip(), message,
                        offset if offset >= 0 else None)

    def _text(self, op, *args):
        ret = self._invoke(op, *args)
        return ret[0].text if ret else None

    def _entity_info(self, name) -> dict:
        (info,) = self._invoke("getEntityInfo", name)
        constraint = []
        for c in info.findall("constraints")[:1]:
            constraint = [n.text for n in c.findall("fieldNames")]
        fields = []
        for f in info.findall("fields"):
            length = f.findtext("stringLength")
            fields.append({"name": f.findtext("name"), "relType": f.findtext("relType"),
                           "type": f.findtext("type"),
                           "notNullable": f.findtext("notNullable") == "true",
                           "stringLength": int(length) if length else None})
        return {"constraint": constraint, "fields": fields,
                "comment": info.findtext("classComment")}

    # -- session ------------------------------------------------------------------
    def login(self, auth: str, credentials: dict) -> None:
        """Log in with any authenticator and credential keys."""
        if self.session_id:
            self.logout()
        # Built here, not by suds: suds would log the password at DEBUG level.
        entries = "".join("<entry><key>%s</key><value>%s</value></entry>"
                          % (codec.escape(str(k)), codec.escape(str(v)))
                          for k, v in credentials.items() if v is not None)
        ret = self._post(("%s<ns2:login><plugin>%s</plugin><credentials>%s</credentials>"
                          "</ns2:login>%s" % (_REQUEST_HEAD, codec.escape(auth), entries,
                                              _REQUEST_TAIL)).encode("utf-8"), True)
        self.session_id = ret[0].text if ret else None
        self._login_args = (auth, dict(credentials))
        self.user_name = None
        self._note_remaining()
        try:
            for el in self._invoke("getProperties", self.session_id):
                key, _, value = (el.text or "").partition(" ")
                if key == "maxEntities" and value.strip().isdigit():
                    self._max_entities = int(value)
        except IcatError:
            pass

    def _note_remaining(self):
        minutes = float(self._text("getRemainingMinutes", self.session_id))
        self._expires = time.monotonic() + minutes * 60.0

    def remaining_minutes(self) -> float:
        return max(0.0, (self._expires - time.monotonic()) / 60.0)

    def refresh(self) -> None:
        """Refresh the session when fewer than 30 minutes remain (no call otherwise)."""
        if self.session_id and self.remaining_minutes() < REFRESH_MARGIN:
            self._invoke("refresh", SID)
            self._note_remaining()

    def logout(self) -> None:
        self._login_args = None
        if self.session_id:
            sid, self.session_id = self.session_id, None
            try:
                self._invoke("logout", sid)
            except SessionError:
                pass

    def get_user_name(self) -> str:
        return self._text("getUserName", SID)

    def _sid(self) -> str:
        if not self.session_id:
            raise SessionError("Session Id cannot be null or empty.")
        return self.session_id

    @property
    def max_entities(self) -> int:
        return self._max_entities

    # -- operations ---------------------------------------------------------------
    def search(self, query) -> list:
        shared = {}     # related objects included by many results: decoded once
        return [codec.decode_result(el, self.schema, shared=shared)
                for el in self._invoke("search", SID, str(query))]

    def get(self, entity: str, id: int, includes: str = "") -> Entity:
        """``entity`` is a name or an ICAT get query (``"Dataset ds INCLUDE ds.datafiles"``)."""
        query = "%s %s" % (entity, includes) if includes else str(entity)
        (el,) = self._invoke("get", SID, query, int(id))
        return codec.decode_entity(el, self.schema, self.schema[query.split()[0]], fill=True)

    def create_many(self, entities: list[Entity]) -> list[int]:
        """createMany; objects referring to others of the same list go in a
        later call (ICAT can only refer by id), so such a list is not atomic.
        Ids are returned (and set) in list order; an error's offset is the
        index in ``entities``."""
        for indices, part in _split_on_references(entities):
            try:
                found = self._invoke_beans("createMany", "beans", part)
            except IcatError as exc:
                if exc.offset is not None and 0 <= exc.offset < len(indices):
                    exc.offset = indices[exc.offset]
                raise
            for entity, el in zip(part, found):
                entity.id = int(el.text)
            self._set_child_ids(part)
        return [entity.id for entity in entities]

    def create(self, entity: Entity) -> int:
        (el,) = self._invoke_beans("create", "bean", [entity])
        entity.id = int(el.text)
        self._set_child_ids([entity])
        return entity.id

    def update(self, entity: Entity) -> None:
        self._invoke_beans("update", "bean", [entity], children=False)

    def delete_many(self, entities: list[Entity]) -> None:
        if entities:
            self._invoke_beans("deleteMany", "beans", [_ref(e) for e in entities])

    def delete(self, entity: Entity) -> None:
        self._invoke_beans("delete", "bean", [_ref(entity)])

    def close(self) -> None:
        """Log out; a server that has gone away is not an error at this point."""
        try:
            self.logout()
        except ConnectionError:
            pass

    def _set_child_ids(self, entities, _depth=0):
        if self.learn_child_ids:
            self._learn_child_ids(entities, _depth)

    def _learn_child_ids(self, entities, _depth=0):
        """Learn the ids ICAT gave embedded children (createMany returns only
        the top-level ones): one search per relation and 200 parents, matching
        each child by its values and its relations' ids."""
        groups = {}
        for parent in entities:
            for name, f in parent.type.manys.items():
                kids = [c for c in parent.values.get(name) or () if c.id is None]
                if kids and parent.id is not None:
                    groups.setdefault((f.type, f.mapped_by), []).append((parent.id, kids))
        created = []
        for (target, back), items in groups.items():
            for start in range(0, len(items), 200):
                part = items[start:start + 200]
                found = self.search(
                    "SELECT c FROM %s c JOIN c.%s p WHERE p.id IN (%s) INCLUDE 1"
                    % (target, back, ", ".join(str(pid) for pid, _ in part)))
                by_parent = {}
                for obj in found:
                    ref = obj.values.get(back)
                    if ref is not None:
                        by_parent.setdefault(ref.id, []).append(obj)
                for pid, kids in part:
                    _match_children(kids, by_parent.get(pid, ()), back)
                    created.extend(kids)
        if created and _depth < 10:
            self._learn_child_ids(created, _depth + 1)


def _split_on_references(entities):
    """Yield ``(indices, sublist)``: the list cut into dependency levels.

    ICAT can only refer to objects that exist, by id.  An object that refers
    to another object of the list (or to one of its embedded children) must
    go in a later call.  Grouping by level -- 0 for objects that refer to
    nothing in the list, else one more than the deepest object referred to --
    needs as many calls as the longest chain (investigation, dataset,
    datafile: three), however many chunks the list spans.
    """
    level_of = {}

    def deepest_reference(obj):
        deepest = -1
        for name in obj.type.ones:
            v = obj.values.get(name)
            if v is not None and v.id is None:
                deepest = max(deepest, level_of.get(id(v), -1))
        for _, c in obj.children():
            deepest = max(deepest, deepest_reference(c))
        return deepest

    def mark(obj, level):
        level_of[id(obj)] = level
        for _, c in obj.children():
            mark(c, level)

    levels = []
    for i, obj in enumerate(entities):
        level = deepest_reference(obj) + 1 if level_of else 0
        mark(obj, level)
        if level == len(levels):
            levels.append([])
        levels[level].append(i)
    for indices in levels:
        yield indices, [entities[i] for i in indices]


def _ref(entity: Entity) -> Entity:
    """A bean standing for an existing object: its id only."""
    if entity.id is None:
        raise ValueError("%s has no id: it does not exist in the catalogue" % entity.type.name)
    return Entity(entity.type, {}, entity.id)


def _match_children(kids, found, back):
    """Give each new child the id of the server object equal to it."""
    def signature(e):
        sig = []
        for n, f in sorted(e.type.fields.items()):
            if n == back or f.kind == MANY:
                continue
            v = e.values.get(n)
            if f.kind == ONE:
                v = v.id if v is not None else None
            sig.append((n, codec.value_text(v) if v is not None else None))
        return tuple(sig)

    pool = {}
    for obj in found:
        pool.setdefault(signature(obj), []).append(obj.id)
    for kid in kids:
        ids = pool.get(signature(kid))
        if ids:
            kid.id = ids.pop(0)
