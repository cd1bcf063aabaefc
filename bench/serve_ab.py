"""Dump and ingest through ``icatdata serve`` as root: two source trees
alternately, in the same run, so that a change's cost is a ratio and not
two figures from two differently busy moments.

    python bench/serve_ab.py OLD_TREE [NEW_TREE] [--objects N] [--rounds R] [--tls]

A tree is a checkout of this project (``git worktree add --detach DIR
COMMIT``; an old one may need ``ln -s ../backends DIR/icatdump/backends``,
which the script checks); NEW_TREE defaults to this one.  Each tree runs its
own server and its own command-line client (``PYTHONPATH=TREE`` with this
Python), so each side is measured as it would ship.  Each round: a dump by
the old tree from its server, one by the new from its server, then an
ingest into a fresh catalogue behind a fresh server of each, old first in
odd rounds and new first in even ones.  Printed for wall time, the client's
CPU time and the server's CPU time meanwhile: each side's median, and the
median of the rounds' new/old ratios with their range.  On a shared machine
the wall ratio scatters with the load; the CPU ratios scatter much less.
With ``--tls`` the servers speak HTTPS with a self-signed certificate made
by openssl, which the clients trust with ``--cacert``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def env_for(tree: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def check_tree(tree: pathlib.Path):
    """Refuse a tree whose ``icatdump`` is not the one imported (an editable
    install of another tree would otherwise be measured twice)."""
    out = subprocess.run(
        [sys.executable, "-c",
         "import icatdump, icatdump.backends.xml as x; print(icatdump.__file__); print(x.__file__)"],
        env=env_for(tree), capture_output=True, text=True, cwd="/")
    paths = out.stdout.split()
    if out.returncode or len(paths) != 2 or not all(
            pathlib.Path(p).resolve().is_relative_to(tree.resolve()) for p in paths):
        raise SystemExit("%s: icatdump is imported from %s, not from the tree%s" % (
            tree, paths or "nowhere", " (link ../backends as icatdump/backends?)"
            if paths else ": " + out.stderr.strip()[-300:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_catalogue(tree, db):
    subprocess.run([sys.executable, "-c", "from icatdump.store import init_catalogue; "
                    "init_catalogue(%r)" % str(db)], env=env_for(tree), check=True, cwd="/")


def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate for 127.0.0.1 and its key, made by openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Server:
    """``icatdata serve`` of one tree, in its own process; over HTTPS with
    ``tls`` (a certificate and its key)."""

    def __init__(self, tree, db, tls=None):
        self.port = free_port()
        options = ["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "icatdump.cli.data", "serve", "-q", "--port", str(self.port),
             *options, str(db)], env=env_for(tree), cwd="/",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server of %s did not start" % tree)
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a running process has used so far."""
    fields = pathlib.Path("/proc/%d/stat" % pid).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd, tree, server) -> tuple[float, float, float]:
    """Run a client command: (wall seconds, its CPU seconds, the server's
    CPU seconds meanwhile).  On a busy machine the wall time follows the
    load; the CPU times show what the two processes asked for."""
    before = cpu_seconds(server.proc.pid)
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env_for(tree), cwd="/", stdout=subprocess.DEVNULL,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        if status:
            err.seek(0)
            raise SystemExit("failed: %s\n%s" % (" ".join(cmd), err.read().decode()[-2000:]))
    return elapsed, usage.ru_utime + usage.ru_stime, cpu_seconds(server.proc.pid) - before


def conn(url, cacert=None):
    return ["-w", url, "-a", "simple", "-u", "root", "-p", "secret",
            *(["--cacert", str(cacert)] if cacert else [])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=pathlib.Path)
    ap.add_argument("new", type=pathlib.Path, nargs="?", default=ROOT)
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-ingest", action="store_true", help="measure only the dumps")
    ap.add_argument("--tls", action="store_true",
                    help="HTTPS with a self-signed certificate (the clients given it as --cacert)")
    args = ap.parse_args()
    trees = {"old": args.old, "new": args.new}
    for tree in trees.values():
        check_tree(tree)

    from bench.generate import generate
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    source = out / ("gen-%d-noquotes.xml" % args.objects)
    if not source.exists():
        generate(source, "XML", args.objects, quotes=False)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icatdump-serve-ab-"))
    tls = self_signed(tmp) if args.tls else None
    cacert = tls[0] if tls else None

    servers = {}
    try:
        for name, tree in trees.items():
            db = tmp / ("%s.sqlite" % name)
            init_catalogue(tree, db)
            servers[name] = Server(tree, db, tls)
            timed([sys.executable, "-m", "icatdump.cli.ingest", *conn(servers[name].url, cacert),
                   "-i", str(source)], tree, servers[name])
        times = {(kind, name): [] for kind in ("dump", "ingest") for name in trees}
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for name in order:
                times["dump", name].append(timed(
                    [sys.executable, "-m", "icatdump.cli.dump", *conn(servers[name].url, cacert),
                     "-f", "XML", "-o", str(tmp / ("dump-%s.xml" % name))], trees[name],
                    servers[name]))
            if args.no_ingest:
                continue
            for name in order:
                db = tmp / ("ingest-%s-%d.sqlite" % (name, r))
                init_catalogue(trees[name], db)
                server = Server(trees[name], db, tls)
                try:
                    times["ingest", name].append(timed(
                        [sys.executable, "-m", "icatdump.cli.ingest", *conn(server.url, cacert),
                         "-i", str(source)], trees[name], server))
                finally:
                    server.stop()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("%d objects, %d rounds, through icatdata serve as root%s"
          % (args.objects, args.rounds, " over HTTPS" if args.tls else ""))
    print("  old: %s\n  new: %s" % (args.old, args.new))
    for kind in ("dump", "ingest"):
        if not times[kind, "old"]:
            continue
        for i, what in enumerate(("wall", "client CPU", "server CPU")):
            old = [t[i] for t in times[kind, "old"]]
            new = [t[i] for t in times[kind, "new"]]
            ratios = sorted(n / o for o, n in zip(old, new))
            print("  %-6s %-10s old %5.2f s  new %5.2f s (medians)  new/old %.2f (%.2f-%.2f)"
                  % (kind, what, statistics.median(old), statistics.median(new),
                     statistics.median(ratios), ratios[0], ratios[-1]))
    print("  load average at the end: %.1f %.1f %.1f (%d cores)" % (
        *os.getloadavg(), os.cpu_count() or 0))


if __name__ == "__main__":
    main()
