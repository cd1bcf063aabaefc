"""Datafile throughput through ``icatdata serve``'s IDS (not run in CI).

Generates a set of files (``--files`` of mixed sizes totalling
``--total-mib``, plus one file of ``--big-mib``) and an ingest file for them
(Datafiles with location, size and CRC32 in one Dataset), then, in each of
``--rounds`` rounds, in one run:

* **copy** (the baseline): the same files copied on the same disk by a child
  process, ``shutil.copyfile`` (sendfile) and ``fsync`` per file, as the
  IDS store and ``--with-data`` each fsync every file they write;
* **upload**: ``icatingest --upload-datafiles`` (a CLI subprocess) into a
  fresh ``icatdata serve`` subprocess;
* **download**: ``icatdump --with-data`` (a CLI subprocess) from it.

Each is timed as a whole command (start-up, login and catalogue calls
included: what a user waits for).  Printed: MiB/s of each, the ratios
upload/copy and download/copy (medians over the rounds, with the range),
CPU seconds of client and server (steadier than wall time on a busy
machine), the peak RSS of each client (``wait4``) and of the server during
the upload and during the download (``VmHWM`` of its ``/proc`` status,
reset in between).  Exit status 1 if any peak RSS reaches
``--max-rss-mib`` (100).  The commands run the icatdump of this checkout
(``PYTHONPATH``), and with ``--compare TREE`` also that of another
checkout, in the same rounds: a before/after in one run.

    python bench/ids_throughput.py                 # 200 files, 500 MiB, + 1 GiB
    python bench/ids_throughput.py --rounds 3 --compare /tmp/before
    python bench/ids_throughput.py --quick         # a few KiB: does it run at all
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import FileOnly  # noqa: E402
from icatdump.dumpfile import open_dumpfile  # noqa: E402
from icatdump.entity import Entity  # noqa: E402
from icatdump.schema import Schema  # noqa: E402

MIB = 1 << 20
LOGIN = ["-a", "simple", "-u", "root", "-p", "secret"]

COPY = """
import os, pathlib, shutil, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for path in sorted(src.rglob("*")):
    if path.is_file():
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
"""


def sizes_of(files: int, total: int, big: int, seed: int) -> list[int]:
    """``files`` sizes spread log-uniformly over three decades and scaled to
    ``total`` bytes (many small files, a few large ones), then ``big``."""
    rand = random.Random(seed)
    raw = [math.exp(rand.uniform(0, math.log(1000))) for _ in range(files)]
    scale = total / sum(raw) if raw else 0
    sizes = [max(1, int(r * scale)) for r in raw]
    return sizes + ([big] if big else [])


def write_content(path: pathlib.Path, size: int, rand: random.Random) -> int:
    """``size`` random bytes at ``path``, a MiB at a time; their CRC32."""
    crc = 0
    with open(path, "wb") as out:
        left = size
        while left:
            block = rand.randbytes(min(MIB, left))
            crc = zlib.crc32(block, crc)
            out.write(block)
            left -= len(block)
    return crc


def make_set(work: pathlib.Path, sizes: list[int], seed: int) -> pathlib.Path:
    """The files under ``work/files`` and ``work/upload.xml`` naming them."""
    schema = Schema.for_version("6.2")
    ids = iter(range(1, 10**9))

    def new(entity, **values):
        return Entity(schema[entity], values, id=next(ids))

    fac = new("Facility", name="BENCH", fullName="IDS throughput")
    itype = new("InvestigationType", name="experiment", facility=fac)
    dstype = new("DatasetType", name="raw", facility=fac)
    fmt = new("DatafileFormat", name="raw", version="1", facility=fac)
    inv = new("Investigation", name="IDS-BENCH", visitId="1", title="IDS throughput",
              facility=fac, type=itype)
    ds = new("Dataset", name="files", investigation=inv, type=dstype)
    rand = random.Random(seed)
    datafiles = []
    for i, size in enumerate(sizes):
        location = "f%d/file_%05d.dat" % (i % 10, i)
        path = work / "files" / location
        path.parent.mkdir(parents=True, exist_ok=True)
        crc = write_content(path, size, rand)
        datafiles.append(new("Datafile", name="file_%05d.dat" % i, location=location,
                             fileSize=size, checksum="%x" % crc, dataset=ds,
                             datafileFormat=fmt))
    data = work / "upload.xml"
    with open_dumpfile(FileOnly(schema), str(data), "XML", "w") as writer:
        writer.writedata([[fac], [itype], [dstype], [fmt]])
        writer.writedata([[inv], [ds], datafiles])
    return data


def run(cmd, tree: pathlib.Path, cwd: pathlib.Path) -> tuple[float, float, float]:
    """Run a command in its own process with the icatdump of ``tree``;
    (seconds, its peak RSS in MiB, its CPU seconds)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        if status != 0:
            err.seek(0)
            raise SystemExit("failed: %s\n%s" % (" ".join(map(str, cmd)),
                                                 err.read().decode(errors="replace")[-2000:]))
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


class Server:
    """``icatdata serve`` on a fresh catalogue under ``work``."""

    def __init__(self, work: pathlib.Path, tree: pathlib.Path):
        cat = work / "served.sqlite"
        env = dict(os.environ, PYTHONPATH=str(tree))
        subprocess.run([sys.executable, "-m", "icatdump.cli.data", "init", str(cat)],
                       check=True, capture_output=True, cwd=work, env=env)
        self.proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli.data", "serve", "-q",
                                      str(cat), "--data-dir", str(work / "ids-data")],
                                     stdout=subprocess.PIPE, text=True, cwd=work, env=env)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.endswith("/ICATService/ICAT"):
            self.stop()
            raise SystemExit("icatdata serve did not start")
        self.idsurl = self.url[:-len("/ICATService/ICAT")] + "/ids"

    def cpu(self) -> float:
        """The server's CPU seconds so far (user and system)."""
        fields = pathlib.Path("/proc/%d/stat" % self.proc.pid).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_mib(self) -> float:
        """The server's peak RSS since it started or since the last reset."""
        status = pathlib.Path("/proc/%d/status" % self.proc.pid).read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def reset_peak(self) -> bool:
        """Start the peak RSS again from the current RSS (Linux 4.0+)."""
        try:
            pathlib.Path("/proc/%d/clear_refs" % self.proc.pid).write_text("5")
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tree_bytes(path: pathlib.Path) -> tuple[int, int]:
    """(files, bytes) under ``path``, hidden files and directories left out."""
    files = [p for p in path.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return len(files), sum(p.stat().st_size for p in files)


def clean(work: pathlib.Path, *names: str) -> None:
    for name in names:
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def copy_files(work: pathlib.Path, expected) -> dict:
    """The baseline: the files copied (sendfile, fsync) by a child process."""
    out: dict[str, float] = {}
    out["copy s"], out["copy rss"], out["copy cpu"] = run([sys.executable, "-c", COPY, str(work / "files"),
                                          str(work / "copy")], ROOT, work)
    if tree_bytes(work / "copy") != expected:
        raise SystemExit("the copy is not the files")
    clean(work, "copy")
    return out


def transfer(work: pathlib.Path, data: pathlib.Path, expected, tree: pathlib.Path) -> dict:
    """Upload and download through a fresh ``icatdata serve``, all of ``tree``."""
    out: dict[str, float] = {}
    server = Server(work, tree)
    try:
        cpu = server.cpu()
        out["upload s"], out["upload rss"], out["upload cpu"] = run(
            [sys.executable, "-m", "icatdump.cli.ingest", "-q", "-w", server.url,
             "--idsurl", server.idsurl, *LOGIN, "-i", str(data), "--upload-datafiles",
             "--datafile-dir", str(work / "files")], tree, work)
        out["server upload rss"] = server.peak_mib()
        out["server upload cpu"], cpu = server.cpu() - cpu, server.cpu()
        if tree_bytes(work / "ids-data") != expected:
            raise SystemExit("the IDS did not store the files")
        reset = server.reset_peak()
        out["download s"], out["download rss"], out["download cpu"] = run(
            [sys.executable, "-m", "icatdump.cli.dump", "-q", "-w", server.url,
             "--idsurl", server.idsurl, *LOGIN, "-f", "XML", "-o", str(work / "dump.xml"),
             "--with-data", str(work / "down")], tree, work)
        # Without a reset the server's peak covers both transfers: an upper bound.
        out["server download rss"] = server.peak_mib()
        out["server download cpu"] = server.cpu() - cpu
        if not reset:
            print("(the server's peak RSS could not be reset: its download figure "
                  "covers the upload too)")
        if tree_bytes(work / "down") != expected:
            raise SystemExit("the download is not the files")
    finally:
        server.stop()
        clean(work, "down", "ids-data", "served.sqlite", "served.sqlite-wal",
              "served.sqlite-shm", "dump.xml")
    return out


def spread(values) -> str:
    if len(values) == 1:
        return "%.3f" % values[0]
    return "%.3f (%.3f-%.3f)" % (statistics.median(values), min(values), max(values))


def report(total: int, copies: list[dict], runs: dict[str, list[dict]], limit: float,
           largest: int) -> int:
    """Print rates, ratios and peaks; 1 if a peak RSS reached ``limit``."""
    copy_s = [c["copy s"] for c in copies]
    print("copy (baseline)  %s MiB/s  (%s s; CPU %s s)" % (
        spread([total / MIB / s for s in copy_s]), spread(copy_s),
        spread([c["copy cpu"] for c in copies])))
    failed = []
    for label, rounds in runs.items():
        print("-- %s" % label)
        for what in ("upload", "download"):
            secs = [x[what + " s"] for x in rounds]
            ratios = [c / s for c, s in zip(copy_s, secs)]
            print("  %-9s %s MiB/s  (%s s); %s/copy ratio %s" % (
                what, spread([total / MIB / s for s in secs]), spread(secs), what,
                spread(ratios)))
            print("  %-9s CPU s: client %s, server %s" % (
                "", spread([x[what + " cpu"] for x in rounds]),
                spread([x["server %s cpu" % what] for x in rounds])))
        peaks = {"icatingest --upload-datafiles": "upload rss",
                 "icatdump --with-data": "download rss",
                 "serve during the upload": "server upload rss",
                 "serve during the download": "server download rss"}
        for name, key in peaks.items():
            mib = max(x[key] for x in rounds)
            print("  peak RSS %-30s %6.1f MiB" % (name, mib))
            if not mib < limit:
                failed.append("%s (%s)" % (name, label))
    print("peak RSS of the copy (baseline) %.1f MiB" % max(c["copy rss"] for c in copies))
    if failed:
        print("FAIL: peak RSS of %s reached %g MiB (largest file %.1f MiB)"
              % (", ".join(failed), limit, largest / MIB))
        return 1
    print("OK: every peak RSS under %g MiB with a %.1f MiB file" % (limit, largest / MIB))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200, help="files of mixed sizes")
    ap.add_argument("--total-mib", type=float, default=500, help="their total size")
    ap.add_argument("--big-mib", type=float, default=1024,
                    help="one more file of this size (0: none)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-rss-mib", type=float, default=100,
                    help="a peak RSS this large fails the run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=pathlib.Path, default=None,
                    help="where to work (default: a temporary directory, removed)")
    ap.add_argument("--compare", type=pathlib.Path, action="append", default=[],
                    metavar="TREE", help="also measure the icatdump of this source tree "
                    "(another commit's checkout) in the same rounds")
    ap.add_argument("--quick", action="store_true",
                    help="10 files of 64 KiB in all and a 256 KiB one: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.files, args.total_mib, args.big_mib = 10, 1 / 16, 1 / 4
    if args.rounds < 1 or args.files < 0 or args.total_mib < 0 or args.big_mib < 0 \
            or not (args.files or args.big_mib):
        ap.error("--rounds must be at least 1, sizes and --files not negative, "
                 "and there must be a file")
    trees = [ROOT] + [t.resolve() for t in args.compare]
    for tree in trees:
        if not (tree / "icatdump" / "__init__.py").is_file():
            print("error: %s is not an icatdump source tree" % tree, file=sys.stderr)
            return 2
    sizes = sizes_of(args.files, int(args.total_mib * MIB), int(args.big_mib * MIB), args.seed)
    total = sum(sizes)
    copies: list[dict] = []
    runs: dict[str, list[dict]] = {str(t): [] for t in trees}
    with tempfile.TemporaryDirectory(prefix="icatdump-ids-bench-", dir=args.dir) as tmp:
        work = pathlib.Path(tmp)
        t = time.monotonic()
        data = make_set(work, sizes, args.seed)
        print("%d files, %.1f MiB (largest %.1f MiB, smallest %d bytes), made in %.1f s; "
              "%d round(s)" % (len(sizes), total / MIB, max(sizes) / MIB, min(sizes),
                               time.monotonic() - t, args.rounds), flush=True)
        for r in range(args.rounds):
            copies.append(copy_files(work, (len(sizes), total)))
            line = ["copy %.2f s" % copies[-1]["copy s"]]
            # The trees take turns going first.
            for tree in trees[r % len(trees):] + trees[:r % len(trees)]:
                got = transfer(work, data, (len(sizes), total), tree)
                runs[str(tree)].append(got)
                line.append("%s: up %.2f s, down %.2f s" % (tree.name, got["upload s"],
                                                            got["download s"]))
            print("round %d: %s" % (r + 1, "; ".join(line)), flush=True)
    return report(total, copies, runs, args.max_rss_mib, max(sizes))


if __name__ == "__main__":
    sys.exit(main())
