"""One small SOAP call, many times: two source trees alternately, in the
same run, against one ``icatdata serve`` (of this tree).

    python bench/soap_per_call.py OLD_TREE [NEW_TREE] [--calls N] [--rounds R] [--tls]

What a request costs a client beyond the server's work: the call is a
search that counts no rows (``SELECT COUNT(f) FROM Facility f`` on an empty
catalogue).  Each round runs a process per tree (``PYTHONPATH=TREE``), old
first in odd rounds and new first in even ones; each process logs in and
times ``--calls`` calls.  Printed: each side's median milliseconds per call
and the median of the rounds' new/old ratios with their range.  Trees as
for bench/serve_ab.py; ``--tls``: HTTPS with a self-signed certificate.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serve_ab import Server, check_tree, env_for, init_catalogue, self_signed  # noqa: E402

#: Run in each tree's process: log in, time the calls, print seconds.
CLIENT = """
import sys, time
from icatdump.soap.client import SoapClient
class Cfg:
    cacert = sys.argv[3] or None
c = SoapClient(sys.argv[1], Cfg())
c.login("simple", {"username": "root", "password": "secret"})
c.search("SELECT COUNT(f) FROM Facility f")
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    c.search("SELECT COUNT(f) FROM Facility f")
print(time.perf_counter() - start)
c.close()
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=pathlib.Path)
    ap.add_argument("new", type=pathlib.Path, nargs="?", default=ROOT)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate")
    args = ap.parse_args()
    if args.calls < 1 or args.rounds < 1:
        ap.error("--calls and --rounds must be at least 1")
    trees = {"old": args.old, "new": args.new}
    for tree in trees.values():
        check_tree(tree)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icatdump-per-call-"))
    tls = self_signed(tmp) if args.tls else None
    server = None
    try:
        db = tmp / "served.sqlite"
        init_catalogue(args.new, db)
        server = Server(args.new, db, tls)
        seconds = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                out = subprocess.run(
                    [sys.executable, "-c", CLIENT, server.url, str(args.calls),
                     str(tls[0]) if tls else ""],
                    env=env_for(trees[name]), cwd="/", capture_output=True, text=True)
                if out.returncode:
                    raise SystemExit("%s failed:\n%s" % (name, out.stderr[-2000:]))
                seconds[name].append(float(out.stdout.split()[-1]))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = sorted(n / o for o, n in zip(seconds["old"], seconds["new"]))
    print("%d calls per round, %d rounds, %s" % (args.calls, args.rounds,
                                                "HTTPS" if args.tls else "HTTP"))
    print("  old: %s\n  new: %s" % (args.old, args.new))
    print("  per call: old %.2f ms  new %.2f ms (medians)  new/old %.2f (%.2f-%.2f)" % (
        1000 * statistics.median(seconds["old"]) / args.calls,
        1000 * statistics.median(seconds["new"]) / args.calls,
        statistics.median(ratios), ratios[0], ratios[-1]))


if __name__ == "__main__":
    main()
