"""A local ICAT-compatible SOAP server over any :class:`~icatdump.client.Client`.

It speaks enough of ICAT's SOAP API (document/literal wrapped, SOAP 1.1) for
python-icat, suds and our own ``SoapClient``: the WSDL and XSD are generated
from the catalogue's schema, replies are encoded the way JAX-WS encodes them
(xsi-typed search results, unqualified children), and errors are ICAT's
``IcatException`` faults, so every client maps them to its usual exceptions.

Why this exists: it makes the SOAP path testable for real without a Java
ICAT, lets python-icat run side by side with icatdump on the same data, and
gives a zero-install ICAT for tests.  It is not a production server: any
authenticated user may do anything (no authorization rules are evaluated).

Concurrency: HTTP requests are handled in threads, but every catalogue call
runs on one dedicated worker thread, so the wrapped client (e.g. a SQLite
connection, which belongs to the thread that made it) is never used from two
threads and never concurrently.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ipaddress
import logging
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree

from ..client import Client, IcatError, ParameterError, NoSuchObjectError, error_for
from ..errors import ClientFault
from ..ids import server as ids_server
from ..ids.store import FileStore, data_dir_of
from ..schema import DEFAULTS
from . import codec, wsdl
from .sessions import Sessions

log = logging.getLogger(__name__)

SERVICE_PATH = "/ICATService/ICAT"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_REQUEST = 512 * 1024 * 1024

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


class IcatService:
    """ICAT's operations: decode the request, call the catalogue, encode the reply."""

    def __init__(self, client, sessions: Sessions, apiversion: str | None = None):
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="icat-catalogue")
        self._owned = not isinstance(client, Client)
        if self._owned:
            # A factory: open the client on the worker thread that will use it
            # (an SQLite connection may only be used by its own thread).
            client = self._worker.submit(client).result()
        self.client = client
        self.schema = client.schema
        self.sessions = sessions
        self.apiversion = apiversion or _apiversion(client)
        self._xsd = None
        #: Operation name → number of calls (for measurements and tests).
        self.calls = collections.Counter()
        self._calls_lock = threading.Lock()

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
        return self._worker.submit(run).result()

    # -- documents ------------------------------------------------------------
    def xsd(self) -> bytes:
        if self._xsd is None:
            self._xsd = wsdl.make_xsd(self.schema)
        return self._xsd

    # -- SOAP -----------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, bytes]:
        """Answer one SOAP request: ``(HTTP status, reply bytes)``."""
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
            entity = codec.decode_entity(el, self.schema, lenient=True)
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
        self._user(params)
        self._ret(out, "lifetimeMinutes %g" % (self.sessions.lifetime / 60.0))
        self._ret(out, "maxEntities %d" % self.client.max_entities)

    def op_isAccessAllowed(self, params, out):
        self._user(params)
        self._ret(out, True)

    # -- catalogue operations -------------------------------------------------
    def op_search(self, params, out):
        user = self._user(params)
        query = (self._text(params, "query") or "").strip()
        if not query:
            raise ParameterError("query cannot be null or empty")
        for item in self._call(user, self.client.search, query):
            codec.encode_result(out, item)

    def op_get(self, params, out):
        user = self._user(params)
        query = (self._text(params, "query") or "").strip()
        key = (self._text(params, "primaryKey") or "").strip()
        name = query.partition(" ")[0]
        if name not in self.schema:
            raise ParameterError("%s is not an ICAT entity" % name)
        try:
            pk = int(key)
        except ValueError:
            raise ParameterError("primaryKey %r is not a number" % key) from None
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

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "icatdump-ICAT"

    def log_message(self, format, *args):
        if self.server.log_requests:
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def _send(self, status, body: bytes, ctype="text/xml;charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _ids(self):
        """Hand a request under /ids/ to the local IDS, if there is one (True)."""
        ids = self.server.ids
        if ids is None or not self.path.startswith(ids_server.PREFIX):
            return False
        ids.handle(ids_server.Request(self, self.server.tls is not None))
        return True

    def do_PUT(self):
        if not self._ids():
            self._send(404, b"Not found\n", "text/plain")

    do_DELETE = do_PUT

    def do_GET(self):
        if self._ids():
            return
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
            return self._send(404, b"Not found\n", "text/plain")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self._send(411, b"Content-Length required\n", "text/plain")
        if length < 0 or length > MAX_REQUEST:
            self.close_connection = True
            return self._send(413, b"Request too large\n", "text/plain")
        body = self.rfile.read(length)
        status, reply = self.server.service.handle(body)
        self._send(status, reply)


class IcatServer(ThreadingHTTPServer):
    """The HTTP server, running in a background thread; ``.url`` and ``.shutdown()``."""

    daemon_threads = True

    def __init__(self, address, service: IcatService, log_requests=False,
                 tls: ssl.SSLContext | None = None):
        super().__init__(address, _Handler)
        self.service = service
        #: The local IDS (an :class:`icatdump.ids.server.IdsService`), or None.
        self.ids = None
        self.log_requests = log_requests
        self.thread = None
        self.tls = tls
        if tls is not None:
            # The handshake happens on the handler's thread (first read), so
            # a slow or failing client never holds up accepting the next one.
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

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

    def handle_error(self, request, client_address):
        """A client that hangs up or refuses our certificate is its own
        business; anything else is worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
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
        self.server_close()
        self.service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def serve(client, host: str = "127.0.0.1", port: int = 0,
          accounts: dict | None = None, lifetime_minutes: float = 120.0,
          apiversion: str | None = None, log_requests: bool = False,
          certfile: str | None = None, keyfile: str | None = None,
          data_dir=None) -> IcatServer:
    """Start an ICAT SOAP server for ``client`` in a background thread.

    ``client`` is a :class:`Client`, or a callable that opens one; the
    callable form opens (and at shutdown closes) it on the catalogue worker
    thread, which thread-bound connections such as SQLite's need.  All
    catalogue calls run on that one thread, one at a time.  With
    ``certfile`` (PEM, the key in it or in ``keyfile``) it speaks HTTPS.
    With ``data_dir``, an IDS answers under ``/ids`` beside it, keeping its
    files in that directory (see :mod:`icatdump.ids.server`).
    """
    if accounts is None:
        accounts = {"root": "secret"}
    tls = None
    if certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certfile, keyfile)
    sessions = Sessions(accounts, lifetime_minutes)
    service = IcatService(client, sessions, apiversion)
    server = IcatServer((host, port), service, log_requests, tls)
    if data_dir is not None:
        server.ids = ids_server.IdsService(service, FileStore(data_dir))
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
               keyfile: str | None = None, data_dir=None) -> None:
    """``icatdata serve``: serve the embedded catalogue at ``path`` until interrupted.

    The IDS keeps its files in ``data_dir``, by default ``<path>.data``.

    Prints the service URL on stdout; warns on stderr when the address is
    reachable from other machines, since this server evaluates no
    authorization rules (and, without a certificate, speaks plain HTTP).
    """
    from ..store import EmbeddedClient

    server = serve(lambda: EmbeddedClient(str(path)), host, port, accounts,
                   log_requests=not quiet, certfile=certfile, keyfile=keyfile,
                   data_dir=data_dir or data_dir_of(path))
    try:
        if not is_loopback(host):
            print("warning: serving on %s, reachable from other machines; this server "
                  "%slets every logged-in user do everything"
                  % (host, "" if certfile else "uses plain HTTP and "), file=sys.stderr)
        print(server.url, flush=True)
        if not quiet:
            print("accounts: %s (authenticators simple, db); IDS at %s; press Ctrl-C to stop"
                  % (", ".join(sorted(accounts or {"root": ""})), server.ids_url),
                  file=sys.stderr)
        # Sleep, not join(timeout): a Ctrl-C that interrupts Thread.join
        # can leave the thread's state inconsistent (CPython gh-90882), and
        # shutdown() joins it again.
        while server.thread is not None and server.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
