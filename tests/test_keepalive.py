"""Kept connections in the SOAP client (icatdump/soap/keepalive.py).

Against real servers on 127.0.0.1: ``icatdata serve`` (in-process, HTTP and
HTTPS) behind a TCP relay that counts the connections it accepts, and a
scripted raw-socket server for what a real server does now and then:
closing idle connections, ``Connection: close``, losing a reply, dribbling
one, redirecting, setting cookies.
"""

from __future__ import annotations

import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

from icatdump.errors import ServerError
from icatdump.soap import keepalive
from icatdump.soap.client import Http, SoapClient, _Transient, ssl_context
from icatdump.soap.limits import Limits
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

CRED = {"username": "root", "password": "secret"}
POST_LINE = b"POST /ICATService/ICAT HTTP/1.1\r\n"


class Relay:
    """A TCP relay to ``upstream`` (host, port): counts the connections it
    accepts and the SOAP requests that pass through (TLS passes unread)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.accepted = 0
        self._tail = b""
        self.posts = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            up = socket.create_connection(self.upstream)
            # Pieces are passed on as they come: with Nagle's algorithm, a
            # reply's second piece would wait for the client's delayed ACK.
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, False), daemon=True).start()

    def _pipe(self, src, dst, requests):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if requests:
                    seen = self._tail + data
                    self.posts += seen.count(POST_LINE)
                    self._tail = seen[-len(POST_LINE) + 1:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def served(tmp_path):
    path = str(tmp_path / "served.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), accounts={"root": "secret"})
    yield server
    server.shutdown()


def relayed(server) -> tuple[Relay, str]:
    relay = Relay(server.server_address[:2])
    scheme = server.url.split(":", 1)[0]
    return relay, "%s://127.0.0.1:%d/ICATService/ICAT" % (scheme, relay.port)


def test_a_dump_uses_one_connection(served, example, tmp_path):
    """icatdump through the relay: a few hundred requests, one connection
    (the dump's searches run on its prefetch thread, one at a time)."""
    relay, url = relayed(served)
    base = ["-w", url, "-a", "simple", "-u", "root", "-p", "secret", "-q"]
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", *base,
                           "-i", str(example("icatdump-6.2.xml"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert relay.posts > 20 and relay.accepted <= 2, (relay.posts, relay.accepted)
    relay.accepted = relay.posts = 0
    out = tmp_path / "dump.xml"
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", *base, "-o", str(out),
                           "-f", "XML"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().count(b"<investigation") > 0
    assert relay.posts > 50 and relay.accepted == 1, (relay.posts, relay.accepted)
    relay.close()


def test_idle_connections_closed_by_the_server(tmp_path):
    """``icatdata serve`` closes a connection idle for its read timeout: the
    next request, a write that is never sent twice, finds it closed before
    sending and opens another."""
    path = str(tmp_path / "served.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), accounts={"root": "secret"},
                   limits=Limits(read_timeout=0.5))
    relay, url = relayed(server)
    try:
        c = SoapClient(url)
        c.login("simple", CRED)
        before = relay.accepted
        for i in range(2):
            time.sleep(1.0)
            c.create(c.new("Facility", name="F%d" % i))
            assert relay.accepted == before + 1 + i
        assert len(c.search("SELECT f FROM Facility f")) == 2
        assert relay.accepted == before + 2
        c.close()
    finally:
        relay.close()
        server.shutdown()


def test_https_with_cacert_keeps_one_connection(certificate, tmp_path):
    cert, key = certificate
    path = str(tmp_path / "served.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), accounts={"root": "secret"},
                   certfile=str(cert), keyfile=str(key))
    relay, url = relayed(server)
    try:
        assert url.startswith("https://")

        class Cfg:
            cacert = str(cert)
        c = SoapClient(url, Cfg())
        c.login("simple", CRED)
        c.create_many([c.new("Facility", name="F%d" % i) for i in range(3)])
        assert len(c.search("SELECT f FROM Facility f")) == 3
        assert relay.accepted == 1 and relay.posts == 0       # TLS: nothing readable
        c.close()

        class NoCheck:
            check_cert = False
        c = SoapClient(url, NoCheck())
        assert relay.accepted == 2
        c.close()
        with pytest.raises(ServerError, match="certificate verify failed"):
            SoapClient(url)
    finally:
        relay.close()
        server.shutdown()



# -- a scripted server: what real servers do now and then ----------------------------------

class Scripted:
    """A raw HTTP/1.1 server on 127.0.0.1.  Each request takes the next
    action of ``script`` (the last one repeats):

    ``ok``     200 and a body, connection kept;
    ``fin``    the same, then the connection closed (no ``Connection: close``):
               a server ending an idle connection;
    ``rst``    the same, then the connection reset;
    ``close``  200 with ``Connection: close``, then closed;
    ``http10`` an HTTP/1.0 reply, then closed;
    ``lose``   the request read, the connection closed without a reply;
    ``drip``   the headers, then the body a byte every 0.2 s;
    ``slow``   a reply after 0.05 s;
    ``cookie`` 200 with ``Set-Cookie: s=1``;
    ``moved:CODE:URL`` a redirect.

    ``requests`` holds ``(connection number, method, path, headers, body)``.
    """

    def __init__(self, script, tls=None):
        """Every 200 reply has the request's body as its own."""
        self.script = list(script)
        self.requests = []
        self.accepted = 0
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/ICATService/ICAT" % ("https" if tls else "http", self.port)
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn, self.accepted), daemon=True).start()

    def _next(self):
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _serve(self, conn, number):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline().decode()
                    if h in ("\r\n", ""):
                        break
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", 0)))
                self.requests.append((number, method, path, headers, body))
                if not self._answer(conn, self._next(), body):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def _answer(self, conn, action, body) -> bool:
        """Reply as ``action`` says; whether the connection stays open."""
        head = ["HTTP/1.1 200 OK", "Content-Type: text/xml", "Content-Length: %d" % len(body)]
        if action == "lose":
            return False
        if action.startswith("moved:"):
            _, code, location = action.split(":", 2)
            head = ["HTTP/1.1 %s Moved" % code, "Location: " + location, "Content-Length: 0"]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            return True
        if action == "close":
            head.append("Connection: close")
        if action == "http10":
            head[0] = "HTTP/1.0 200 OK"
        if action == "cookie":
            head.append("Set-Cookie: s=1; Path=/")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        if action == "drip":
            conn.sendall(data[:-len(body)])
            for i in range(len(body)):
                conn.sendall(body[i:i + 1])
                time.sleep(0.2)
            return True
        if action == "slow":
            time.sleep(0.05)
        conn.sendall(data)
        if action == "rst":
            time.sleep(0.05)        # the reply read before the reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return action in ("ok", "cookie", "slow")

    def bodies(self):
        return [r[4] for r in self.requests]

    def close(self):
        self.sock.close()


def http(timeout=10.0, context=None) -> Http:
    """An Http as SoapClient makes it, without proxies from the environment."""
    return Http(context or ssl_context(None), {}, timeout, 1 << 20)


def post(h, url, body, idempotent=True):
    return h.request(url, body, {"Content-Type": "text/xml"}, what="test request",
                     idempotent=idempotent)


def test_kept_connection_and_its_limits():
    """Kept while the server keeps it; a ``Connection: close`` reply or an
    HTTP/1.0 one is not kept, and the next request opens another."""
    srv = Scripted(["ok", "ok", "close", "ok", "http10", "ok", "ok"])
    h = http()
    statuses = [post(h, srv.url, b"<r%d/>" % i)[1] for i in range(7)]
    assert statuses == [200] * 7
    assert [r[0] for r in srv.requests] == [1, 1, 1, 2, 2, 3, 3]
    assert srv.bodies() == [b"<r%d/>" % i for i in range(7)]
    h.close()
    srv.close()


@pytest.mark.parametrize("ending", ["fin", "rst"])
def test_connection_closed_while_idle(ending):
    """The server ends each connection after its reply (quietly or with a
    reset): the closed connection is noticed before sending, nothing is
    lost or sent twice, writes included."""
    srv = Scripted([ending])
    h = http()
    for i in range(4):
        time.sleep(0.1)
        assert post(h, srv.url, b"<w%d/>" % i, idempotent=i % 2 == 0)[1] == 200
    assert srv.bodies() == [b"<w%d/>" % i for i in range(4)]
    assert srv.accepted == 4
    h.close()
    srv.close()


def test_closed_as_the_request_goes_out(monkeypatch):
    """The race the check before sending cannot see (here: the check
    switched off).  A read that gets no reply on a kept connection is sent
    again on a fresh one; a write the connection refuses while it is being
    sent is too (the server has not got it whole).  A write that got out
    whole and lost its reply is not: test_a_lost_write_is_not_sent_twice."""
    monkeypatch.setattr(keepalive, "alive", lambda conn: True)
    srv = Scripted(["fin"])
    h = http()
    post(h, srv.url, b"<r0/>")
    time.sleep(0.1)
    assert post(h, srv.url, b"<r1/>")[1] == 200              # lost, sent again
    assert srv.bodies() == [b"<r0/>", b"<r1/>"] and srv.accepted == 2
    h.close()
    srv.close()

    srv = Scripted(["rst"])
    h = http()
    post(h, srv.url, b"<r0/>")
    time.sleep(0.2)       # the reset has arrived: sending on that connection fails
    assert post(h, srv.url, b"<w1/>", idempotent=False)[1] == 200
    assert srv.bodies() == [b"<r0/>", b"<w1/>"] and srv.accepted == 2
    h.close()
    srv.close()


def test_a_lost_write_is_not_sent_twice():
    """The server reads a write and closes without a reply: one copy of it
    arrived, and the error is a transient one that SoapClient reports as
    "may or may not have been applied".  A read in the same place is sent
    again once, on a fresh connection."""
    srv = Scripted(["ok", "lose", "ok", "lose", "ok"])
    h = http()
    post(h, srv.url, b"<r0/>")
    with pytest.raises(_Transient):
        post(h, srv.url, b"<create/>", idempotent=False)
    assert srv.bodies() == [b"<r0/>", b"<create/>"]
    post(h, srv.url, b"<r1/>")
    assert post(h, srv.url, b"<r2/>")[1] == 200
    assert srv.bodies() == [b"<r0/>", b"<create/>", b"<r1/>", b"<r2/>", b"<r2/>"]
    assert [r[0] for r in srv.requests] == [1, 1, 2, 2, 3]
    h.close()
    srv.close()


def test_writes_go_on_a_fresh_connection_after_a_pause(monkeypatch):
    """A write is sent on a kept connection only if it has been idle for
    less than WRITE_IDLE; a read on any connection still open."""
    monkeypatch.setattr(keepalive, "WRITE_IDLE", 0.3)
    srv = Scripted(["ok"])
    h = http()
    post(h, srv.url, b"<r0/>")
    post(h, srv.url, b"<w1/>", idempotent=False)
    time.sleep(0.5)
    post(h, srv.url, b"<r2/>")
    time.sleep(0.5)
    post(h, srv.url, b"<w3/>", idempotent=False)
    assert [r[0] for r in srv.requests] == [1, 1, 1, 2]
    h.close()
    srv.close()


def test_timeout_on_a_kept_connection():
    """A reply dribbled a byte at a time on a kept connection stops at the
    timeout, and the connection is not kept."""
    srv = Scripted(["ok", "drip", "ok"])
    h = http(timeout=1.0)
    post(h, srv.url, b"<r0/>")
    start = time.monotonic()
    with pytest.raises(ServerError, match="did not answer the test request within 1 s"):
        post(h, srv.url, b"<r1>%s</r1>" % (b"x" * 50))
    assert time.monotonic() - start < 3
    assert post(h, srv.url, b"<r2/>")[1] == 200
    assert [r[0] for r in srv.requests] == [1, 1, 2]
    h.close()
    srv.close()


def test_cookies_are_sent_back():
    srv = Scripted(["ok", "cookie", "ok"])
    h = http()
    for i in range(4):
        post(h, srv.url, b"<r/>")
    assert [r[3].get("cookie") for r in srv.requests] == [None, None, "s=1", "s=1"]
    assert {r[0] for r in srv.requests} == {1}
    h.close()
    srv.close()


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirects_on_kept_connections(code):
    """Followed with the same method and body, on the same connection."""
    srv = Scripted(["moved:%d:/new/ICAT" % code, "ok"])
    h = http()
    url, status, _, body = post(h, srv.url, b"<login/>")
    assert (url, status, bytes(body)) == (srv.url.replace("/ICATService/", "/new/"), 200,
                                          b"<login/>")
    assert [(r[0], r[1], r[2], r[4]) for r in srv.requests] == [
        (1, "POST", "/ICATService/ICAT", b"<login/>"), (1, "POST", "/new/ICAT", b"<login/>")]
    h.close()
    srv.close()


def test_redirects_end_after_max_redirects():
    srv = Scripted(["moved:302:/again"])
    h = http()
    url, status, _, _ = post(h, srv.url, b"<r/>")
    assert status == 302 and len(srv.requests) == 6        # MAX_REDIRECTS followed
    assert url.endswith("/again")
    h.close()
    srv.close()


def test_no_redirect_from_https_to_http(certificate):
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert), str(key))
    srv = Scripted(["moved:307:http://127.0.0.1:1/ICATService/ICAT"], tls=tls)
    h = http(context=ssl.create_default_context(cafile=str(cert)))
    with pytest.raises(ServerError, match=re.escape(
            "redirects (HTTP 307) to http://127.0.0.1:1/ICATService/ICAT, which is not https: "
            "not followed")):
        post(h, srv.url, b"<login/>")
    srv.script = ["ok"]
    for _ in range(3):
        assert post(h, srv.url, b"<r/>")[1] == 200
    assert srv.accepted == 2                # the refused redirect's connection was closed
    h.close()
    srv.close()


def test_proxied_requests_go_through_urllib(monkeypatch):
    """A URL the proxy settings cover takes urllib's path (a connection per
    request); one they do not cover, or no_proxy exempts, the kept one."""
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    srv = Scripted(["ok"])
    h = Http(ssl_context(None), {"http": "http://127.0.0.1:%d" % srv.port}, 10, 1 << 20)
    assert h._proxied(srv.url)
    for _ in range(2):
        post(h, "http://icat.invalid/ICATService/ICAT", b"<r/>")
    assert [(r[0], r[2]) for r in srv.requests] == [
        (1, "http://icat.invalid/ICATService/ICAT"), (2, "http://icat.invalid/ICATService/ICAT")]
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert not h._proxied(srv.url)
    assert not Http(ssl_context(None), {"https": "http://p.invalid"}, 10, 1)._proxied(srv.url)
    h.close()
    srv.close()


def test_two_threads_never_share_a_connection():
    """Two threads on one Http at once: each request has a connection to
    itself (each gets its own body back), and afterwards one is kept."""
    srv = Scripted(["slow"])
    h = http()
    errors, barrier = [], threading.Barrier(2)

    def work(i):
        try:
            barrier.wait()
            for n in range(15):
                mine = b"<t%d n=%d/>" % (i, n)
                assert bytes(post(h, srv.url, mine)[3]) == mine
        except BaseException as exc:     # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(srv.requests) == 30
    assert srv.accepted >= 2            # never one connection for both at once
    assert h.pool.idle() == 1
    h.close()
    assert h.pool.idle() == 0
    srv.close()
