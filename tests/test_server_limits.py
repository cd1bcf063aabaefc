"""The local ICAT server facing slow, idle, greedy, many and careless clients.

Real servers on 127.0.0.1 (and ::1), real sockets: a connection that sends
nothing or dribbles is closed within the read timeout; 300 of them do not
keep a normal client out; connections past the ceiling get 503; a body past
the ceiling gets 413 before it is read (the server's peak RSS shows it); 100
clients at once are all answered; a bad value in a request is ICAT's
BAD_PARAMETER fault, never INTERNAL, and leaves no traceback in the log.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from icatdump.client import ParameterError
from icatdump.soap import codec
from icatdump.soap.client import SoapClient
from icatdump.soap.limits import MIB, Limits
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

CRED = {"username": "root", "password": "secret"}


def start(tmp_path, **kw):
    path = str(tmp_path / "limits.sqlite")
    if not os.path.exists(path):
        init_catalogue(path, "6.2")
    return serve(lambda: EmbeddedClient(path), **kw)


@pytest.fixture
def quick(tmp_path):
    """A server that gives a request one second to arrive."""
    srv = start(tmp_path, limits=Limits(read_timeout=1.0))
    yield srv
    srv.shutdown()


def envelope(op, inner="") -> bytes:
    return ('<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:t="http://icatproject.org" xmlns:xsi="%s"><S:Body><t:%s>%s</t:%s>'
            '</S:Body></S:Envelope>' % (codec.XSI, op, inner, op)).encode()


def address(url) -> tuple[str, int]:
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port


def post(url, body: bytes, timeout=10.0) -> tuple[int, bytes]:
    """One POST on a fresh connection."""
    conn = http.client.HTTPConnection(*address(url), timeout=timeout)
    try:
        conn.request("POST", urllib.parse.urlsplit(url).path, body,
                     {"Content-Type": "text/xml; charset=utf-8"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def api_version(url) -> bytes:
    status, reply = post(url, envelope("getApiVersion"))
    assert status == 200, reply
    return re.search(rb"<return>(.*?)</return>", reply).group(1)


def connect(url, timeout=10.0) -> socket.socket:
    return socket.create_connection(address(url), timeout=timeout)


def closed_after(sock) -> float:
    """Seconds until the server closes ``sock`` (reads and drops any answer)."""
    start = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- slow and idle clients ---------------------------------------------------------

def test_idle_half_sent_and_dribbling_connections_are_closed_in_time(quick):
    idle = connect(quick.url)
    half = connect(quick.url)
    half.sendall(b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<S:")
    dribble = connect(quick.url)
    request = (b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % len(envelope("getApiVersion")) + envelope("getApiVersion"))
    stop = threading.Event()

    def drip():
        # A byte every 0.1 s: every single read is quick, the request never ends in time.
        for i in range(len(request)):
            if stop.wait(0.1):
                return
            try:
                dribble.sendall(request[i:i + 1])
            except OSError:
                return
    dripper = threading.Thread(target=drip)
    dripper.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            times = list(pool.map(closed_after, [idle, half, dribble]))
    finally:
        stop.set()
        dripper.join()
        for s in (idle, half, dribble):
            s.close()
    # Each closed after about the read timeout (1 s), none held on.
    assert all(0.8 < t < 3.0 for t in times), times
    assert wait_for(lambda: quick.connections == 0, 2.0)
    assert api_version(quick.url)


def test_keep_alive_connection_serves_several_requests_then_times_out(quick):
    conn = http.client.HTTPConnection(*address(quick.url), timeout=10)
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        conn.request("POST", "/ICATService/ICAT", envelope("getApiVersion"))
        r = conn.getresponse()
        assert r.status == 200 and b"<return>" in r.read()
        times.append(time.perf_counter() - t0)
    # Not 40 ms each: the reply's second write does not wait for a delayed ACK.
    assert sorted(times)[4] < 0.03, times
    assert 0.8 < closed_after(conn.sock) < 3.0
    conn.close()


def test_300_idle_connections_do_not_keep_a_client_out_and_are_shed(tmp_path):
    srv = start(tmp_path, limits=Limits(read_timeout=5.0))
    socks = []
    try:
        t0 = time.monotonic()
        for i in range(300):
            s = connect(srv.url)
            if i % 2:
                s.sendall(b"POST /ICATService/ICAT HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
            socks.append(s)
        assert wait_for(lambda: srv.connections >= 300, 5.0), srv.connections
        client = SoapClient(srv.url, timeout=10)
        client.login("simple", CRED)
        assert client.search("SELECT COUNT(f) FROM Facility f") == [0]
        client.close()
        # Served while the 300 were still held open, not after they were shed.
        assert srv.connections >= 300, srv.connections
        assert wait_for(lambda: srv.connections == 0, 8.0), srv.connections
        shed = time.monotonic() - t0
        for s in socks:
            s.settimeout(1.0)
            assert s.recv(1) == b""                  # closed by the server
    finally:
        for s in socks:
            s.close()
        srv.shutdown()
    assert 4.5 < shed < 9.0, shed


def test_connections_past_the_ceiling_get_503(tmp_path):
    srv = start(tmp_path, limits=Limits(max_connections=3))
    held = [connect(srv.url) for _ in range(3)]
    try:
        assert wait_for(lambda: srv.connections == 3, 5.0)
        for _ in range(20):     # each one answered, none reset before it reads the answer
            status, reply = post(srv.url, envelope("getApiVersion"))
            assert status == 503 and reply == b"Too many connections; try again in a moment\n"
        held.pop().close()
        assert wait_for(lambda: srv.connections == 2, 5.0)
        assert api_version(srv.url)
    finally:
        for s in held:
            s.close()
        srv.shutdown()


# -- greedy clients ----------------------------------------------------------------

def run_serve(path, *options):
    """``icatdata serve PATH OPTIONS`` as a subprocess; (process, URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "icatdump.cli.data", "serve", "-q", str(path), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http"), proc.stderr.read()
    return proc, url


def stop(proc) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return err


def peak_rss_mib(pid) -> float:
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def send_big_body(url, size):
    """POST ``size`` bytes; (status, reply) as the server answers at once."""
    s = connect(url)
    try:
        s.sendall(b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % size)
        answer = b""                                  # before a single body byte is sent
        while not answer.endswith(b" bytes\n"):
            more = s.recv(65536)
            if not more:
                break
            answer += more
        block, sent = b"<" * MIB, 0
        try:
            while sent < size:
                s.sendall(block)
                sent += len(block)
        except OSError:
            pass                                      # the server closed; it took none of it
        return answer, sent
    finally:
        s.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_oversized_bodies_get_413_unread_and_memory_stays_bounded(tmp_path):
    path = tmp_path / "big.sqlite"
    init_catalogue(str(path), "6.2")
    proc, url = run_serve(path)                       # the default ceiling, 32 MiB
    try:
        api_version(url)
        before = peak_rss_mib(proc.pid)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(send_big_body, [url, url], [200 * MIB, 200 * MIB]))
        for answer, sent in results:
            assert answer.startswith(b"HTTP/1.1 413 "), answer
            assert b"larger than the server's limit of %d bytes" % Limits.max_request in answer
            assert sent < 200 * MIB
        assert peak_rss_mib(proc.pid) - before < 32, (before, peak_rss_mib(proc.pid))
        api_version(url)                              # and it still serves
    finally:
        err = stop(proc)
    assert "Traceback" not in err


def test_expect_100_continue_is_answered_413_before_the_body(tmp_path):
    srv = start(tmp_path, limits=Limits(max_request=MIB))
    try:
        for length, answer in ((2 * MIB, b"HTTP/1.1 413 "), (1000, b"HTTP/1.1 100 Continue")):
            s = connect(srv.url)
            s.sendall(b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      b"Content-Length: %d\r\n\r\n" % length)
            assert s.recv(200).startswith(answer)
            s.close()
    finally:
        srv.shutdown()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_big_accepted_requests_are_parsed_one_at_a_time(tmp_path):
    """Four 16 MiB requests at once: one parsed tree (~8x the body) in
    memory at a time, not four (about 600 MB when each HTTP thread parsed)."""
    path = tmp_path / "parse.sqlite"
    init_catalogue(str(path), "6.2")
    proc, url = run_serve(path)
    bean = ('<beans xsi:type="t:datafile"><name>file-%d.dat</name><location>/data/%d</location>'
            '<dataset><id>5</id></dataset></beans>')
    beans, size = [], 0
    while size < 16 * MIB:
        beans.append(bean % (len(beans), len(beans)))
        size += len(beans[-1])
    body = envelope("createMany", "<sessionId>none</sessionId>" + "".join(beans))
    del beans
    try:
        before = peak_rss_mib(proc.pid)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: post(url, body, timeout=120), range(4)))
        assert [status for status, _ in replies] == [500] * 4
        assert all(b"Unable to find user by sessionid: none" in r for _, r in replies)
        assert peak_rss_mib(proc.pid) - before < 300, (before, peak_rss_mib(proc.pid))
    finally:
        err = stop(proc)
    assert "Traceback" not in err


def test_chunked_bodies_are_counted_as_they_come(tmp_path):
    srv = start(tmp_path, limits=Limits(max_request=MIB))
    try:
        def chunked(parts):
            s = connect(srv.url)
            s.sendall(b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for part in parts:
                    s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass
            s.settimeout(10)
            reply = b""
            try:
                while True:
                    data = s.recv(65536)
                    if not data or b"</S:Envelope>" in reply + data or b"limit" in data:
                        reply += data
                        break
                    reply += data
            finally:
                s.close()
            return reply
        body = envelope("getApiVersion")
        ok = chunked([body[:50], body[50:]])
        assert ok.startswith(b"HTTP/1.1 200 ") and b"<return>" in ok
        too_big = chunked([b" " * (256 * 1024)] * 40)  # 10 MiB against 1 MiB
        assert too_big.startswith(b"HTTP/1.1 413 "), too_big[:200]
    finally:
        srv.shutdown()


def test_big_requests_wait_for_each_other(tmp_path):
    """Bodies held at once are bounded: the second waits for the first, and
    gets 503 if its read timeout runs out first."""
    srv = start(tmp_path, limits=Limits(read_timeout=3.0, max_request=MIB, max_pending=MIB))
    body = envelope("getApiVersion", "<!--%s-->" % ("x" * (MIB * 6 // 10)))
    request = (b"POST /ICATService/ICAT HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body)
    socks = []

    def answer(s) -> bytes:
        """The reply, up to the end of its body (it is short)."""
        s.settimeout(10)
        data = b""
        while not re.search(rb"\r\n\r\n.*(</S:Envelope>|moment)", data, re.S):
            more = s.recv(65536)
            if not more:
                break
            data += more
        return data
    try:
        for finish_first in (False, True):
            second = connect(srv.url)               # its deadline runs from now
            first = connect(srv.url)
            socks += [first, second]
            first.sendall(request[:1000])           # holds 0.6 MiB of the 1 MiB
            assert wait_for(lambda: srv.budget.used > 0, 2.0)
            t0 = time.monotonic()
            if finish_first:
                threading.Timer(0.5, first.sendall, [request[1000:]]).start()
            second.sendall(request)                 # needs 0.6 MiB, 0.4 are left
            reply = answer(second)
            if finish_first:
                assert reply.startswith(b"HTTP/1.1 200 "), reply
                assert answer(first).startswith(b"HTTP/1.1 200 ")
            else:
                assert reply.startswith(b"HTTP/1.1 503 ") and b"Too many large" in reply
                assert 1.0 < time.monotonic() - t0 < 4.0
                first.close()
            assert wait_for(lambda: srv.budget.used == 0, 3.0)
    finally:
        for s in socks:
            s.close()
        srv.shutdown()


# -- many clients ------------------------------------------------------------------

def test_100_concurrent_clients_get_no_resets(tmp_path):
    srv = start(tmp_path)                             # the default backlog
    barrier = threading.Barrier(100)
    body = envelope("getApiVersion")

    def client(_):
        barrier.wait()
        failures = []
        for _ in range(5):
            try:
                status, reply = post(srv.url, body, timeout=30)   # a new connection each
                if status != 200:
                    failures.append(status)
            except OSError as exc:
                failures.append(repr(exc))
        return failures
    try:
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            failures = [f for fs in pool.map(client, range(100)) for f in fs]
    finally:
        srv.shutdown()
    assert failures == []


# -- careless clients --------------------------------------------------------------

BAD_VALUES = {
    "id not a number": ("create", '<bean xsi:type="t:facility"><id>abc</id><name>x</name></bean>',
                        "id 'abc' is not a number"),
    "related id not a number": (
        "create", '<bean xsi:type="t:investigation"><name>i</name><facility><id>abc</id>'
        '</facility></bean>', "id 'abc' is not a number"),
    "id beyond a long": ("delete", '<bean xsi:type="t:facility"><id>%d</id></bean>' % 2 ** 64,
                         "id %d is out of range for a long" % 2 ** 64),
    "embedded id not a number": (
        "createMany", '<beans xsi:type="t:facility"><name>f</name><investigationTypes>'
        '<id>1x</id><name>t</name></investigationTypes></beans>', "id '1x' is not a number"),
    "primary key beyond a long": (
        "get", "<query>Facility</query><primaryKey>%d</primaryKey>" % 2 ** 63,
        "primaryKey %d is out of range for a long" % 2 ** 63),
    "attribute beyond an int": (
        "create", '<bean xsi:type="t:facility"><name>n</name><daysUntilRelease>%d'
        '</daysUntilRelease></bean>' % 2 ** 70, "out of the range of a Java Integer",
        "VALIDATION"),

    "LIMIT beyond an int": (
        "search", "<query>SELECT f FROM Facility f LIMIT 0, %d</query>" % 2 ** 64,
        "LIMIT numbers must be below 2^31"),
    "impossible date in a query": (
        "search", "<query>SELECT i FROM Investigation i WHERE i.startDate &gt; "
        "{ts 2020-13-45 00:00:00}</query>", "invalid date/time '2020-13-45 00:00:00'"),
    # Not a bad parameter but a value the catalogue refuses, as ICAT does.
    "impossible date in a bean": (
        "create", '<bean xsi:type="t:investigation"><name>i</name>'
        '<startDate>2020-13-45T00:00:00Z</startDate></bean>',
        "invalid date/time '2020-13-45T00:00:00Z'", "VALIDATION"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_bad_parameter_without_traceback(quick, case, caplog, capfd):
    op, inner, message, *expected = BAD_VALUES[case]
    expected = expected[0] if expected else "BAD_PARAMETER"
    client = SoapClient(quick.url)
    client.login("simple", CRED)
    sid = client.session_id
    with caplog.at_level(logging.DEBUG):
        status, reply = post(quick.url, envelope(op, "<sessionId>%s</sessionId>%s"
                                                  % (sid, inner)))
    client.close()
    assert status == 500
    text = reply.decode()
    # ICAT's fault, exactly (ICAT-FACTS §2.5).
    m = re.fullmatch(
        r'<\?xml version="1.0" encoding="UTF-8"\?><S:Envelope xmlns:S="http://schemas.xmlsoap'
        r'.org/soap/envelope/"><S:Body><S:Fault><faultcode>S:Server</faultcode><faultstring>'
        r'(.*)</faultstring><detail><ns2:IcatException xmlns:ns2="http://icatproject.org">'
        r'<message>(.*)</message><offset>-1</offset><type>(\w+)</type>'
        r'</ns2:IcatException></detail></S:Fault></S:Body></S:Envelope>', text)
    assert m, text
    assert m.group(3) == expected, text
    assert m.group(1) == m.group(2) and message in m.group(1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


def test_bad_value_through_suds_is_a_parameter_error(quick):
    """What a client library makes of it: its usual BAD_PARAMETER exception."""
    client = SoapClient(quick.url)
    client.login("simple", CRED)
    with pytest.raises(ParameterError, match="out of range"):
        client.get("Facility", 2 ** 64)
    client.close()


# -- addresses ---------------------------------------------------------------------

def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_loopback(tmp_path):
    path = tmp_path / "v6.sqlite"
    init_catalogue(str(path), "6.2")
    proc, url = run_serve(path, "--host", "::1")
    try:
        assert url.startswith("http://[::1]:")
        client = SoapClient(url)
        assert client.apiversion == "6.2.0"
        client.login("simple", CRED)
        assert client.search("SELECT COUNT(f) FROM Facility f") == [0]
        client.close()
    finally:
        err = stop(proc)
    assert "warning" not in err                        # ::1 is loopback: no warning
