"""Throughput of EmbeddedClient.create_many against a plain executemany.

Builds N objects shaped like an ingest of an XML dump (datasets, each with
datafiles, each datafile with one parameter, plus one dataset parameter;
attribute values as the strings a file carries), then times in the same run:

* ``create_many``: batches of about 1000 objects into a fresh catalogue
  (validation, conversion, ids, UNIQUE and relation indexes, bulk checks);
* the baseline: the same rows, already built, inserted with one plain
  ``executemany`` per table per batch into bare tables with the same columns
  (no indexes, no constraints), one transaction per batch, same pragmas.

Usage: python bench/bench_store.py [-n 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402
from icatdump.store.ddl import PRAGMAS, q  # noqa: E402

FILES_PER_DATASET = 9
OBJECTS_PER_DATASET = 2 + 2 * FILES_PER_DATASET


def make_static(client):
    new = client.new
    fac = new("Facility", name="ESNF")
    client.create(fac)
    it = new("InvestigationType", name="Experiment", facility=fac)
    dst = new("DatasetType", name="raw", facility=fac)
    dff = new("DatafileFormat", name="NeXus", version="4.3", facility=fac)
    pt = new("ParameterType", name="Temperature", units="K", valueType="NUMERIC",
             facility=fac, applicableToDatafile=True, applicableToDataset=True)
    client.create_many([it, dst, dff, pt])
    inv = new("Investigation", name="inv", visitId="1", title="Bench", facility=fac, type=it)
    client.create(inv)
    return inv, dst, dff, pt


def make_datasets(client, n_objects, inv, dst, dff, pt):
    new = client.new
    datasets = []
    for i in range(max(1, n_objects // OBJECTS_PER_DATASET)):
        files = [new("Datafile", name="run%06d_%02d.nxs" % (i, j), fileSize=str(1000 + j),
                     location="/data/%06d/run%06d_%02d.nxs" % (i, i, j), checksum="abc%x" % j,
                     datafileCreateTime="2012-07-30T01:10:08+00:00", datafileFormat=dff,
                     parameters=[new("DatafileParameter", type=pt, numericValue="7.3")])
                 for j in range(FILES_PER_DATASET)]
        datasets.append(new("Dataset", name="ds%06d" % i, investigation=inv, type=dst,
                            complete="false", startDate="2012-07-29T10:00:00Z",
                            description="dataset %d" % i, datafiles=files,
                            parameters=[new("DatasetParameter", type=pt, numericValue=4.2)]))
    return datasets


def batches(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="objects to create (default 20000)")
    ap.add_argument("--batch", type=int, default=1000, help="objects per create_many call")
    args = ap.parse_args(argv)
    ds_per_batch = max(1, args.batch // OBJECTS_PER_DATASET)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.sqlite")
        init_catalogue(path)
        client = EmbeddedClient(path)
        inv, dst, dff, pt = make_static(client)
        datasets = make_datasets(client, args.n, inv, dst, dff, pt)
        n_objects = sum(1 + len(d.datafiles) * 2 + 1 for d in datasets)

        t0 = time.perf_counter()
        for chunk in batches(datasets, ds_per_batch):
            client.create_many(chunk)
        t_store = time.perf_counter() - t0

        # The same rows, as the store built them, read back per table.
        tables = ["Dataset", "DatasetParameter", "Datafile", "DatafileParameter"]
        rows = {}
        cols = {}
        for t in tables:
            cur = client.conn.execute("SELECT * FROM %s ORDER BY id" % q(t))
            cols[t] = [d[0] for d in cur.description]
            rows[t] = cur.fetchall()
        client.close()

        # Baseline batches: the rows belonging to each create_many batch.
        bare = sqlite3.connect(os.path.join(tmp, "bare.sqlite"), isolation_level=None)
        for p in PRAGMAS:
            bare.execute(p)
        for t in tables:
            bare.execute("CREATE TABLE %s (%s)" % (q(t), ", ".join(q(c) for c in cols[t])))
        n_batches = (len(datasets) + ds_per_batch - 1) // ds_per_batch
        per_batch = {t: (len(rows[t]) + n_batches - 1) // n_batches for t in tables}
        inserts = {t: "INSERT INTO %s VALUES (%s)" % (q(t), ", ".join("?" * len(cols[t])))
                   for t in tables}
        t0 = time.perf_counter()
        for b in range(n_batches):
            bare.execute("BEGIN")
            for t in tables:
                k = per_batch[t]
                bare.executemany(inserts[t], rows[t][b * k:(b + 1) * k])
            bare.execute("COMMIT")
        t_bare = time.perf_counter() - t0
        bare.close()

    store_rate = n_objects / t_store
    bare_rate = n_objects / t_bare
    print("objects: %d in %d create_many calls (%d per call)"
          % (n_objects, n_batches, ds_per_batch * OBJECTS_PER_DATASET))
    print("create_many:        %9.0f objects/s  (%.2f s)" % (store_rate, t_store))
    print("plain executemany:  %9.0f objects/s  (%.2f s)" % (bare_rate, t_bare))
    print("ratio (executemany / create_many): %.2f" % (bare_rate / store_rate))


if __name__ == "__main__":
    main()
