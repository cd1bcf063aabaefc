"""The least an XML ingest into the embedded catalogue can cost, measured.

Issue 6 asks for an XML ingest at 0.4x the rate of lxml ``iterparse``
building dicts.  This measures, in the same run and on the same file:

* the baseline (``bench/run.py``'s raw parse: iterparse, one dict per object);
* the *floor*: iterparse, and for each object one row built straight from
  its element (values converted to their stored form, references looked up
  by key in one dict of every key of the file), one ``executemany`` per
  table and chunk into a fresh catalogue (same tables, indexes, pragmas),
  a commit every 10000 objects -- and nothing else: no checks, no error
  messages, no Entity objects, no duplicate handling, no bound on memory;
* our ingest (``icatdump.ingest``), as ``bench/run.py`` runs it.

The floor is what any ingest that keeps SQLite and lxml pays, so its ratio
is an upper bound for ours.  Usage:
``python bench/xml_floor.py [--size N] [--runs R]`` (default 10^5 objects,
3 runs; the file is generated into bench/out/ as by bench/run.py).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import INGEST, OUT, RAW_XML, timed_child  # noqa: E402

FLOOR = """
import datetime, sqlite3, time
from lxml import etree
from icatdump.schema import Schema
from icatdump.store import init_catalogue
from icatdump.store.ddl import PRAGMAS, q

init_catalogue(%(db)r)
conn = sqlite3.connect(%(db)r, isolation_level=None)
for pragma in PRAGMAS:
    conn.execute(pragma)
schema = Schema.for_version("6.2")
USER, STAMP = "simple/root", "2026-01-01 00:00:00.000000"
UTC = datetime.timezone.utc


def date(text):
    d = datetime.datetime.fromisoformat(text).astimezone(UTC)
    return d.replace(tzinfo=None).isoformat(" ", "microseconds")


CONVERT = {"Long": int, "Integer": int, "Double": float, "Date": date,
           "boolean": lambda text: text == "true"}
layouts = {}


def layout(etype):
    # Per type: sub-element -> (kind, column, how); row template; INSERT; columns.
    found = layouts.get(etype.name)
    if found is None:
        cols = ["id", "createId", "createTime", "modId", "modTime"]
        cols += list(etype.attrs) + list(etype.ones)
        pos = {c: i for i, c in enumerate(cols)}
        slots = {n: (0, pos[n], CONVERT.get(f.type)) for n, f in etype.attrs.items()}
        slots.update((n, (1, pos[n], None)) for n in etype.ones)
        slots.update((n, (2, f.mapped_by, schema[f.type])) for n, f in etype.manys.items())
        sql = "INSERT INTO %%s (%%s) VALUES (%%s)" %% (
            q(etype.name), ", ".join(q(c) for c in cols), ", ".join("?" * len(cols)))
        found = layouts[etype.name] = (slots, [None] * (len(cols) - 5), sql, pos)
    return found


ids = {}            # every key of the file -> id
next_id = 1


def row_of(elem, etype, rows, parent_field=None, parent_id=None):
    global next_id
    slots, template, sql, pos = layout(etype)
    my_id = next_id
    next_id += 1
    row = [my_id, USER, STAMP, USER, STAMP] + template
    rows.setdefault(sql, []).append(row)
    if parent_field is not None:
        row[pos[parent_field]] = parent_id
    for sub in elem:
        kind, where, how = slots[sub.tag]
        if kind == 0:
            text = sub.text
            row[where] = how(text) if how is not None and text is not None else text
        elif kind == 1:
            row[where] = ids.get(sub.get("ref"))
        else:
            row_of(sub, how, rows, where, my_id)
    return my_id


t = time.monotonic()
since_commit = 0
conn.execute("BEGIN")
for _, data in etree.iterparse(%(xml)r, tag="data"):
    rows = {}
    for elem in data:
        key = elem.get("id")
        ids[key] = row_of(elem, schema.by_instance_name(elem.tag), rows)
        since_commit += 1
    for sql, chunk_rows in rows.items():
        conn.executemany(sql, chunk_rows)
    data.clear()
    while data.getprevious() is not None:
        del data.getparent()[0]
    if since_commit >= 10000:
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        since_commit = 0
conn.execute("COMMIT")
print(time.monotonic() - t)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100_000, help="objects in the file")
    ap.add_argument("--runs", type=int, default=3, help="rounds of the three measurements")
    args = ap.parse_args(argv)
    from bench.generate import generate
    OUT.mkdir(parents=True, exist_ok=True)
    xml = OUT / ("gen-%d.xml" % args.size)
    if not xml.exists():
        generate(xml, "XML", args.size)
    times = {"raw parse": [], "floor": [], "icatdump": []}
    with tempfile.TemporaryDirectory(prefix="icatdump-floor-") as tmp:
        for i in range(args.runs):
            floor_db = os.path.join(tmp, "floor-%d.sqlite" % i)
            ours_db = os.path.join(tmp, "ours-%d.sqlite" % i)
            times["raw parse"].append(timed_child(RAW_XML % str(xml))[0])
            times["floor"].append(timed_child(FLOOR % {"db": floor_db, "xml": str(xml)})[0])
            times["icatdump"].append(timed_child(INGEST % (ours_db, ours_db, str(xml), "XML"))[0])
            print("run %d: %s" % (i + 1, "  ".join("%s %.2f s" % (k, v[-1])
                                                  for k, v in times.items())), flush=True)
    raw = times["raw parse"]
    for name in ("floor", "icatdump"):
        ratios = [r / t for r, t in zip(raw, times[name])]
        print("%-8s ratio to the raw parse: median %.2f (runs: %s)"
              % (name, statistics.median(ratios), ", ".join("%.2f" % r for r in ratios)))


if __name__ == "__main__":
    main()
