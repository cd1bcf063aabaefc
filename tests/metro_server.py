"""A test server that answers as icat.server on Payara (Metro, JAX-WS RI) does.

It is a real HTTP server on 127.0.0.1 in front of icatdump's own local
server (:func:`icatdump.soap.server.serve`), which does the ICAT work; this
one rewrites the wire shapes into those of a real icat.server (doc/soap.md,
"Reply shapes a real icat.server sends"):

* dates as JAXB prints a ``java.util.Date``: in the JVM's time zone
  (``zone``), ``Z`` for an offset of zero, milliseconds only when not zero;
* namespace declarations where JAXB puts them: ``xmlns:xsi`` (and ``xmlns:xs``
  for scalars) on each ``return``, only ``ns2`` on the wrapper;
* bodies sent with ``Transfer-Encoding: chunked``, gzip-compressed when the
  request accepts it (Grizzly's ``compression=on``), a ``JSESSIONID``
  cookie as a load balancer pins a client with;
* redirects (``redirect=(code, methods)`` for every path under ``/old``)
  and a WSDL whose ``soap:address`` is another URL (``soap_address``);
* ``canned``: replies for given search queries (enum and other scalars);
* ``mode``: a broken server -- ``wsdl-500`` (an HTML error page for the
  WSDL), ``wsdl-garbage``, ``fault-unknown`` (JAX-WS' own fault for a
  RuntimeException), ``silent`` (reads a POST, never answers), ``endless``
  (a search reply that never ends), ``dribble`` (a reply a byte at a time),
  ``unavailable`` (503 for every POST, as a balancer without backends),
  ``html-200`` (a proxy's login page for a search).
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import re
import threading
import urllib.error
import urllib.request
import zoneinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ICAT_NS = "http://icatproject.org"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
SERVICE = "/ICATService/ICAT"
HEAD = ("<?xml version='1.0' encoding='UTF-8'?><S:Envelope "
        'xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>')
TAIL = "</S:Body></S:Envelope>"

_DATE = re.compile(rb">(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)\+00:00<")
_TYPED = re.compile(rb'<(\w+) xsi:(type|nil)="([^"]*)"')


def jaxb_datetime(value: dt.datetime, zone: dt.tzinfo) -> str:
    """A date as JAXB's DatatypeConverterImpl prints a java.util.Date:
    ``%Y-%M-%DT%h:%m:%s%z`` in the JVM's zone; milliseconds (3 digits) only
    when not zero; ``Z`` for offset zero, else ``+hh:mm`` (whole minutes)."""
    local = value.astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    ms = local.microsecond // 1000
    if ms:
        text += ".%03d" % ms
    minutes = int(local.utcoffset().total_seconds()) // 60
    if minutes == 0:
        return text + "Z"
    sign = "+" if minutes > 0 else "-"
    return text + "%s%02d:%02d" % (sign, abs(minutes) // 60, abs(minutes) % 60)


def metro_shape(body: bytes, zone: dt.tzinfo) -> bytes:
    """icatdump's reply rewritten into Metro's: dates, declarations, prolog."""
    def date(m):
        value = dt.datetime.fromisoformat(m.group(1).decode() + "+00:00")
        return b">" + jaxb_datetime(value, zone).encode() + b"<"

    def typed(m):
        decl = ' xmlns:xsi="%s"' % XSI
        if m.group(3).startswith(b"xs:"):
            decl = ' xmlns:xs="%s"' % XSD + decl
        return b"<" + m.group(1) + decl.encode() + b" xsi:" + m.group(2) + b'="' + \
            m.group(3) + b'"'
    body = _DATE.sub(date, body)
    body = body.replace((' xmlns:xsi="%s" xmlns:xs="%s"' % (XSI, XSD)).encode(), b"")
    body = _TYPED.sub(typed, body)
    return body.replace(b'<?xml version="1.0" encoding="UTF-8"?>',
                        b"<?xml version='1.0' encoding='UTF-8'?>", 1)


def search_reply(returns: str) -> bytes:
    """A searchResponse with the given ``return`` elements, as Metro writes it."""
    return (HEAD + '<ns2:searchResponse xmlns:ns2="%s">%s</ns2:searchResponse>'
            % (ICAT_NS, returns) + TAIL).encode()


#: JAX-WS RI's fault for an exception that is no declared fault (a
#: RuntimeException in the endpoint): detail is its ExceptionBean
#: (com.sun.xml.ws.fault.ExceptionBean), not an IcatException.
UNKNOWN_FAULT = (
    HEAD + '<S:Fault xmlns:ns4="http://www.w3.org/2003/05/soap-envelope">'
    "<faultcode>S:Server</faultcode><faultstring>java.lang.NullPointerException</faultstring>"
    '<detail><ns2:exception xmlns:ns2="http://jax-ws.dev.java.net/" '
    'class="java.lang.NullPointerException" note="To disable this feature, set '
    'com.sun.xml.ws.fault.SOAPFaultBuilder.disableCaptureStackTrace system property to false">'
    "<message>null</message><ns2:stackTrace><ns2:frame class=\"org.icatproject.exposed.ICAT\" "
    'file="ICAT.java" line="372" method="search"/></ns2:stackTrace></ns2:exception></detail>'
    "</S:Fault>" + TAIL).encode()

#: An IcatException of a type ICAT does not define (a newer or foreign server).
NEW_TYPE_FAULT = (
    HEAD + "<S:Fault><faultcode>S:Server</faultcode><faultstring>quota exceeded</faultstring>"
    '<detail><ns2:IcatException xmlns:ns2="%s"><message>quota exceeded</message>'
    "<offset>-1</offset><type>QUOTA</type></ns2:IcatException></detail></S:Fault>"
    % ICAT_NS + TAIL).encode()

HTML_500 = (b"<!DOCTYPE html><html><head><title>Payara Server - Error report</title></head>"
            b"<body><h1>HTTP Status 500 - Internal Server Error</h1></body></html>")


class MetroServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, zone: str = "UTC", chunked: bool = True,
                 gzip_replies: bool = True, redirect=None, soap_address: str | None = None,
                 canned: dict | None = None, mode: str | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream                  # .../ICATService/ICAT of the local server
        self.zone = zoneinfo.ZoneInfo(zone)
        self.chunked = chunked
        self.gzip_replies = gzip_replies
        self.redirect = redirect                  # (code, methods) for paths under /old
        self.soap_address = soap_address
        self.canned = dict(canned or {})
        self.mode = mode
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = []                        # (method, path, had the cookie, gzip asked)
        self.sessions = itertools.count(1)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def base(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    @property
    def url(self) -> str:
        return self.base + SERVICE

    def close(self):
        self.stop.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Payara Server  5.2022.5 #badassfish"
    sys_version = ""
    # Payara's listeners send with TCP_NODELAY (the transport's tcp-no-delay
    # is true by default): the pieces of a reply go out at once, not held
    # back by Nagle's algorithm for the ACK a kept connection's client delays.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    # -- plumbing ---------------------------------------------------------------
    def _note(self):
        cookie = "JSESSIONID=" in (self.headers.get("Cookie") or "")
        gz = "gzip" in (self.headers.get("Accept-Encoding") or "")
        with self.server.lock:
            self.server.requests.append((self.command, self.path, cookie, gz))
        return cookie, gz

    def _send(self, status, body: bytes, ctype="text/xml;charset=utf-8", cookie=False,
              gz=False):
        self.send_response(status)
        self.send_header("X-Powered-By", "Servlet/4.0 JSP/2.3 (Payara Server  5.2022.5 Java/"
                                         "Azul Systems, Inc./11)")
        self.send_header("Content-Type", ctype)
        if not cookie:
            self.send_header("Set-Cookie", "JSESSIONID=%x.icat1; Path=/ICATService; HttpOnly"
                             % next(self.server.sessions))
        if gz and self.server.gzip_replies:
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Pieces of uneven size, as Grizzly flushes its buffers.
            sizes = itertools.cycle((1, 7, 8192, 300, 65536))
            pos = 0
            while pos < len(body):
                piece = body[pos:pos + next(sizes)]
                pos += len(piece)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _forward(self, method, path, body=None):
        url = self.server.upstream + path[len(SERVICE):]
        req = urllib.request.Request(url, data=body, method=method, headers={
            "Content-Type": self.headers.get("Content-Type", "text/xml")})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read(), r.headers.get("Content-Type")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type")
        except urllib.error.URLError:
            return 502, b"<html><body>Bad Gateway</body></html>", "text/html"

    def _redirected(self) -> bool:
        redirect = self.server.redirect
        if redirect and self.path.startswith("/old/") and self.command in redirect[1]:
            self.send_response(redirect[0])
            self.send_header("Location", self.server.base + self.path[len("/old"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def _service_path(self):
        path = self.path[len("/old"):] if self.path.startswith("/old/") else self.path
        return path if path.split("?")[0] == SERVICE else None

    # -- GET: WSDL and XSD ------------------------------------------------------
    def do_GET(self):
        cookie, gz = self._note()
        if self._redirected():
            return
        path = self._service_path()
        if path is None:
            return self._send(404, b"Not Found", "text/html", cookie)
        mode = self.server.mode
        if mode == "wsdl-500" and path.endswith("?wsdl"):
            return self._send(500, HTML_500, "text/html;charset=UTF-8", cookie)
        if mode == "wsdl-garbage" and path.endswith("?wsdl"):
            return self._send(200, b"\x89PNG\r\n\x1a\n not a WSDL at all", "text/xml", cookie)
        status, body, ctype = self._forward("GET", path)
        up = self.server.upstream.encode()
        body = body.replace(up, self.server.url.encode())
        if self.server.soap_address:
            body = re.sub(rb'(<soap:address location=")[^"]*', lambda m: m.group(1) +
                          self.server.soap_address.encode(), body)
        self._send(status, body, ctype or "text/xml;charset=utf-8", cookie, gz)

    # -- POST: operations -------------------------------------------------------
    def do_POST(self):
        cookie, gz = self._note()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self._redirected():
            return
        path = self._service_path()
        if path is None:
            return self._send(404, b"Not Found", "text/html", cookie)
        mode = self.server.mode
        if mode == "unavailable":
            return self._send(503, b"<html><body>Service Unavailable</body></html>",
                              "text/html", cookie)
        if mode == "silent":
            self.server.stop.wait(120)
            self.close_connection = True
            return
        query = re.search(rb"<query>(.*?)</query>", body, re.S)
        query = query.group(1).decode() if query else None
        if mode == "endless" and query:
            return self._endless()
        if mode == "dribble" and query:
            return self._dribble()
        if mode == "html-200" and query:
            return self._send(200, b"<!DOCTYPE html><html><body>Please log in</body></html>",
                              "text/html", cookie)
        if mode == "fault-unknown" and query:
            return self._send(500, UNKNOWN_FAULT, cookie=cookie, gz=gz)
        if mode == "fault-newtype" and query:
            return self._send(500, NEW_TYPE_FAULT, cookie=cookie, gz=gz)
        if query in self.server.canned:
            return self._send(200, search_reply(self.server.canned[query]), cookie=cookie, gz=gz)
        status, reply, ctype = self._forward("POST", path, body)
        self._send(status, metro_shape(reply, self.server.zone), cookie=cookie, gz=gz)

    def _endless(self):
        """200, then ``return`` elements without end (until the client goes)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/xml;charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = ('<return xmlns:xs="%s" xmlns:xsi="%s" xsi:type="xs:string">%s</return>'
                 % (XSD, XSI, "x" * 8000)).encode()
        first = search_reply("")[:-len("</ns2:searchResponse>" + TAIL)]
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
            while not self.server.stop.is_set():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            pass
        self.close_connection = True

    def _dribble(self):
        """200 and a reply that never completes: one byte every 0.2 s."""
        self.send_response(200)
        self.send_header("Content-Type", "text/xml;charset=utf-8")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            while not self.server.stop.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True
