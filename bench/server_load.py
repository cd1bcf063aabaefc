"""Load test of ``icatdata serve`` (not run in CI; loopback only).

Starts a real ``icatdata serve`` on 127.0.0.1 over a small generated
catalogue and measures, from this process:

* requests/s and p50/p99 latency at 1, 10 and 100 concurrent clients, each a
  keep-alive connection sending a fixed number of requests: a cheap call
  (getApiVersion) and a search (a page of 10 investigations with their
  facility);
* the same with a new connection per request (what the listen backlog is for);
* 300 idle connections (half of them with a request half sent): whether a
  normal client is served meanwhile, and in how long the server sheds them
  all (it should, within its read timeout).

Every loop is bounded by a request count or a deadline, so the run ends by
itself.  Figures and the command go in doc/performance.md.

    python bench/server_load.py [--requests 2000] [--read-timeout 5]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENVELOPE = ('<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:t="http://icatproject.org"><S:Body><t:%s>%s</t:%s></S:Body></S:Envelope>')
SEARCH = "SELECT i FROM Investigation i ORDER BY i.id INCLUDE i.facility LIMIT 0, 10"


def body(op, inner="") -> bytes:
    return (ENVELOPE % (op, inner, op)).encode()


def make_catalogue(path: pathlib.Path, objects: int) -> None:
    """A generated data file of ``objects`` objects, ingested into ``path``."""
    from bench.generate import generate
    data = path.with_suffix(".xml")
    generate(data, "XML", objects)
    subprocess.run([sys.executable, "-m", "icatdump.cli.data", "init", str(path)], check=True,
                   cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(path), "-q",
                    "-i", str(data)], check=True, cwd=ROOT)


def start_server(path, read_timeout: float):
    proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli.data", "serve", "-q", str(path),
                             "--read-timeout", str(read_timeout)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit("icatdata serve did not start")
    return proc, url


def login(url) -> str:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", u.path, body(
        "login", "<plugin>simple</plugin><credentials><entry><key>username</key><value>root"
        "</value></entry><entry><key>password</key><value>secret</value></entry></credentials>"))
    reply = conn.getresponse().read()
    conn.close()
    return re.search(rb"<return>(.*?)</return>", reply).group(1).decode()


def count_results(url, payload) -> int:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", u.path, payload)
    reply = conn.getresponse().read()
    conn.close()
    return reply.count(b'<return xsi:type="ns2:investigation">')


def client(url, payload: bytes, count: int, keep_alive: bool, start: threading.Barrier):
    """Send ``count`` requests; return (latencies, failures)."""
    u = urllib.parse.urlsplit(url)
    latencies, failures = [], 0
    conn = None
    start.wait()
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            conn.request("POST", u.path, payload, {"Content-Type": "text/xml"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failures += 1
        except OSError:
            failures += 1
            conn.close()
            conn = None
            continue
        latencies.append(time.perf_counter() - t0)
        if not keep_alive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return latencies, failures


def load(url, payload, clients: int, total: int, keep_alive=True) -> str:
    per_client = max(1, total // clients)
    barrier = threading.Barrier(clients + 1)
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, url, payload, per_client, keep_alive, barrier)
                   for _ in range(clients)]
        barrier.wait()
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    latencies = sorted(x for lat, _ in results for x in lat)
    failures = sum(f for _, f in results)
    n = len(latencies)
    p50 = latencies[n // 2] * 1000 if n else float("nan")
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan")
    return ("%4d clients %6d requests %7.0f req/s  p50 %7.1f ms  p99 %7.1f ms  failures %d"
            % (clients, n + failures, n / wall, p50, p99, failures))


def idle_shedding(url, read_timeout: float, count: int = 300) -> str:
    u = urllib.parse.urlsplit(url)
    socks = []
    t0 = time.monotonic()
    for i in range(count):
        s = socket.create_connection((u.hostname, u.port), timeout=read_timeout * 3 + 10)
        if i % 2:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<S:"
                      % u.path.encode())
        socks.append(s)
    opened = time.monotonic() - t0
    t1 = time.perf_counter()
    served = load(url, body("getApiVersion"), 1, 1).split("failures")[1].strip() == "0"
    latency = (time.perf_counter() - t1) * 1000
    deadline = time.monotonic() + read_timeout * 3 + 10
    last = 0.0
    shed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            while s.recv(4096):
                pass
            shed += 1
            last = time.monotonic() - t0
        except ConnectionResetError:
            shed += 1
            last = time.monotonic() - t0
        except OSError:
            pass
        s.close()
    return ("%d idle connections (opened in %.2f s): a normal client %s in %.1f ms meanwhile; "
            "%d shed by the server, the last %.1f s after the first was opened "
            "(read timeout %g s)" % (count, opened, "served" if served else "NOT served",
                                     latency, shed, last, read_timeout))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000,
                    help="requests per measurement (spread over the clients)")
    ap.add_argument("--objects", type=int, default=2000, help="objects in the catalogue")
    ap.add_argument("--read-timeout", type=float, default=5.0,
                    help="the server's --read-timeout (idle shedding waits for it)")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icatdump-load-"))
    db = tmp / "load.sqlite"
    make_catalogue(db, args.objects)
    proc, url = start_server(db, args.read_timeout)
    try:
        sid = login(url)
        cheap = body("getApiVersion")
        search = body("search", "<sessionId>%s</sessionId><query>%s</query>" % (sid, SEARCH))
        print("icatdata serve at %s, %d objects, the search answers %d investigations; "
              "%d requests per line" % (url, args.objects, count_results(url, search),
                                        args.requests))
        for name, payload in (("getApiVersion", cheap), ("search (10 investigations)", search)):
            print("-- %s, keep-alive connections" % name)
            for clients in (1, 10, 100):
                print("  " + load(url, payload, clients, args.requests))
        print("-- getApiVersion, a new connection per request")
        for clients in (1, 10, 100):
            print("  " + load(url, cheap, clients, args.requests, keep_alive=False))
        print("-- " + idle_shedding(url, args.read_timeout))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
