"""Benchmarks for ingest and dump, each next to its baseline from the same run.

Machines here are noisy, so every figure is printed with a baseline measured
in the same run, and the ratio is what to quote:

* ingest into the embedded catalogue vs. the raw parse rate of the same file
  (lxml ``iterparse`` building dicts; PyYAML ``CSafeLoader``);
* ingest through ``icatdata serve`` vs. python-icat 1.7.0's ``icatingest.py``
  against the same local server (time and HTTP requests);
* dump from the embedded catalogue vs. the raw serialization rate of the same
  objects (lxml build + ``tostring``; PyYAML ``CSafeDumper``);
* dump through ``icatdata serve`` vs. python-icat's ``icatdump.py``.

Every measured command runs in its own process, so peak RSS is its own.

    python bench/run.py                      # 10^4 and 10^5 objects
    python bench/run.py --sizes 1000000      # the big one (minutes)
    python bench/run.py --no-pyicat          # skip python-icat (slow at 10^5)
    python bench/run.py --rounds 3           # each ratio the median of three rounds
    python bench/run.py --sizes 100000 --soap-dumps-only   # ours vs python-icat's dump
    python bench/run.py --sizes --big 1000000  # only the scaling dumps
    python bench/run.py --sizes --big 1000000 --per-dataset 1000000 --no-pyicat
                                             # ... all in one dataset

Scaling dumps (``--big N``): one investigation of N datafiles (peak RSS must
stay under 200 MiB; the file must ingest back), a grouping of 20000 members
and data collections of 5000 datafiles (no search over maxEntities), and
the SOAP dump with and without prefetching the next page.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"


def run(cmd) -> tuple[float, float, str]:
    """Run a command; return (seconds, its own peak RSS in MiB, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    if status != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(map(str, cmd)), text[-2000:]))
    return elapsed, usage.ru_maxrss / 1024, text


def timed_child(code: str) -> tuple[float, float]:
    """Run Python code in a child process that prints its own elapsed time
    (so start-up and imports are not counted); return it and the peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise SystemExit("failed: %s\n%s" % (code[:200], err.read().decode()[-2000:]))
        return float(out.read().decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


RAW_XML = """
import time, sys
from lxml import etree
t = time.monotonic(); n = 0
def todict(el):
    d = {}
    for c in el:
        if len(c):
            d.setdefault(c.tag, []).append(todict(c))
        else:
            d[c.tag] = c.text if c.text is not None else dict(c.attrib)
    return d
for _, data in etree.iterparse(%r, tag="data"):
    for obj in data:
        todict(obj)
    data.clear()
print(time.monotonic() - t)
"""

RAW_YAML = """
import time, yaml
t = time.monotonic()
with open(%r) as f:
    for doc in yaml.load_all(f, Loader=yaml.CSafeLoader):
        pass
print(time.monotonic() - t)
"""

INGEST = """
import time
from icatdump.store import EmbeddedClient, init_catalogue
from icatdump.dumpfile import open_dumpfile
from icatdump.ingest import ingest
from icatdump.dumpfile import discover_backends
discover_backends()     # imports, like the baseline's, before the clock starts
init_catalogue(%r)
c = EmbeddedClient(%r)
t = time.monotonic()
with open_dumpfile(c, %r, %r, "r") as r:
    ingest(c, r)
print(time.monotonic() - t)
"""

INGEST_AGAIN = """
import time
from icatdump.store import EmbeddedClient
from icatdump.dumpfile import open_dumpfile
from icatdump.ingest import ingest
from icatdump.dumpfile import discover_backends
discover_backends()
c = EmbeddedClient(%r)
t = time.monotonic()
with open_dumpfile(c, %r, %r, "r") as r:
    stats = ingest(c, r, "IGNORE")
assert not stats.created, stats.created
print(time.monotonic() - t)
"""

DUMP = """
import time
from icatdump.store import EmbeddedClient
from icatdump.dumpfile import open_dumpfile
from icatdump.dump import dump
from icatdump.dumpfile import discover_backends
discover_backends()     # imports, like the baseline's, before the clock starts
c = EmbeddedClient(%r)
t = time.monotonic()
with open_dumpfile(c, %r, %r, "w") as w:
    dump(c, w)
print(time.monotonic() - t)
"""

RAW_DUMP_XML = """
import time
from lxml import etree
from icatdump.store import EmbeddedClient
from icatdump.dumpfile import open_dumpfile
from icatdump.dump import plan
from icatdump.types import to_text
c = EmbeddedClient(%r, max_entities=10**9)  # untimed: fetch all at once
WITH_KEYS = %r
objs = []
for name, queries, page in plan(c):
    for q in queries:
        objs.extend(q if isinstance(q, list) else c.search(q))
# The file names every object and every reference by its key: the keys are
# made here, untimed, so that what is timed serializes the same elements
# and attributes as the dump writes (references as <name ref="KEY"/>, each
# object's id="KEY").
keyindex, keys = {}, {}
def key_of(o):
    if id(o) not in keys:
        try:
            keys[id(o)] = o.unique_key(keyindex)
        except ValueError:
            keys[id(o)] = "%%s_%%08d" %% (o.type.name, o.id or 0)
    return keys[id(o)]
def prepare(o):
    for v in o.values.values():
        if isinstance(v, list):
            for ch in v:
                prepare(ch)
        elif v is not None and hasattr(v, "values"):
            key_of(v)
for o in objs:
    key_of(o)
    prepare(o)
def elem(o):
    e = etree.Element(o.type.instance_name)
    for k, v in sorted(o.values.items()):
        if isinstance(v, list):
            for ch in v:
                e.append(elem(ch))
        elif v is not None:
            if hasattr(v, "values"):
                if WITH_KEYS:
                    etree.SubElement(e, k, ref=keys[id(v)])
            else:
                etree.SubElement(e, k).text = to_text(v)
    return e
t = time.monotonic()
data = etree.Element("data")
n = 0
for o in objs:
    e = elem(o)
    if WITH_KEYS:
        e.set("id", keys[id(o)])
    data.append(e)
    n += 1
    if n %% 1000 == 0:
        etree.tostring(data, pretty_print=True); data = etree.Element("data")
etree.tostring(data, pretty_print=True)
print(time.monotonic() - t)
"""

RAW_DUMP_YAML = """
import time, yaml
from icatdump.store import EmbeddedClient
from icatdump.dump import plan
from icatdump.types import to_yaml
c = EmbeddedClient(%r, max_entities=10**9)  # untimed: fetch all at once
objs = []
for name, queries, page in plan(c):
    for q in queries:
        objs.extend(q if isinstance(q, list) else c.search(q))
def todict(o):
    d = {}
    for k, v in o.values.items():
        if isinstance(v, list):
            d[k] = [todict(ch) for ch in v]
        elif v is not None and not hasattr(v, "values"):
            d[k] = to_yaml(v)
    return d
t = time.monotonic()
for i in range(0, len(objs), 1000):
    yaml.dump({"x": {str(j): todict(o) for j, o in enumerate(objs[i:i + 1000])}},
              Dumper=yaml.CSafeDumper, default_flow_style=False, explicit_start=True)
print(time.monotonic() - t)
"""


def fmt_rate(n, secs):
    return "%9.0f obj/s" % (n / secs) if secs > 0 else "-"


def _per_round(raws, ours) -> list[float]:
    return [r[0] / o[0] for r, o in zip(raws, ours)]


def _ratios(raws, ours) -> str:
    """The median of the rounds' ratios (baseline time / ours), with their
    range when there were several rounds: single runs on a shared machine
    move by a factor of 1.5."""
    ratios = sorted(_per_round(raws, ours))
    median = statistics.median(ratios)
    if len(ratios) == 1:
        return "%.2f" % median
    return "%.2f (%d rounds: %.2f-%.2f)" % (median, len(ratios), ratios[0], ratios[-1])


def _median_round(raws, ours):
    """The (baseline, ours) measurements of the round with the median ratio."""
    ratios = _per_round(raws, ours)
    i = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    return raws[i], ours[i]


def bench_size(n: int, pyicat: bool, soap: bool, rounds: int = 1):
    from bench.generate import generate
    OUT.mkdir(parents=True, exist_ok=True)
    print("\n== %d objects ==" % n)
    files = {}
    for fmt in ("XML", "YAML"):
        path = OUT / ("gen-%d.%s" % (n, fmt.lower()))
        if not path.exists():
            generate(path, fmt, n)
        files[fmt] = path
    count = _count_objects(files["XML"])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icatdump-bench-"))

    print("-- ingest into the embedded catalogue (baseline: raw parse of the same file)")
    for fmt in ("XML", "YAML"):
        raw_code = (RAW_XML % str(files[fmt])) if fmt == "XML" else (RAW_YAML % str(files[fmt]))
        raws, ours = [], []
        for r in range(rounds):
            db = tmp / ("ingest-%s-%d.sqlite" % (fmt, r))
            raws.append(timed_child(raw_code))
            ours.append(timed_child(INGEST % (str(db), str(db), str(files[fmt]), fmt)))
        (raw_t, raw_rss), (t, rss) = _median_round(raws, ours)
        print("  %-4s raw parse %s %6.0f MiB | ingest %s %6.0f MiB | ratio %s"
              % (fmt, fmt_rate(count, raw_t), raw_rss, fmt_rate(count, t), rss,
                 _ratios(raws, ours)))
        # Resuming means running the same ingest again: every object is
        # then looked up, found and skipped.
        again_t, again_rss = timed_child(INGEST_AGAIN % (str(db), str(files[fmt]), fmt))
        print("       ingest again with --duplicate IGNORE (all found) %s %6.0f MiB | "
              "%.2f x the first ingest's time" % (fmt_rate(count, again_t), again_rss,
                                                  again_t / ours[-1][0]))

    db = tmp / "ingest-XML-0.sqlite"
    print("-- dump from the embedded catalogue (baseline: raw serialization of the same objects)")
    for fmt, raw in (("XML", RAW_DUMP_XML % (str(db), True)), ("YAML", RAW_DUMP_YAML % str(db))):
        raws, ours = [], []
        for r in range(rounds):
            raws.append(timed_child(raw))
            ours.append(timed_child(DUMP % (str(db), str(tmp / ("dump." + fmt.lower())), fmt)))
        (raw_t, _), (t, rss) = _median_round(raws, ours)
        print("  %-4s raw serialize %s | dump %s %6.0f MiB | ratio %s"
              % (fmt, fmt_rate(count, raw_t), fmt_rate(count, t), rss, _ratios(raws, ours)))
        if fmt == "XML":
            # The baseline as it was first written: elements without the
            # references and ids every dump carries (an easier target).
            bare = [timed_child(RAW_DUMP_XML % (str(db), False)) for _ in range(rounds)]
            print("       raw serialize without references and ids %s | ratio %s"
                  % (fmt_rate(count, _median_round(bare, ours)[0][0]), _ratios(bare, ours)))

    if soap:
        safe = OUT / ("gen-%d-noquotes.xml" % n)
        if not safe.exists():
            generate(safe, "XML", n, quotes=False)
        bench_soap(safe, _count_objects(safe), tmp, pyicat)


def soap_dumps_only(n: int):
    from bench.generate import generate
    OUT.mkdir(parents=True, exist_ok=True)
    print("\n== %d objects ==" % n)
    safe = OUT / ("gen-%d-noquotes.xml" % n)
    if not safe.exists():
        generate(safe, "XML", n, quotes=False)
    bench_soap_dumps(safe, _count_objects(safe),
                     pathlib.Path(tempfile.mkdtemp(prefix="icatdump-bench-")))


def bench_soap(xml_file, count, tmp, pyicat):
    """Ours vs python-icat against the same local SOAP server."""
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient, init_catalogue
    print("-- through icatdata serve (baseline: python-icat 1.7.0 against the same server)")
    scripts = ROOT / ".cache" / "python-icat-1.7.0" / "src" / "scripts"
    contenders = [("icatdump", None)]
    if pyicat:
        contenders.append(("python-icat", scripts))
    results = {}
    for name, script_dir in contenders:
        db = tmp / ("soap-%s.sqlite" % name)
        init_catalogue(str(db))
        server = serve(lambda: EmbeddedClient(str(db)), accounts={"root": "secret"})
        conn = ["-w", server.url.rsplit("/ICATService", 1)[0], "-a", "simple", "-u", "root",
                "-p", "secret"]
        try:
            if script_dir is None:
                ing = [sys.executable, "-m", "icatdump.cli.ingest", *conn, "-i", str(xml_file)]
                dmp = [sys.executable, "-m", "icatdump.cli.dump", *conn, "-f", "XML",
                       "-o", str(tmp / "soap-ours.xml")]
            else:
                ing = [sys.executable, str(script_dir / "icatingest.py"), *conn, "-f", "XML",
                       "-i", str(xml_file)]
                dmp = [sys.executable, str(script_dir / "icatdump.py"), *conn, "-f", "XML",
                       "-o", str(tmp / "soap-pyicat.xml")]
            before = sum(server.service.calls.values())
            t_ing, _, _ = run(ing)
            req_ing = sum(server.service.calls.values()) - before
            before = sum(server.service.calls.values())
            t_dmp, rss_dmp, _ = run(dmp)
            req_dmp = sum(server.service.calls.values()) - before
            if script_dir is None:
                before = sum(server.service.calls.values())
                t_again, _, _ = run(ing + ["--duplicate", "IGNORE"])
                req_again = sum(server.service.calls.values()) - before
                print("  icatdump    ingest again with --duplicate IGNORE (all found) %6.1f s "
                      "%6d requests (%.2f x the first ingest's time)"
                      % (t_again, req_again, t_again / t_ing))
        finally:
            server.shutdown()
        results[name] = (t_ing, req_ing, t_dmp, req_dmp)
        print("  %-11s ingest %6.1f s %s %6d requests | dump %6.1f s %s %6d requests %5.0f MiB"
              % (name, t_ing, fmt_rate(count, t_ing), req_ing, t_dmp, fmt_rate(count, t_dmp),
                 req_dmp, rss_dmp))
    if "python-icat" in results:
        a, b = results["icatdump"], results["python-icat"]
        same = _same_body(tmp / "soap-ours.xml", tmp / "soap-pyicat.xml")
        print("  ratio: ingest %.1fx faster, %.1fx fewer requests; dump %.1fx faster; "
              "dumps %s" % (b[0] / a[0], b[1] / max(a[1], 1), b[2] / a[2],
                            "identical apart from the header" if same else "DIFFER"))


def bench_soap_dumps(xml_file, count, tmp):
    """Only the dumps of bench_soap: ours and python-icat's of one catalogue
    (loaded by ours) behind one server -- python-icat's ingest takes most
    of bench_soap's time at 10^5 objects."""
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient
    print("-- dumps through icatdata serve (baseline: python-icat 1.7.0's icatdump.py)")
    db = tmp / "soap-dumps.sqlite"
    timed_child(INGEST % (str(db), str(db), str(xml_file), "XML"))
    script = ROOT / ".cache" / "python-icat-1.7.0" / "src" / "scripts" / "icatdump.py"
    server = serve(lambda: EmbeddedClient(str(db)), accounts={"root": "secret"})
    conn = ["-w", server.url.rsplit("/ICATService", 1)[0], "-a", "simple", "-u", "root",
            "-p", "secret", "-f", "XML", "-o"]
    times = {}
    try:
        for name, cmd in (("icatdump", [sys.executable, "-m", "icatdump.cli.dump"]),
                          ("python-icat", [sys.executable, str(script)])):
            before = sum(server.service.calls.values())
            t, rss, _ = run(cmd + conn + [str(tmp / ("soap-dump-%s.xml" % name))])
            times[name] = t
            print("  %-11s dump %6.1f s %s %6d requests %5.0f MiB"
                  % (name, t, fmt_rate(count, t), sum(server.service.calls.values()) - before,
                     rss))
    finally:
        server.shutdown()
    same = _same_body(tmp / "soap-dump-icatdump.xml", tmp / "soap-dump-python-icat.xml")
    print("  ratio: dump %.1fx faster; dumps %s" % (
        times["python-icat"] / times["icatdump"],
        "identical apart from the header" if same else "DIFFER"))


def _same_body(a, b) -> bool:
    """Whether two XML data files are the same apart from their ``<head>``
    (date, service, version, generator).

    Read in blocks: files of hundreds of MB held whole here would be
    counted in the peak RSS of every command this process starts next.
    """
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for f in (fa, fb):
            for line in f:
                if line.strip() == b"</head>":
                    break
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


DUMP_SOAP = """
import time
from icatdump.soap.client import SoapClient
from icatdump.dumpfile import open_dumpfile
from icatdump.dump import dump
c = SoapClient(%r)
c.login("simple", {"username": "root", "password": "secret"})
t = time.monotonic()
with open_dumpfile(c, %r, "XML", "w") as w:
    dump(c, w, prefetch=%r)
print(time.monotonic() - t)
"""


def build_big(path, n_files: int, per_dataset: int = 10_000):
    """One investigation of ``n_files`` datafiles, a grouping of 20000 members,
    three data collections of 5000 datafiles; straight into the store."""
    from icatdump.store import EmbeddedClient, init_catalogue
    init_catalogue(str(path))
    c = EmbeddedClient(str(path))
    new = c.new
    fac = new("Facility", name="BIG")
    c.create(fac)
    users = [new("User", name="user%05d" % i, fullName="User %d" % i) for i in range(20000)]
    c.create_many(users)
    c.create(new("Grouping", name="everyone", userGroups=[new("UserGroup", user=u)
                                                          for u in users]))
    itype, dtype = new("InvestigationType", name="exp", facility=fac), \
        new("DatasetType", name="raw", facility=fac)
    fmt = new("DatafileFormat", name="nexus", version="4", facility=fac)
    c.create_many([itype, dtype, fmt])
    inv = new("Investigation", name="huge", visitId="1", title="A big one", facility=fac,
              type=itype)
    c.create(inv)
    first = []
    for d in range(max(1, n_files // per_dataset)):
        ds = new("Dataset", name="ds%05d" % d, complete=True, investigation=inv, type=dtype)
        c.create(ds)
        for b in range(0, per_dataset, 10_000):
            batch = [new("Datafile", name="f%07d.nxs" % (b + i), location="/d/%d/%d" % (d, b + i),
                         fileSize=1000 + i, datafileFormat=fmt, dataset=ds)
                     for i in range(min(10_000, per_dataset - b))]
            c.create_many(batch)
            if len(first) < 15000:
                first.extend(batch[:5000])
    for k in range(3):
        c.create(new("DataCollection", doi="dc-%d" % k, dataCollectionDatafiles=[
            new("DataCollectionDatafile", datafile=df) for df in first[k * 5000:(k + 1) * 5000]]))
    c.close()


def bench_big(n_files: int, pyicat: bool, pyicat_jobs: int = 1,
              per_dataset: int = 10_000):
    from icatdump.store import EmbeddedClient
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="icatdump-big-"))
    db = tmp / "big.sqlite"
    print("\n== scaling: one investigation of %d datafiles (%d per dataset), a grouping of "
          "20000 users, data collections of 5000 datafiles ==" % (n_files, per_dataset))
    t = time.monotonic()
    build_big(db, n_files, per_dataset)
    print("  built in %.0f s" % (time.monotonic() - t))
    count = n_files + 20000 * 2 + 15000 + 3 + 8
    for fmt in ("XML", "YAML"):
        out = tmp / ("big." + fmt.lower())
        t, rss = timed_child(DUMP % (str(db), str(out), fmt))
        print("  dump %-4s %s peak RSS %5.0f MiB (bound 200) %s"
              % (fmt, fmt_rate(count, t), rss, "ok" if rss <= 200 else "OVER"))
    back = tmp / "back.sqlite"
    t, rss = timed_child(INGEST % (str(back), str(back), str(tmp / "big.xml"), "XML"))
    n_back = EmbeddedClient(str(back)).search("SELECT COUNT(o) FROM Datafile o")[0]
    print("  ingest back (XML) %s peak RSS %5.0f MiB, %d datafiles"
          % (fmt_rate(count, t), rss, n_back))
    prefetch_figures(db, tmp, count)
    if pyicat:
        _pyicat_ingest_back(tmp, count, pyicat_jobs)


def prefetch_figures(db, tmp, count):
    """Dumps of catalogue ``db`` through icatdata serve with and without
    the prefetching thread, plain and with a delay added to every search."""
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient
    print("-- dump through icatdata serve: prefetching thread vs none (same run), on the "
          "loopback and with %d ms added to every search (a server across a network)"
          % (SEARCH_DELAY * 1000))
    for delay in (0.0, SEARCH_DELAY):
        server = serve(lambda: DelayedSearches(EmbeddedClient(str(db)), delay),
                       accounts={"root": "secret"})
        try:
            for prefetch in (False, True):
                t, rss = timed_child(DUMP_SOAP % (server.url, str(tmp / "soap.xml"), prefetch))
                same = _same_body(tmp / "soap.xml", tmp / "big.xml")
                print("  +%2d ms  prefetch=%-5s %s %5.0f MiB, %s"
                      % (delay * 1000, prefetch, fmt_rate(count, t), rss,
                         "the same file as from the catalogue" if same else "DIFFERS"))
        finally:
            server.shutdown()


#: Seconds added to each search for the "remote server" prefetch figures.
SEARCH_DELAY = 0.01


class DelayedSearches:
    """A catalogue whose searches take ``delay`` seconds longer, standing in
    for the round trip to a server elsewhere on the network."""

    def __init__(self, client, delay: float):
        self._client = client
        self._delay = delay

    def search(self, *args, **kwargs):
        time.sleep(self._delay)
        return self._client.search(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._client, name, value)     # the server sets ``user`` per call


def _pyicat_ingest_back(tmp, count, jobs: int = 1):
    """python-icat's icatingest.py loads our big dump into a fresh catalogue
    behind icatdata serve, then ours dumps that catalogue again: the file
    must come back identical apart from its header.

    python-icat makes one call per object and is bound by its own CPU (about
    70-90 objects/s here), so 10^6 datafiles take hours. ``jobs`` > 1 runs
    that many icatingest.py processes side by side on the run of chunks that
    hold only datafiles (they reference the datasets and formats before them,
    never each other); the chunks before and after that run are loaded first
    and last, alone. Every chunk is passed on byte for byte: python-icat
    still reads every line of the file as written.
    """
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient, init_catalogue
    script = ROOT / ".cache" / "python-icat-1.7.0" / "src" / "scripts" / "icatingest.py"
    db = tmp / "pyicat-back.sqlite"
    if db.exists():
        db.unlink()
    init_catalogue(str(db))
    stages = _split_for_jobs(tmp / "big.xml", tmp / "pyicat-parts", jobs)
    server = serve(lambda: EmbeddedClient(str(db)), accounts={"root": "secret"})
    conn = ["-w", server.url.rsplit("/ICATService", 1)[0], "-a", "simple", "-u", "root",
            "-p", "secret"]
    peak, total = 0.0, 0.0
    try:
        for files in stages:
            t, rss = _run_side_by_side([[sys.executable, str(script), *conn, "-f", "XML",
                                         "-i", str(f)] for f in files])
            total += t
            peak = max(peak, rss)
            print("    %d file(s) side by side: %.0f s" % (len(files), t), flush=True)
    finally:
        server.shutdown()
    n_back = EmbeddedClient(str(db)).search("SELECT COUNT(o) FROM Datafile o")[0]
    print("  python-icat ingest back (XML, through serve, %d job(s)) %s peak RSS %5.0f MiB, "
          "%d datafiles" % (jobs, fmt_rate(count, total), peak, n_back))
    again = tmp / "pyicat-back.xml"
    timed_child(DUMP % (str(db), str(again), "XML"))
    same = _same_body(again, tmp / "big.xml")
    print("  dump of what python-icat loaded: %s"
          % ("identical to the file apart from the header" if same else "DIFFERS"))


def _split_for_jobs(path, outdir, jobs: int) -> list[list[pathlib.Path]]:
    """Cut a dump file at its chunk lines into stages of files: the chunks
    up to the first datafile-only chunk, that run of datafile-only chunks
    dealt into ``jobs`` files, and the rest. Each file keeps the original
    head; each chunk is copied verbatim."""
    if jobs <= 1:
        return [[pathlib.Path(path)]]
    only_datafiles = [all(top.startswith((b"  <datafile ", b"  </datafile>"))
                          for top in chunk) for chunk in _chunks(path, top_only=True)]
    first = only_datafiles.index(True)
    last = len(only_datafiles) - only_datafiles[::-1].index(True)
    outdir.mkdir(exist_ok=True)

    def target(i):      # (stage, file within the stage)
        return (0, 0) if i < first else (1, (i - first) % jobs) if i < last else (2, 0)

    with open(path, "rb") as f:
        opening = b"".join(iter(f.readline, b"</head>\n")) + b"</head>\n"
    outs = {}
    for i, chunk in enumerate(_chunks(path)):
        t = target(i)
        if t not in outs:
            outs[t] = open(outdir / ("stage%d-%d.xml" % t), "wb")
            outs[t].write(opening)
        outs[t].writelines(chunk)
    for out in outs.values():
        out.write(b"</icatdata>\n")
        out.close()
    return [[pathlib.Path(outs[t].name) for t in sorted(outs) if t[0] == n]
            for n in sorted({t[0] for t in outs})]


def _chunks(path, top_only=False):
    """The chunks of an XML dump file as we write it, one list of lines each
    (``<data>`` to ``</data>``), or only their top-level element lines."""
    chunk = None
    with open(path, "rb") as f:
        for line in f:
            if line == b"<data>\n":
                chunk = [] if top_only else [line]
            elif line == b"</data>\n":
                if not top_only:
                    chunk.append(line)
                yield chunk
                chunk = None
            elif chunk is not None and (not top_only or line.startswith(b"  <")):
                chunk.append(line)


def _run_side_by_side(cmds) -> tuple[float, float]:
    """Start the commands together; return the seconds until the last one
    ended and the largest peak RSS among them (MiB)."""
    start = time.monotonic()
    procs = {subprocess.Popen(c).pid: c for c in cmds}
    peak = 0.0
    while procs:
        pid, status, usage = os.wait4(-1, 0)
        cmd = procs.pop(pid, None)
        if cmd is None:
            continue
        peak = max(peak, usage.ru_maxrss / 1024)
        if status != 0:
            raise SystemExit("failed: %s" % " ".join(map(str, cmd)))
    return time.monotonic() - start, peak


def _count_objects(path) -> int:
    """Objects (top-level and embedded) in a file, as icatdata info counts them."""
    out = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "info", "--json", str(path)],
                         capture_output=True, check=True, text=True).stdout
    import json
    return json.loads(out)["objects"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--no-pyicat", action="store_true", help="skip python-icat")
    p.add_argument("--no-soap", action="store_true", help="skip the SOAP measurements")
    p.add_argument("--rounds", type=int, default=1, metavar="R",
                   help="measure ingest and dump R times each, each next to its baseline, "
                        "and report the median ratio with the range")
    p.add_argument("--big", type=int, metavar="N", help="scaling dumps with N datafiles")
    p.add_argument("--soap-dumps-only", action="store_true",
                   help="for each size only the dumps through serve, ours and python-icat's")
    p.add_argument("--per-dataset", type=int, default=10_000, metavar="M",
                   help="datafiles per dataset in the --big catalogue (default 10000)")
    p.add_argument("--pyicat-jobs", type=int, default=1, metavar="J",
                   help="python-icat ingests of the --big file's datafile chunks side by side")
    p.add_argument("--pyicat-back", metavar="DIR", type=pathlib.Path,
                   help="only the last step of --big: dump DIR/big.sqlite to DIR/big.xml "
                        "again and load that with python-icat")
    a = p.parse_args()
    os.chdir(ROOT)
    for n in a.sizes:
        if a.soap_dumps_only:
            soap_dumps_only(n)
        else:
            bench_size(n, not a.no_pyicat, not a.no_soap, a.rounds)
    if a.big:
        bench_big(a.big, not a.no_pyicat, a.pyicat_jobs, a.per_dataset)
    if a.pyicat_back:
        tmp = a.pyicat_back.resolve()
        timed_child(DUMP % (str(tmp / "big.sqlite"), str(tmp / "big.xml"), "XML"))
        _pyicat_ingest_back(tmp, _count_objects(tmp / "big.xml"), a.pyicat_jobs)


if __name__ == "__main__":
    main()
