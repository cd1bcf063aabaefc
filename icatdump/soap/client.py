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
import http.cookiejar
import io
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from http import HTTPStatus

import suds
import suds.cache
import suds.client
import suds.transport
from lxml import etree

from ..client import Client
from ..config import DEFAULT_MAX_REPLY_MB, DEFAULT_TIMEOUT
from ..entity import Entity
from ..errors import ERROR_TYPES, IcatError, ServerError, SessionError, error_for
from ..schema import MANY, ONE, Schema
from . import codec, keepalive

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
#: Seconds to wait for a TCP (and TLS) connection, or the timeout if smaller.
CONNECT_TIMEOUT = 10.0
#: Redirects followed for one request (301, 302, 307, 308; POSTs are re-sent).
MAX_REDIRECTS = 5


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


# -- HTTP: deadlines, size ceiling, redirects, cookies, gzip ------------------------

#: The socket of the connection a thread has just opened and the deadline of
#: its request: urllib hides the connection, and only its socket's timeout
#: can stop a server that answers byte by byte.
_CURRENT = threading.local()


def _remaining() -> float:
    return max(0.001, _CURRENT.deadline - time.monotonic())


def _arm(conn) -> None:
    """Give a connection's socket the time left for the thread's request."""
    _CURRENT.sock = conn.sock
    conn.sock.settimeout(_remaining())


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        _arm(self)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        _arm(self)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context):
        super().__init__(context=context)
        self.ssl = context

    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self.ssl)


def redirect_target(url: str, code: int, location: str | None) -> str | None:
    """Where a reply with status ``code`` sends a request for ``url``, or
    None when it is not followed (and the reply is the answer).

    301/302/307/308 are followed with the same method and body (a SOAP
    POST turned into a GET, as browsers do for 301/302, would reach no
    operation), never from https to http (the body carries credentials).
    """
    if code not in (301, 302, 307, 308) or not location:
        return None
    newurl = urllib.parse.urljoin(url, location.strip())
    new = urllib.parse.urlsplit(newurl).scheme
    if urllib.parse.urlsplit(url).scheme == "https" and new != "https":
        raise ServerError("ICAT at %s redirects (HTTP %d) to %s, which is not https: "
                          "not followed" % (url, code, newurl))
    return newurl if new in ("http", "https") else None


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects by :func:`redirect_target`'s rule."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if redirect_target(req.full_url, code, newurl) is None:
            return None
        headers = {k: v for k, v in req.header_items() if k.lower() not in ("host", "cookie")}
        return urllib.request.Request(newurl, data=req.data, headers=headers,
                                      origin_req_host=req.origin_req_host, unverifiable=True,
                                      method=req.get_method())


class _Reply:
    """What :class:`http.cookiejar.CookieJar` reads of a response."""

    def __init__(self, headers):
        self.headers = headers

    def info(self):
        return self.headers


class Http:
    """Requests with a deadline, a reply-size ceiling, redirects, cookies
    (load balancers route by them) and gzip/deflate-encoded replies.

    :meth:`request` returns ``(final URL, status, content type, body)``
    (the body a bytearray) for any HTTP status; it raises
    :class:`ServerError` for a reply that does not arrive complete within
    ``timeout`` seconds or exceeds ``max_reply`` bytes, and
    :class:`_Transient` when the connection fails.

    Direct requests go over kept connections (:mod:`.keepalive`, its rules
    for reuse); a request through a proxy (``proxies``, else the
    environment's) goes through urllib, a connection each.
    """

    def __init__(self, context, proxies, timeout: float, max_reply: int):
        self.timeout = float(timeout)
        self.max_reply = int(max_reply)
        self.context = context
        self.cookies = http.cookiejar.CookieJar()
        if proxies is None:
            proxies = urllib.request.getproxies()
        self._proxies = {k.lower() for k in proxies}
        handlers = [_HTTPHandler(), _HTTPSHandler(context), _Redirects(),
                    urllib.request.HTTPCookieProcessor(self.cookies),
                    urllib.request.ProxyHandler(proxies)]
        self.opener = urllib.request.build_opener(*handlers)
        self._agent = dict(self.opener.addheaders).get("User-agent", "Python-urllib")
        self.pool = keepalive.Pool()

    def request(self, url: str, data: bytes | None = None, headers=None, what="request",
                idempotent: bool = True):
        """``idempotent``: whether the request may be sent twice (a read);
        a write is never sent again once it has gone out whole."""
        _CURRENT.deadline = time.monotonic() + self.timeout
        _CURRENT.sock = None
        try:
            return self._direct(url, data, dict(headers or {}), what, idempotent)
        except (socket.timeout, TimeoutError):
            raise ServerError("ICAT at %s did not answer the %s within %g s (--timeout)"
                              % (url, what, self.timeout)) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerError("cannot connect to ICAT at %s within %g s" % (
                    url, min(CONNECT_TIMEOUT, self.timeout))) from None
            raise _Transient("cannot reach ICAT at %s: %s" % (url, reason)) from None
        except (http.client.HTTPException, OSError) as exc:
            if isinstance(exc, ServerError):
                raise
            raise _Transient("connection to ICAT at %s failed during the %s: %s"
                             % (url, what, exc or type(exc).__name__)) from None
        finally:
            _CURRENT.sock = None

    def close(self) -> None:
        """Close the kept connections."""
        self.pool.close()

    def _proxied(self, url: str) -> bool:
        """Whether urllib's ProxyHandler would send ``url`` through a proxy."""
        parts = urllib.parse.urlsplit(url)
        return (parts.scheme.lower() in self._proxies
                and not (parts.netloc and urllib.request.proxy_bypass(parts.netloc)))

    def _direct(self, url, data, headers, what, idempotent):
        """The request on kept connections, following redirects."""
        method = "GET" if data is None else "POST"
        for hop in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https") or not parts.hostname or self._proxied(url):
                return self._via_urllib(url, data, headers, what)
            key = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            req.add_header("Accept-Encoding", "gzip, deflate")
            req.add_header("User-agent", self._agent)
            if data is not None and not req.has_header("Content-type"):
                req.add_header("Content-type", "application/x-www-form-urlencoded")
            self.cookies.add_cookie_header(req)
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            conn, resp = keepalive.exchange(
                self.pool, key, lambda: self._connect(key), _arm, method, path, data,
                dict(req.header_items()), idempotent)
            complete = False
            try:
                self.cookies.extract_cookies(_Reply(resp.headers), req)
                newurl = redirect_target(url, resp.status, resp.headers.get("Location"))
                body = self._read(resp, url, what)
                complete = True
            finally:
                self.pool.release(key, conn, resp, complete)
            if newurl is None or hop == MAX_REDIRECTS:
                return url, resp.status, resp.headers.get("Content-Type", ""), body
            url = newurl
        raise AssertionError("unreachable")

    def _connect(self, key) -> http.client.HTTPConnection:
        scheme, host, port = key
        timeout = min(CONNECT_TIMEOUT, self.timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _HTTPSConnection(host, port, timeout=timeout, context=self.context)
        else:
            conn = _HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        return conn

    def _via_urllib(self, url, data, headers, what):
        """The request through a proxy: urllib's handlers, a connection each."""
        req = urllib.request.Request(url, data=data, headers=headers)
        req.add_header("Accept-Encoding", "gzip, deflate")
        try:
            resp = self.opener.open(req, timeout=min(CONNECT_TIMEOUT, self.timeout))
        except urllib.error.HTTPError as exc:
            resp = exc
        with resp:
            body = self._read(resp, url, what)
            return (resp.geturl(), resp.status, resp.headers.get("Content-Type", ""), body)

    def _read(self, resp, url, what) -> bytearray:
        """The body, decoded, read in pieces with the time left for each."""
        coding = (resp.headers.get("Content-Encoding") or "").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            inflate = zlib.decompressobj(47)      # gzip or zlib header, detected
        elif coding in ("", "identity"):
            inflate = None
        else:
            raise ServerError("ICAT at %s sent its reply to the %s in an unknown encoding %r"
                              % (url, what, coding))
        limit = self.max_reply
        out = bytearray()
        read = getattr(resp, "read1", resp.read)
        while True:
            if time.monotonic() >= _CURRENT.deadline:
                raise socket.timeout
            sock = getattr(_CURRENT, "sock", None)
            if sock is not None:
                sock.settimeout(_remaining())
            piece = read(1 << 16)
            if not piece:
                break
            if inflate is not None:
                try:
                    piece = inflate.decompress(piece, limit - len(out) + 1)
                except zlib.error as exc:
                    raise ServerError("ICAT at %s sent a reply to the %s that is not valid %s: %s"
                                      % (url, what, coding, exc)) from None
            out += piece
            if len(out) > limit:
                raise ServerError("ICAT at %s sent a reply to the %s larger than %d MiB "
                                  "(--max-reply-size)" % (url, what, limit >> 20))
        if inflate is not None and not inflate.eof:
            raise ServerError("ICAT at %s sent a truncated %s-encoded reply to the %s"
                              % (url, coding, what))
        return out          # lxml parses a bytearray as is: no copy of a big reply


class _Transport(suds.transport.Transport):
    """What suds reads (the WSDL, its XSD) comes through :class:`Http`;
    suds sends nothing (``nosend``).  ``final`` maps each URL read to the
    one it was found at after redirects."""

    def __init__(self, http_: Http):
        super().__init__()
        self.http = http_
        self.final = {}

    def open(self, request):
        what = "WSDL" if request.url.lower().endswith("?wsdl") else "schema"
        final, status, ctype, body = self.http.request(request.url, what=what + " request")
        if status != 200:
            raise ServerError("ICAT at %s answered the %s request with HTTP %d %s"
                              % (request.url, what, status, _status_text(status, ctype)))
        self.final[request.url] = final
        return io.BytesIO(body)

    def send(self, request):
        raise NotImplementedError("SoapClient posts its requests itself")


def _status_text(status: int, ctype: str) -> str:
    """``Not Found (text/html)``: the reason and what the body was."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "(unknown status)"
    kind = ctype.split(";")[0].strip()
    return "%s (%s)" % (phrase, kind) if kind else phrase


class SoapClient(Client):
    """A connection to an ICAT server over SOAP (suds-community + lxml).

    ``cfg`` may carry ``check_cert`` (bool), ``cacert`` (path), ``proxies``
    (dict scheme → proxy URL), ``timeout`` (seconds) and ``max_reply_mb``;
    it may be None.  ``timeout`` and ``max_reply_mb`` given here win over
    ``cfg``'s.

    ICAT's createMany returns the ids of the top-level objects only; with
    ``learn_child_ids`` (the default, as the Client contract wants) the ids
    of embedded children are looked up afterwards, one search per relation
    and batch.  Ingest, which never refers to embedded children by id, may
    switch it off to save those searches (47 of 156 for the 5.0 example).

    Limits: each request must be answered completely within ``timeout``
    seconds, and no reply may exceed
    ``max_reply_mb`` MiB (defaults: :mod:`icatdump.config`); either is a
    :class:`ServerError`, not repeated: a server that is hung or sends
    without end would do so again.

    Faults: calls that only read (search, get, getEntityInfo...) are
    repeated on a dropped connection or an HTTP 5xx, up to ``retries``
    times with exponential backoff from ``backoff`` seconds, and only
    while less than ``timeout`` seconds have passed since the first try;
    writes are not (the error then says so).  A session that has expired is
    renewed by logging in again with the credentials of :meth:`login`,
    which are kept in memory for that purpose only.

    Requests go to the URL the WSDL was finally read from (after
    redirects), not to the WSDL's ``soap:address``: behind a proxy that
    address is often the server's internal one.

    One instance is not meant to be shared between threads.
    """

    retries = 4
    backoff = 0.5
    #: Log in again when the session has expired (needs a :meth:`login` first).
    renew_session = True

    def __init__(self, url: str, cfg=None, timeout: float | None = None,
                 learn_child_ids: bool = True, max_reply_mb: int | None = None):
        self.learn_child_ids = learn_child_ids
        self.url, self.wsdl_url = service_urls(url)
        proxies = getattr(cfg, "proxies", None) if cfg is not None else None
        if timeout is None:
            timeout = getattr(cfg, "timeout", None) or DEFAULT_TIMEOUT
        if max_reply_mb is None:
            max_reply_mb = getattr(cfg, "max_reply_mb", None) or DEFAULT_MAX_REPLY_MB
        self.timeout = float(timeout)
        self._http = Http(ssl_context(cfg), proxies, self.timeout, int(max_reply_mb) << 20)
        self._transport = _Transport(self._http)
        try:
            self._suds = suds.client.Client(
                self.wsdl_url, transport=self._transport, cache=suds.cache.NoCache(),
                nosend=True, prettyxml=False, location=self.url)
        except _Transient as exc:
            raise ServerError("cannot read the WSDL: %s" % exc) from None
        except ServerError:
            raise
        except Exception as exc:  # noqa: BLE001 - suds reports a bad WSDL with any class
            raise ServerError("ICAT at %s sent no usable WSDL (%s: %s)"
                              % (self.url, type(exc).__name__,
                                 " ".join(str(exc).split()) or "-")) from None
        final = self._transport.final.get(self.wsdl_url, self.wsdl_url)
        self.url = service_urls(final)[0]
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
        def build():
            try:
                method = getattr(self._suds.service, op)
            except suds.MethodNotFound:
                raise ServerError("the WSDL of ICAT at %s has no operation %s"
                                  % (self.url, op)) from None
            return method(*(self._sid() if a is SID else a for a in args)).envelope
        return self._call(op, build)

    def _call(self, op: str, build) -> list:
        """Post the envelope ``build()`` makes; once more, with a fresh
        envelope, after renewing an expired session."""
        try:
            return self._post(build(), op)
        except SessionError:
            if not self.renew_session or self._login_args is None or op in ("login", "logout"):
                raise
            logging.getLogger(__name__).info("ICAT session expired; logging in again")
            self.session_id = None
            self.login(*self._login_args)
        return self._post(build(), op)

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

    def _post(self, envelope: bytes, op: str) -> list:
        """Send a request; repeat it on a transient failure if ``op`` only
        reads, within the retry count and ``timeout`` seconds of the first try."""
        attempt = 0
        start = time.monotonic()
        while True:
            try:
                return self._post_once(envelope, op)
            except _Transient as exc:
                if op in NOT_IDEMPOTENT:
                    raise ServerError("%s (a write request, not repeated: it may or may "
                                      "not have been applied)" % exc) from None
                wait = self.backoff * 2 ** attempt
                spent = time.monotonic() - start
                if attempt >= self.retries or spent + wait >= self.timeout:
                    raise ServerError("%s (gave up after %d attempts in %.1f s)"
                                      % (exc, attempt + 1, spent)) from None
                time.sleep(wait)
                attempt += 1

    def _post_once(self, envelope: bytes, op: str) -> list:
        url, status, ctype, reply = self._http.request(
            self.url, envelope, {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            what=op + " request", idempotent=op not in NOT_IDEMPOTENT)
        where = "ICAT at %s" % self.url
        if status == 200 and reply:
            body = self._body(reply, status, ctype, op)
            if len(body) and codec.local(body[0].tag) == "Fault":
                self._raise_fault(body, op)
            return [el for el in (body[0] if len(body) else ()) if isinstance(el.tag, str)]
        if status == 500 and _looks_like_xml(reply):
            self._raise_fault(self._body(reply, status, ctype, op), op)
        if status == 200:
            raise _Transient("%s sent an empty reply to %s" % (where, op))
        message = "%s answered %s with HTTP %d %s" % (where, op, status,
                                                      _status_text(status, ctype))
        if status >= 500:
            raise _Transient(message)
        raise ServerError(message)

    def _body(self, data: bytes, status: int, ctype: str, op: str):
        """The SOAP Body of a reply; anything else (an HTML page from a
        proxy, garbage) is a ServerError saying what came instead."""
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as exc:
            root, problem = None, "not XML: %s" % exc
        body = root.find("{%s}Body" % SOAP_ENV) if root is not None else None
        if body is None:
            if root is not None:
                problem = "XML without a SOAP body (<%s>)" % codec.local(root.tag)
            raise ServerError("ICAT at %s answered %s with HTTP %d %s, %s"
                              % (self.url, op, status, _status_text(status, ctype), problem))
        return body

    def _raise_fault(self, body, op: str):
        """Raise the IcatError an ICAT fault describes; a fault that is no
        IcatException of a known type (JAX-WS' own, a proxy's) is a ServerError."""
        fault = body.find("{%s}Fault" % SOAP_ENV)
        if fault is None:
            raise ServerError("ICAT at %s failed %s without a SOAP fault" % (self.url, op))
        text = " ".join((fault.findtext("faultstring") or "").split())
        detail = fault.find("detail")
        exc = None
        if detail is not None:
            for el in detail.iter():
                if isinstance(el.tag, str) and codec.local(el.tag) == "IcatException":
                    exc = el
                    break
        kind = (exc.findtext("type") or "").strip() if exc is not None else ""
        if exc is None or kind not in ERROR_TYPES:
            what = ("an IcatException of unknown type %r" % kind if exc is not None
                    else "a SOAP fault that is no IcatException (%s)"
                    % (fault.findtext("faultcode") or "no faultcode").strip())
            raise ServerError("ICAT at %s answered %s with %s: %s"
                              % (self.url, op, what, text or "no message"))
        message = " ".join((exc.findtext("message") or text).split())
        offset = exc.findtext("offset")
        offset = int(offset) if offset and offset.strip().lstrip("-").isdigit() else -1
        raise error_for(kind, message, offset if offset >= 0 else None)

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
                                              _REQUEST_TAIL)).encode("utf-8"), "login")
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
        finally:
            self._http.close()

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


def _looks_like_xml(data: bytes) -> bool:
    """Whether a body starts as XML does (a SOAP fault), not as an HTML page."""
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and not head[:20].lower().startswith((b"<!doctype", b"<html"))


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
