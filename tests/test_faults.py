"""Faults: dropped connections, 5xx replies, expired sessions, a second writer.

The SOAP tests put a small HTTP proxy between SoapClient and a real local
server (:func:`icatdump.soap.server.serve`); the proxy forwards every
request and, when told to, drops the connection (before or after the
server has seen the request) or answers 500/503 in place of the server.
The embedded catalogue's write lock is tested with real subprocesses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from icatdump.soap.client import SoapClient
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

from test_bad_input import counts
from test_resume import dump_body, ingest, new_catalogue

CRED = {"username": "root", "password": "secret"}


class FaultProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; ``faults`` is a list of ``(operation,
    action)`` applied, in order, to the next requests for that operation.
    Actions: ``drop`` (close without reply, server not asked), ``drop-after``
    (the server handles it, the reply is lost), ``500`` (an HTML error page),
    ``503``.  ``seen`` counts requests per operation."""

    daemon_threads = True

    def __init__(self, upstream):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.faults = []
        self.seen = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/ICATService/ICAT" % self.server_address[1]

    def take_fault(self, op):
        with self.lock:
            self.seen[op] = self.seen.get(op, 0) + 1
            for i, (name, action) in enumerate(self.faults):
                if name == op:
                    del self.faults[i]
                    return action
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A reply's headers and body are two writes: without this, the body of
    # each reply on a kept connection waits for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _forward(self, method, body=None):
        req = urllib.request.Request(self.server.upstream + self.path[len("/ICATService/ICAT"):],
                                     data=body, method=method,
                                     headers={"Content-Type": self.headers.get(
                                         "Content-Type", "text/xml")})
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _reply(self, status, data, ctype="text/xml;charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply(*self._forward("GET"))

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        m = re.search(rb"<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?(\w+)", body)
        op = m.group(1).decode() if m else "?"
        action = self.server.take_fault(op)
        if action == "drop":
            self.close_connection = True
            return
        if action == "500":
            return self._reply(500, b"<html><body>Internal error</body></html>", "text/html")
        if action == "503":
            return self._reply(503, b"busy", "text/plain")
        status, data = self._forward("POST", body)
        if action == "drop-after":
            self.close_connection = True
            return
        self._reply(status, data)


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "server.sqlite")
    init_catalogue(path)
    srv = serve(lambda: EmbeddedClient(path))
    yield srv
    srv.shutdown()


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.url)
    yield p
    p.shutdown()
    p.server_close()


@pytest.fixture
def client(proxy):
    c = SoapClient(proxy.url)
    c.backoff = 0.01
    c.login("simple", CRED)
    yield c
    c.close()


def test_reads_are_retried_on_drops_and_5xx(client, proxy):
    client.create(client.new("Facility", name="F"))
    proxy.faults = [("search", "drop"), ("search", "500"), ("search", "503"),
                    ("search", "drop-after")]
    (fac,) = client.search("SELECT f FROM Facility f")
    assert fac.values["name"] == "F"
    assert proxy.seen["search"] == 5
    proxy.faults = [("get", "drop")]
    assert client.get("Facility", fac.id).values["name"] == "F"


def test_retries_are_bounded(client, proxy):
    proxy.faults = [("search", "drop")] * 10
    with pytest.raises(ConnectionError, match="gave up after 5 attempts"):
        client.search("SELECT f FROM Facility f")
    # Five attempts; the first went out on the connection kept from login,
    # and a read that loses its reply there is sent once more on a fresh
    # connection at once (icatdump/soap/keepalive.py): six requests.
    assert proxy.seen["search"] == 6


def test_writes_are_not_repeated(client, proxy):
    proxy.faults = [("createMany", "drop-after")]
    with pytest.raises(ConnectionError, match="not repeated: it may or may not have been applied"):
        client.create_many([client.new("Facility", name="F")])
    assert proxy.seen["createMany"] == 1
    assert len(client.search("SELECT f FROM Facility f")) == 1     # it was applied


def test_login_is_retried(proxy):
    proxy.faults = [("login", "503")]
    c = SoapClient(proxy.url)
    c.backoff = 0.01
    c.login("simple", CRED)
    assert c.session_id
    c.close()


def test_expired_session_is_renewed(tmp_path):
    path = str(tmp_path / "s.sqlite")
    init_catalogue(path)
    srv = serve(lambda: EmbeddedClient(path), lifetime_minutes=0.005)      # 0.3 s
    try:
        c = SoapClient(srv.url)
        c.login("simple", CRED)
        first = c.session_id
        time.sleep(0.5)
        c.create(c.new("Facility", name="F"))           # a write, after expiry
        assert c.session_id != first
        second = c.session_id
        time.sleep(0.5)
        assert len(c.search("SELECT f FROM Facility f")) == 1
        assert c.session_id != second
        time.sleep(0.5)
        c.refresh()
        assert srv.service.calls["login"] == 4
        c.close()
    finally:
        srv.shutdown()


def icatingest_url(url, path, *args):
    return subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", url, "-a", "simple",
                           "-u", "root", "-p", "secret", "-i", str(path), "-q",
                           "--batch-size", "50", *args],
                          capture_output=True, timeout=300)


def test_failed_batch_says_where_to_resume(server, proxy, example, tmp_path):
    """A createMany whose reply is lost: the ingest stops (exit 3), says how
    much went in, and the re-run with IGNORE completes the catalogue."""
    src = example("icatdump-6.2.xml")
    proxy.faults = [("createMany", "pass")] * 3 + [("createMany", "drop-after")]
    r = icatingest_url(proxy.url, src)
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "icatdump-6.2.xml, chunk 1, batch 3: connection to ICAT" in lines[0]
    assert "not repeated: it may or may not have been applied" in lines[0]
    assert "batches of chunk 1 ingested; fix the problem and run again with " \
           "--duplicate IGNORE to resume" in lines[1]
    r = icatingest_url(proxy.url, src, "--duplicate", "IGNORE")
    assert r.returncode == 0, r.stderr
    # The same as an ingest without faults.
    reference = new_catalogue(tmp_path, "ref.sqlite")
    ingest(reference, src)
    server_db = tmp_path / "server.sqlite"
    assert counts(server_db) == counts(reference)


def test_batch_split_by_the_client_says_what_exists(server, proxy, example, tmp_path):
    """The SOAP client splits a batch whose objects refer to each other
    (users, then the groupings that name them) into two createMany calls.
    When the second fails, the users exist: the message says so and advises
    IGNORE, never a plain re-run, which would fail on them."""
    src = example("icatdump-6.2.xml")
    proxy.faults = [("createMany", "pass"), ("createMany", "drop")]
    r = icatingest_url(proxy.url, src)
    err = r.stderr.decode()
    assert r.returncode == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "chunk 1, batch 1:" in lines[0]
    assert "nothing was ingested" not in lines[1]
    assert "objects of the failed batch of chunk 1 exist (User_name-" in lines[1]
    assert lines[1].endswith("fix the problem and run again with --duplicate IGNORE to resume")
    assert icatingest_url(proxy.url, src).returncode != 0
    r = icatingest_url(proxy.url, src, "--duplicate", "IGNORE")
    assert r.returncode == 0, r.stderr
    reference = new_catalogue(tmp_path, "ref.sqlite")
    ingest(reference, src)
    assert counts(tmp_path / "server.sqlite") == counts(reference)


def test_dump_that_loses_the_server_leaves_no_file(server, proxy, example, tmp_path):
    """The server stops answering half-way through a dump over SOAP (whose
    searches run on the prefetching thread): one line, exit 3, no file."""
    icatingest_url(server.url, example("icatdump-6.2.xml"))
    # Five attempts, and the first one sent again on a fresh connection.
    proxy.faults = [("search", "pass")] * 15 + [("search", "drop")] * 6
    out = tmp_path / "out" / "dump.xml"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-w", proxy.url, "-a",
                        "simple", "-u", "root", "-p", "secret", "-o", str(out), "-q"],
                       capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "gave up after 5 attempts" in err
    assert proxy.seen["search"] == 21
    assert list(out.parent.iterdir()) == []


# -- the embedded catalogue: one writer at a time -----------------------------

def _ingest_proc(db, path, *args):
    return subprocess.Popen([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db), "-i",
                             str(path), "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_second_ingest_refuses_while_one_runs(tmp_path, example):
    """The first ingest reads from a pipe that the test holds open half-way,
    so it is certainly running when the second one starts."""
    src = example("icatdump-6.2.xml").read_bytes()
    db = new_catalogue(tmp_path, "c.sqlite")
    first = subprocess.Popen([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db),
                              "-i", "-", "-q"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    half = src.index(b"<data>", src.index(b"<data>") + 1)
    first.stdin.write(src[:half])
    first.stdin.flush()
    lock = str(db) + ".lock"
    deadline = time.monotonic() + 30
    while not (os.path.exists(lock) and os.path.getsize(lock)) and time.monotonic() < deadline:
        time.sleep(0.005)
    second = _ingest_proc(db, example("icatdump-6.2.xml"))
    _, err2 = second.communicate(timeout=60)
    first.stdin.write(src[half:])
    first.stdin.close()
    err1 = first.stderr.read()
    assert first.wait(timeout=60) == 0, err1
    assert second.returncode == 3, err2
    assert err2.decode().strip() == (
        "icatingest: error: %s is being written by another process (pid %d); "
        "wait for it to finish" % (db, first.pid))
    assert not os.path.exists(lock)
    reference = new_catalogue(tmp_path, "ref.sqlite")
    ingest(reference, example("icatdump-6.2.xml"))
    assert counts(db) == counts(reference)


def test_stale_lock_is_cleared_with_a_warning(tmp_path, example):
    db = new_catalogue(tmp_path, "c.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(str(db) + ".lock", "w") as f:
        f.write("%d\n" % dead.pid)
    p = _ingest_proc(db, example("icatdump-6.2.xml"))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert err.decode().strip() == (
        "icatingest: warning: removed a stale lock on %s: process %d no longer runs"
        % (db, dead.pid))
    assert not os.path.exists(str(db) + ".lock")
    assert dump_body(db, tmp_path)
