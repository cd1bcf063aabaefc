"""What the change watch costs a dump over SOAP: the same dump through a local
serve with and without it, in interleaved rounds (the median of each).

    .venv/bin/python bench/generate.py --objects 10000 -f XML -o /tmp/g.xml
    .venv/bin/icatdata init /tmp/c.sqlite && .venv/bin/icatingest -w /tmp/c.sqlite -i /tmp/g.xml
    .venv/bin/python bench/change_watch.py /tmp/c.sqlite 5
"""
import contextlib
import os
import statistics
import sys
import tempfile
import time

from icatdump.client import Client
from icatdump.dump import dump
from icatdump.dumpfile import open_dumpfile
from icatdump.soap.client import SoapClient
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient

cat = sys.argv[1]
out = os.path.join(tempfile.mkdtemp(), "d.xml")
srv = serve(lambda: EmbeddedClient(cat))
c = SoapClient(srv.url)
c.login("simple", {"username": "root", "password": "secret"})
watched = Client.snapshot
times = {"with": [], "without": []}
for r in range(int(sys.argv[2])):
    for mode in ("with", "without"):
        Client.snapshot = watched if mode == "with" else (lambda self: contextlib.nullcontext())
        t = time.perf_counter()
        with open_dumpfile(c, out, "XML", "w") as w:
            n = dump(c, w)
        times[mode].append(time.perf_counter() - t)
print(n, "objects;", {k: round(statistics.median(v), 3) for k, v in times.items()},
      "ratio with/without %.3f" % (statistics.median(times["with"]) / statistics.median(times["without"])))
srv.shutdown()
