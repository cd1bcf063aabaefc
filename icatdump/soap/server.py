"""A local ICAT-compatible SOAP server over any :class:`~icatdump.client.Client`.

It speaks enough of ICAT's SOAP API (document/literal wrapped, SOAP 1.1) for
python-icat, suds and our own ``SoapClient``: the WSDL and XSD are generated
from the catalogue's schema, replies are encoded the way JAX-WS encodes them
(xsi-typed search results, unqualified children), and errors are ICAT's
``IcatException`` faults, so every client maps them to its usual exceptions.

Why this exists: it makes the SOAP path testable for real without a Java
ICAT, lets python-icat run side by side with icatdump on the same data, and
gives a zero-install ICAT for tests.  Over an embedded catalogue it applies
the catalogue's authorization rules as icat.server does (``store/authz.py``)
and sends every bean with its audit fields (createId... modTime); it is still
not a production server (plain passwords, one catalogue thread).

Concurrency: HTTP requests are handled in threads, but every catalogue call
runs on one dedicated worker thread, so the wrapped client (e.g. a SQLite
connection, which belongs to the thread that made it) is never used from two
threads and never concurrently.  Requests over 256 KiB are handled whole on
that thread, so only one big parsed tree is in memory at once.

Limits (:class:`Limits`): it may be reachable from a shared network, so no
client can hold it by being slow, idle, greedy or many: a request must
arrive whole within a deadline, connections past a ceiling get 503, bodies
past a ceiling get 413 before they are read, and the listen backlog holds
bursts of clients.  A client's mistake is answered (a fault or an HTTP
status) and never logged as a traceback.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import ipaddress
import logging
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree

from ..client import Client, IcatError, ParameterError, NoSuchObjectError, error_for
from ..errors import ClientFault, PrivilegesError
from ..ids import server as ids_server
from ..ids.store import FileStore, data_dir_of
from ..schema import DEFAULTS
from ..types import UTC, ValueProblem
from . import codec, rest, wsdl
from ..store.authz import ROOT_USERS
from .limits import Limits
from .sessions import Sessions

log = logging.getLogger(__name__)

SERVICE_PATH = "/ICATService/ICAT"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"

_HEAD = ('<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="%s"><S:Body>'
         % SOAP_ENV)
_TAIL = "</S:Body></S:Envelope>"
_WRAPPER_NS = ('xmlns:ns2="%s" xmlns:xsi="%s" xmlns:xs="%s"'
               % (wsdl.TNS, codec.XSI, codec.XSD))


def _parser():
    # A fresh parser per request: lxml parsers must not be shared by threads.
    # No DTDs, no entity expansion, no network access, no huge trees.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           remove_comments=True, remove_pis=True, huge_tree=False)


def fault_xml(exc: IcatError) -> bytes:
    """An IcatException fault, exactly in ICAT's shape (ICAT-FACTS §2.5)."""
    msg = codec.escape(str(exc.message))
    offset = -1 if exc.offset is None else int(exc.offset)
    body = ('<S:Fault><faultcode>S:Server</faultcode><faultstring>%s</faultstring><detail>'
            '<ns2:IcatException xmlns:ns2="%s"><message>%s</message><offset>%d</offset>'
            '<type>%s</type></ns2:IcatException></detail></S:Fault>'
            % (msg, wsdl.TNS, msg, offset, exc.type))
    return (_HEAD + body + _TAIL).encode("utf-8")


def plain_fault(message: str, code: str = "S:Client") -> bytes:
    """A SOAP fault without ICAT detail (malformed requests, unknown operations)."""
    return (_HEAD + "<S:Fault><faultcode>%s</faultcode><faultstring>%s</faultstring>"
            "</S:Fault>" % (code, codec.escape(message)) + _TAIL).encode("utf-8")


#: Requests larger than this are handled one at a time (our ingest's
#: largest are ~32 KB).
_BIG_REQUEST = 256 * 1024


class IcatService:
    """ICAT's operations: decode the request, call the catalogue, encode the reply."""

    def __init__(self, client, sessions: Sessions, apiversion: str | None = None,
                 timezone=UTC):
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="icat-catalogue")
        self._owned = not isinstance(client, Client)
        if self._owned:
            # A factory: open the client on the worker thread that will use it
            # (an SQLite connection may only be used by its own thread).
            client = self._worker.submit(client).result()
        self.client = client
        self.schema = client.schema
        #: The zone request dates without offset are read in (None: local).
        self.timezone = timezone
        # ICAT's beans always carry their audit fields, and ICAT applies
        # its rules to everyone but the root users.
        if hasattr(client, "meta"):
            client.meta = True
        if hasattr(client, "timezone"):
            client.timezone = timezone
        if hasattr(client, "authorize"):
            self._worker.submit(client.authorize, sessions.root_users).result()
        self.sessions = sessions
        self.apiversion = apiversion or _apiversion(client)
        self._xsd = None
        #: Operation name → number of calls (for measurements and tests).
        self.calls = collections.Counter()
        self._calls_lock = threading.Lock()
        self._worker_ident = self._worker.submit(threading.get_ident).result()

    def close(self):
        """Stop the worker; a client opened from a factory is closed there too."""
        if self._owned:
            self._worker.submit(self.client.close).result()
        self._worker.shutdown(wait=True)

    def _call(self, user, fn, *args):
        """Run a catalogue call on the single worker thread, as ``user``.

        A client with a ``user`` attribute (the embedded catalogue) records
        it in createId/modId, as ICAT records the session's user.
        """
        def run():
            if hasattr(self.client, "user"):
                self.client.user = user
            return fn(*args)
        if threading.get_ident() == self._worker_ident:     # a big request, see handle()
            return run()
        return self._worker.submit(run).result()

    # -- documents ------------------------------------------------------------
    def xsd(self) -> bytes:
        if self._xsd is None:
            self._xsd = wsdl.make_xsd(self.schema)
        return self._xsd

    # -- SOAP -----------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, bytes]:
        """Answer one SOAP request: ``(HTTP status, reply bytes)``.

        A parsed request takes about eight times its size: big ones are
        handled whole on the worker thread, one at a time and in one malloc
        arena (four 30 MiB requests at once took a server to 1.3 GB on the
        HTTP threads, 0.9 GB taking turns there, 0.4 GB on the worker).
        Small ones, all that our clients send, run on the HTTP threads: the
        encoding of one reply overlaps the next catalogue call (a dump
        fetches pages ahead), which a dump through serve needs to keep its
        speed.
        """
        if len(body) > _BIG_REQUEST:
            return self._worker.submit(self._handle, body).result()
        return self._handle(body)

    def _handle(self, body: bytes) -> tuple[int, bytes]:
        try:
            op, params = self._parse(body)
            with self._calls_lock:
                self.calls[op] += 1
            method = getattr(self, "op_" + op, None)
            if method is None:
                raise ClientFault("Cannot find dispatch method for {%s}%s" % (wsdl.TNS, op))
            out = []
            method(params, out)
        except IcatError as exc:
            return 500, fault_xml(exc)
        except codec.DecodeError as exc:
            return 500, fault_xml(ParameterError(str(exc)))
        except OverflowError as exc:
            # Only a number from the request can be too large for the
            # catalogue (an SQLite integer is a Java long).
            return 500, fault_xml(ParameterError("a number in the request is out of range (%s)"
                                                 % exc))
        except ValueProblem as exc:
            # A value of the request that does not convert and that the
            # catalogue did not report itself (e.g. a {ts ...} literal).
            return 500, fault_xml(ParameterError(str(exc)))
        except ClientFault as exc:
            return 500, plain_fault(str(exc))
        except Exception as exc:  # noqa: BLE001 - report, don't kill the server
            log.exception("internal error in ICAT operation")
            return 500, fault_xml(error_for("INTERNAL", "%s: %s" % (type(exc).__name__, exc)))
        reply = "%s<ns2:%sResponse %s>%s</ns2:%sResponse>%s" % (
            _HEAD, op, _WRAPPER_NS, "".join(out), op, _TAIL)
        return 200, reply.encode("utf-8")

    @staticmethod
    def _parse(body: bytes):
        try:
            root = etree.fromstring(body, _parser())
        except etree.XMLSyntaxError as exc:
            raise ClientFault("Malformed request: %s" % exc) from None
        if root.getroottree().docinfo.doctype:
            raise ClientFault("DOCTYPE is not allowed in SOAP messages")
        if root.tag != "{%s}Envelope" % SOAP_ENV:
            raise ClientFault("Not a SOAP 1.1 envelope")
        body_el = root.find("{%s}Body" % SOAP_ENV)
        if body_el is None or len(body_el) == 0:
            raise ClientFault("Empty SOAP body")
        call = body_el[0]
        params = {}
        for child in call:
            params.setdefault(codec.local(child.tag), []).append(child)
        return codec.local(call.tag), params

    # -- parameter helpers ----------------------------------------------------
    @staticmethod
    def _text(params, name):
        els = params.get(name)
        return els[0].text if els else None

    def _user(self, params) -> str:
        return self.sessions.user((self._text(params, "sessionId") or "").strip())

    def _beans(self, params, name) -> list:
        entities = []
        for el in params.get(name, ()):
            entity = codec.decode_entity(el, self.schema, lenient=True, naive=self.timezone)
            _java_defaults(entity)
            entities.append(entity)
        return entities

    @staticmethod
    def _ret(out, value):
        if value is not None:
            out.append("<return>%s</return>" % codec.value_text(value))

    # -- operations without a session ---------------------------------------
    def op_getApiVersion(self, params, out):
        self._ret(out, self.apiversion)

    op_getVersion = op_getApiVersion

    def op_getEntityNames(self, params, out):
        for name in sorted(e.name for e in self.schema):
            self._ret(out, name)

    def op_getEntityInfo(self, params, out):
        name = (self._text(params, "beanName") or "").strip()
        info = wsdl.entity_info(self.schema, name)
        if info is None:
            raise ParameterError("%s is not an ICAT entity" % name)
        out.append("<return>")
        if info["classComment"]:
            out.append("<classComment>%s</classComment>" % codec.escape(info["classComment"]))
        if info["constraint"]:
            out.append("<constraints>%s</constraints>" % "".join(
                "<fieldNames>%s</fieldNames>" % n for n in info["constraint"]))
        for f in info["fields"]:
            out.append("<fields>")
            if f["comment"]:
                out.append("<comment>%s</comment>" % codec.escape(f["comment"]))
            out.append("<name>%s</name><notNullable>%s</notNullable><relType>%s</relType>"
                       % (f["name"], codec.value_text(f["notNullable"]), f["relType"]))
            if f["stringLength"] is not None:
                out.append("<stringLength>%d</stringLength>" % f["stringLength"])
            out.append("<type>%s</type></fields>" % f["type"])
        out.append("</return>")

    def op_getAuthenticatorInfo(self, params, out):
        for auth in self.sessions.authenticators():
            out.append("<return><admin>%s</admin>" % codec.value_text(auth["admin"]))
            for key in auth["keys"]:
                out.append("<keys><hide>%s</hide><name>%s</name></keys>"
                           % (codec.value_text(key["hide"]), key["name"]))
            out.append("<mnemonic>%s</mnemonic></return>" % auth["mnemonic"])

    def op_login(self, params, out):
        plugin = (self._text(params, "plugin") or "").strip()
        credentials = {}
        for cred in params.get("credentials", ()):
            for entry in cred:
                key = value = None
                for kv in entry:
                    if codec.local(kv.tag) == "key":
                        key = kv.text
                    elif codec.local(kv.tag) == "value":
                        value = kv.text
                if key is not None:
                    credentials[key] = value
        self._ret(out, self.sessions.login(plugin, credentials))

    # -- session operations ---------------------------------------------------
    def _sid(self, params):
        return (self._text(params, "sessionId") or "").strip()

    def op_logout(self, params, out):
        self.sessions.logout(self._sid(params))

    def op_refresh(self, params, out):
        self.sessions.refresh(self._sid(params))

    def op_getRemainingMinutes(self, params, out):
        self._ret(out, float(self.sessions.remaining_minutes(self._sid(params))))

    def op_getUserName(self, params, out):
        self._ret(out, self.sessions.user(self._sid(params)))

    def op_getProperties(self, params, out):
        if not self.sessions.is_root(self._user(params)):
            raise PrivilegesError("user must be in rootUserNames")
        self._ret(out, "lifetimeMinutes %g" % (self.sessions.lifetime / 60.0))
        self._ret(out, "maxEntities %d" % self.client.max_entities)

    def op_isAccessAllowed(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "bean")
        if not beans:
            raise ParameterError("bean cannot be null")
        access = (self._text(params, "accessType") or "").strip()
        check = getattr(self.client, "is_access_allowed", None)
        self._ret(out, True if check is None else self._call(user, check, beans[0], access))

    # -- catalogue operations -------------------------------------------------
    def op_search(self, params, out):
        user = self._user(params)
        query = (self._text(params, "query") or "").strip()
        if not query:
            raise ParameterError("query cannot be null or empty")
        memo: dict = {}
        for item in self._call(user, self.client.search, query):
            codec.encode_result(out, item, memo=memo)

    def op_get(self, params, out):
        user = self._user(params)
        query = (self._text(params, "query") or "").strip()
        key = self._text(params, "primaryKey")
        name = query.partition(" ")[0]
        if name not in self.schema:
            raise ParameterError("%s is not an ICAT entity" % name)
        pk = codec.decode_long(key, "primaryKey")
        if pk is None:
            raise ParameterError("primaryKey cannot be null")
        entity = self._call(user, self.client.get, query, pk)
        if entity is None:
            raise NoSuchObjectError("%s[id:%d] not found." % (name, pk))
        codec.encode_entity(out, entity, "return", True)

    def op_create(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "bean")
        if not beans:
            raise ParameterError("bean cannot be null")
        self._ret(out, self._call(user, self.client.create, beans[0]))

    def op_createMany(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "beans")
        for i in (self._call(user, self.client.create_many, beans) if beans else ()):
            self._ret(out, i)

    def op_update(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "bean")
        if not beans:
            raise ParameterError("bean cannot be null")
        self._call(user, self.client.update, beans[0])

    def op_delete(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "bean")
        if not beans:
            raise ParameterError("bean cannot be null")
        self._call(user, self.client.delete_many, beans)

    def op_deleteMany(self, params, out):
        user = self._user(params)
        beans = self._beans(params, "beans")
        if beans:
            self._call(user, self.client.delete_many, beans)


def _java_defaults(entity):
    """Fill what a JAXB-deserialized ICAT bean holds for omitted fields.

    Primitive booleans cannot be null in Java: an empty ``<complete/>`` (as
    suds sends for None) or a missing one is ``false``.  File sizes and counts
    default to 0.  Embedded one-to-many children are beans too; many-to-one
    relations are only references, so they are left alone.
    """
    etype = entity.type
    values = entity.values
    for name, f in etype.attrs.items():
        if f.type == "boolean" and values.get(name) is None:
            values[name] = False
        elif name not in values and (etype.name, name) in DEFAULTS:
            values[name] = DEFAULTS[(etype.name, name)]
    for name in etype.manys:
        for child in values.get(name) or ():
            _java_defaults(child)


def _apiversion(client) -> str:
    """The version string to report: the client's, else the schema's as x.y.0."""
    version = getattr(client, "apiversion", "") or client.schema.version
    parts = str(version).split(".")
    return version if len(parts) >= 3 else ".".join(parts + ["0"] * (3 - len(parts)))


# -- HTTP ------------------------------------------------------------------------

class _HttpRefusal(Exception):
    """A request refused with an HTTP status before it reaches the service."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _DeadlineInput(io.RawIOBase):
    """A socket's input that gives up at a deadline rather than per read.

    A per-read timeout alone lets a client that sends a byte now and then
    hold its connection (and thread) forever; here every read of a request
    gets only the time left until the request's deadline.
    """

    def __init__(self, sock):
        self._sock = sock
        #: ``time.monotonic()`` value past which reads fail; None: no deadline.
        self.deadline = None

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request not received within the read timeout")
            self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Budget:
    """Bytes of request bodies held at once, shared by all connections."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, deadline: float | None) -> bool:
        """Take ``n`` bytes, waiting until ``deadline`` at most; False if not."""
        n = min(n, self.total)      # a request alone may always proceed
        with self._cond:
            while self.used + n > self.total:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            self.used += n
        return True

    def release(self, n: int) -> None:
        with self._cond:
            self.used -= min(n, self.total)
            self._cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "icatdump-ICAT"
    # A reply goes out as two writes (headers, body): with Nagle's algorithm
    # the second waits for the client's delayed ACK, 40 ms per request on a
    # keep-alive connection.
    disable_nagle_algorithm = True
    server: IcatServer

    def setup(self):
        # The socket timeout bounds each write (a client that does not read
        # its reply); reads are bounded by the request deadline below.
        self.timeout = self.server.limits.read_timeout
        super().setup()
        self.rfile.close()
        self._input = _DeadlineInput(self.connection)
        self.rfile = io.BufferedReader(self._input)

    def handle_one_request(self):
        # The deadline starts while the connection is idle: an idle
        # keep-alive connection is closed after the same time.
        self._input.deadline = time.monotonic() + self.server.limits.read_timeout
        super().handle_one_request()

    def _request_read(self):
        """The whole request is in: from now on only writes, per-send timeout."""
        self._input.deadline = None
        self.connection.settimeout(self.server.limits.read_timeout)

    def log_message(self, format, *args):
        if self.server.log_requests:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def _send(self, status, body: bytes, ctype="text/xml;charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _ids(self):
        """Hand a request under /ids/ to the local IDS, if there is one, or
        under /icat/ to the REST resources (True).

        Both stream bodies of any size (datafile content, port files): past
        the headers their reads have the read timeout each, not the request
        deadline."""
        ids = self.server.ids
        if ids is not None and self.path.startswith(ids_server.PREFIX):
            service = ids
        elif self.path.startswith(rest.PREFIX):
            service = self.server.rest
        else:
            return False
        self._request_read()
        service.handle(ids_server.Request(self, self.server.tls is not None))
        return True

    def do_PUT(self):
        if not self._ids():
            self._send(404, b"Not found\n", "text/plain")

    do_DELETE = do_PUT

    def _refuse(self, status: int, message: str):
        """Answer ``status`` and close: what is left of the request is unread."""
        self.close_connection = True
        self._request_read()
        headers = [("Connection", "close")]
        if status == 503:
            headers.append(("Retry-After", "1"))
        self._send(status, (message + "\n").encode("utf-8"), "text/plain", headers)
        try:
            # FIN right after the answer, so the client reads it before it
            # notices that the rest of its request went nowhere.
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def handle_expect_100(self):
        # "Expect: 100-continue" asks whether to send the body at all: say no
        # to a SOAP request that is too large before it is sent.
        if self.command == "POST" and urllib.parse.urlsplit(self.path).path == SERVICE_PATH:
            try:
                self._content_length()
            except _HttpRefusal as exc:
                self._refuse(exc.status, str(exc))
                return False
        return super().handle_expect_100()

    def do_GET(self):
        if self._ids():
            return
        self._request_read()
        url = urllib.parse.urlsplit(self.path)
        if url.path != SERVICE_PATH:
            return self._send(404, b"Not found\n", "text/plain")
        service = self.server.service
        query = url.query.lower()
        if query == "wsdl":
            host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
            scheme = "https" if self.server.tls else "http"
            return self._send(200, wsdl.make_wsdl("%s://%s%s" % (scheme, host, SERVICE_PATH)))
        if query == "xsd=1":
            return self._send(200, service.xsd())
        return self._send(404, b"Use ?wsdl or ?xsd=1\n", "text/plain")

    def do_POST(self):
        if self._ids():
            return
        if urllib.parse.urlsplit(self.path).path != SERVICE_PATH:
            return self._refuse(404, "Not found")
        self._held = 0
        try:
            try:
                body = self._body()
            except _HttpRefusal as exc:
                return self._refuse(exc.status, str(exc))
            self._request_read()
            status, reply = self.server.service.handle(body)
            del body
        finally:
            self.server.budget.release(self._held)
        self._send(status, reply)

    def _reserve(self, n: int):
        """Count ``n`` more body bytes against the server's pending budget."""
        if not self.server.budget.acquire(n, self._input.deadline):
            raise _HttpRefusal(503, "Too many large requests at once; try again in a moment")
        self._held += n

    def _content_length(self) -> int | None:
        """The declared body length (None: chunked), checked against the limit."""
        limit = self.server.limits.max_request
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise _HttpRefusal(501, "Transfer-Encoding %s is not supported" % encoding)
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise _HttpRefusal(411, "Content-Length required") from None
        if length < 0:
            raise _HttpRefusal(400, "Content-Length is negative")
        if length > limit:
            raise _HttpRefusal(413, "Request of %d bytes is larger than the server's limit "
                               "of %d bytes" % (length, limit))
        return length

    def _body(self) -> bytes:
        length = self._content_length()
        if length is None:
            return self._chunked_body(self.server.limits.max_request)
        self._reserve(length)
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionResetError("client closed the connection in the request body")
        return body

    def _chunked_body(self, limit: int) -> bytes:
        """A chunked body, refused as soon as its chunks add up past ``limit``."""
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise _HttpRefusal(400, "Malformed chunk size line") from None
            if size < 0 or not line.endswith(b"\n"):
                raise _HttpRefusal(400, "Malformed chunk size line")
            if size == 0:
                break
            total += size
            if total > limit:
                raise _HttpRefusal(413, "Request larger than the server's limit of %d bytes"
                                   % limit)
            self._reserve(size)
            data = self.rfile.read(size)
            if len(data) < size:
                raise ConnectionResetError("client closed the connection in a chunk")
            parts.append(data)
            if self.rfile.readline(3).strip():
                raise _HttpRefusal(400, "Malformed chunk: no CRLF after its data")
        for _ in range(100):                # trailers, ignored; at most 100 of them
            if not self.rfile.readline(65537).strip():
                return b"".join(parts)
        raise _HttpRefusal(400, "Too many trailer lines")


#: How long a connection refused with 503 is kept half-closed, and how many.
_LINGER = 1.0
_MAX_LINGERING = 1000
_BUSY_TEXT = b"Too many connections; try again in a moment\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
         % (len(_BUSY_TEXT), _BUSY_TEXT))


class IcatServer(ThreadingHTTPServer):
    """The HTTP server, running in a background thread; ``.url`` and ``.shutdown()``."""

    daemon_threads = True

    def __init__(self, address, service: IcatService, log_requests=False,
                 tls: ssl.SSLContext | None = None, limits: Limits | None = None):
        self.limits = limits or Limits()
        # Read by server_activate() (listen) and server_bind() (socket family)
        # inside the base constructor.
        self.request_queue_size = self.limits.backlog
        self.address_family = _family(*address[:2])
        self._connections = 0
        self._connections_lock = threading.Lock()
        self.budget = _Budget(self.limits.max_pending)
        self._lingering = collections.deque()     # (close at, socket) of 503s
        self._closing = False
        super().__init__(address, _Handler)
        self.service = service
        #: The local IDS (an :class:`icatdump.ids.server.IdsService`), or None.
        self.ids = None
        #: icat.server's REST resources under /icat (``port``, ``version``).
        self.rest = rest.RestService(service)
        self.log_requests = log_requests
        self.thread = None
        self.tls = tls
        if tls is not None:
            # The handshake happens on the handler's thread (first read), so
            # a slow or failing client never holds up accepting the next one.
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    @property
    def connections(self) -> int:
        """Connections being served now (each has a thread)."""
        return self._connections

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d%s" % ("https" if self.tls else "http", host, port, SERVICE_PATH)

    @property
    def ids_url(self) -> str | None:
        """The local IDS's URL (python-icat's ``idsurl``), or None."""
        if self.ids is None:
            return None
        return self.url[:-len(SERVICE_PATH)] + ids_server.PREFIX.rstrip("/")

    def process_request(self, request, client_address):
        """Start a thread for the connection, or refuse it past max_connections."""
        with self._connections_lock:
            busy = self._connections >= self.limits.max_connections
            if not busy:
                self._connections += 1
        if busy:
            return self._refuse_busy(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self):
        with self._connections_lock:
            self._connections -= 1

    def _refuse_busy(self, request):
        """503 without a thread: written without blocking on the accepting
        thread (it fits any socket buffer).  Over TLS there is no handshake
        yet to answer in, so the connection is only closed.

        The socket is half-closed and kept a moment (see service_actions):
        closed at once, it would answer the request the client is sending
        with a reset, and the client would see that instead of the 503.
        """
        if self.tls is not None or len(self._lingering) >= _MAX_LINGERING:
            return self.shutdown_request(request)
        try:
            request.setblocking(False)
            request.send(_BUSY)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            return self.close_request(request)
        self._lingering.append((time.monotonic() + _LINGER, request))

    def service_actions(self):
        """Between accepts: close the refused connections whose moment is up,
        dropping what they sent."""
        now = time.monotonic()
        while self._lingering and (self._lingering[0][0] <= now or self._closing):
            _, request = self._lingering.popleft()
            try:
                while request.recv(65536):
                    pass
            except OSError:
                pass
            self.close_request(request)

    def handle_error(self, request, client_address):
        """A client that hangs up or refuses our certificate is its own
        business; anything else is worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def start(self):
        # A short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="icat-server",
                                       daemon=True)
        self.thread.start()
        return self

    def shutdown(self):
        """Stop serving, close the socket and the catalogue worker."""
        if self.thread is not None:
            super().shutdown()
            self.thread.join()
            self.thread = None
        self._closing = True
        self.service_actions()
        self.server_close()
        if self.ids is not None:
            self.ids.close()
        self.service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def _family(host: str, port: int) -> int:
    """The address family to listen with: IPv6 for ``::1`` and the like."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        return socket.AF_INET       # bind() will say what is wrong with the name


def serve(client, host: str = "127.0.0.1", port: int = 0,
          accounts: dict | None = None, lifetime_minutes: float = 120.0,
          apiversion: str | None = None, log_requests: bool = False,
          certfile: str | None = None, keyfile: str | None = None,
          data_dir=None, limits: Limits | None = None, root_users=ROOT_USERS,
          timezone=UTC) -> IcatServer:
    """Start an ICAT SOAP server for ``client`` in a background thread.

    ``client`` is a :class:`Client`, or a callable that opens one; the
    callable form opens (and at shutdown closes) it on the catalogue worker
    thread, which thread-bound connections such as SQLite's need.  All
    catalogue calls run on that one thread, one at a time.  With
    ``certfile`` (PEM, the key in it or in ``keyfile``) it speaks HTTPS.
    With ``data_dir``, an IDS answers under ``/ids`` beside it, keeping its
    files in that directory (see :mod:`icatdump.ids.server`).
    ``limits``: timeouts and ceilings (default: :class:`Limits`' defaults).
    ``timezone`` (a tzinfo, None for the machine's) is the zone in which
    dates without offset in request beans are read, as a Java ICAT reads
    them in its own.
    """
    if accounts is None:
        accounts = {"root": "secret"}
    tls = None
    if certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
    sessions = Sessions(accounts, lifetime_minutes, root_users=root_users)
    service = IcatService(client, sessions, apiversion, timezone)
    try:
        server = IcatServer((host, port), service, log_requests, tls, limits)
    except BaseException:
        service.close()
        raise
    if data_dir is not None:
        try:
            server.ids = ids_server.IdsService(service, FileStore(data_dir))
        except BaseException:
            server.shutdown()
            raise
    return server.start()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(path, host: str = "127.0.0.1", port: int = 0, accounts: dict | None = None,
               quiet: bool = False, certfile: str | None = None,
               keyfile: str | None = None, data_dir=None,
               limits: Limits | None = None, root_users=ROOT_USERS, timezone=None) -> None:
    """``icatdata serve``: serve the embedded catalogue at ``path`` until interrupted.

    The IDS keeps its files in ``data_dir``, by default ``<path>.data``.

    Prints the service URL on stdout; warns on stderr when the address is
    reachable from other machines, since this server keeps plain passwords
    (and, without a certificate, speaks plain HTTP).
    """
    from ..store import EmbeddedClient

    server = serve(lambda: EmbeddedClient(str(path)), host, port, accounts,
                   log_requests=not quiet, certfile=certfile, keyfile=keyfile,
                   data_dir=data_dir or data_dir_of(path), limits=limits, root_users=root_users,
                   timezone=timezone)
    try:
        if not is_loopback(host):
            print("warning: serving on %s, reachable from other machines; this server "
                  "is for tests (accounts on its command line%s)"
                  % (host, "" if certfile else ", plain HTTP"), file=sys.stderr)
        print(server.url, flush=True)
        if not quiet:
            print("accounts: %s (authenticators %s); root users: %s; IDS at %s; press Ctrl-C "
                  "to stop" % (", ".join(sorted(accounts or {"root": ""})),
                               ", ".join(server.service.sessions.plugins),
                               ", ".join(sorted(root_users)), server.ids_url), file=sys.stderr)
        # Sleep, not join(timeout): a Ctrl-C that interrupts Thread.join
        # can leave the thread's state inconsistent (CPython gh-90882), and
        # shutdown() joins it again.
        while server.thread is not None and server.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
