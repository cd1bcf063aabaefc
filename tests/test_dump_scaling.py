"""Dumps that scale: keyset pages under maxEntities, chunks that split,
selections that ingest into an empty catalogue.

The big shapes of the benchmark (a grouping with 20000 members, data
collections of 5000 datafiles) are scaled down here together with
``max_entities`` (500), which exercises the same code paths in seconds.
"""

import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest

from icatdump.dump import Selection, dump, ids_of, plan
from icatdump import spill
from icatdump.dumpfile import DumpFileWriter, open_dumpfile
from icatdump.ingest import ingest
from icatdump.snapshot import fingerprint
from icatdump.store import EmbeddedClient, init_catalogue
from conftest import dump_body as body, python_icat_sdist

ROOT = pathlib.Path(__file__).resolve().parent.parent


def xml_chunks(data: bytes) -> list[bytes]:
    return re.findall(rb"<data>\n.*?</data>\n", data, re.S)


@pytest.fixture
def new_catalogue(tmp_path):
    n = [0]

    def make(version="6.2", max_entities=10000):
        n[0] += 1
        path = tmp_path / ("c%d.sqlite" % n[0])
        init_catalogue(str(path), version)
        return EmbeddedClient(str(path), max_entities=max_entities)
    return make


def dump_bytes(client, tmp_path, fmt="XML", **kw) -> bytes:
    out = tmp_path / ("dump-%d.%s" % (len(list(tmp_path.iterdir())), fmt.lower()))
    with open_dumpfile(client, str(out), fmt, "w") as writer:
        dump(client, writer, **kw)
    return out.read_bytes()


def ingest_bytes(client, tmp_path, data: bytes, fmt="XML"):
    path = tmp_path / ("in-%d.%s" % (len(list(tmp_path.iterdir())), fmt.lower()))
    path.write_bytes(data)
    with open_dumpfile(client, str(path), fmt, "r") as reader:
        return ingest(client, reader)


def build(client, members=1200, datasets=3, files=400, collection=600):
    """A grouping with many members, an investigation with many datafiles
    (numeric names, so text order differs from id and number order) and a
    data collection of many datafiles."""
    new = client.new
    fac = new("Facility", name="F")
    client.create(fac)
    users = [new("User", name="user%05d" % ((i * 7919) % members)) for i in range(members)]
    client.create_many(users)
    client.create(new("Grouping", name="big",
                      userGroups=[new("UserGroup", user=u) for u in users]))
    itype = new("InvestigationType", name="exp", facility=fac)
    dtype = new("DatasetType", name="raw", facility=fac)
    client.create_many([itype, dtype])
    inv = new("Investigation", name="inv", visitId="1", title="t", facility=fac, type=itype)
    client.create(inv)
    dfs = []
    for d in range(datasets):
        ds = new("Dataset", name="ds%d" % (datasets - d), complete=False,
                 investigation=inv, type=dtype)
        client.create(ds)
        batch = [new("Datafile", name="%d" % ((i * 31) % files), dataset=ds)
                 for i in range(files)]
        client.create_many(batch)
        dfs.extend(batch)
    client.create(new("DataCollection", dataCollectionDatafiles=[
        new("DataCollectionDatafile", datafile=df) for df in dfs[:collection]]))
    return client


def spilled_runs(monkeypatch, sort_run: int) -> list:
    """Groups are sorted in runs of ``sort_run`` objects spilled to disk; the
    list returned fills with the length of each run written."""
    runs = []
    original_add = spill.SpilledRuns.add

    def counted_add(self, entries):
        entries = list(entries)
        runs.append(len(entries))
        original_add(self, entries)
    monkeypatch.setattr(spill.SpilledRuns, "add", counted_add)
    monkeypatch.setattr(DumpFileWriter, "sort_run", sort_run)
    return runs


def test_small_max_entities_same_output(new_catalogue, tmp_path):
    """Pages adapt to maxEntities 500: a grouping of 1200 members and a data
    collection of 600 datafiles (each over the limit on its own) dump
    without a refused search, byte for byte as with the default limit."""
    client = build(new_catalogue())
    small = EmbeddedClient(client.url, max_entities=500)
    with pytest.raises(Exception, match="more than 500"):
        small.search("SELECT o FROM Grouping o INCLUDE o.userGroups AS ug, ug.user")
    expected = body(dump_bytes(client, tmp_path, chunk_size=None))
    assert body(dump_bytes(small, tmp_path, chunk_size=None)) == expected
    assert expected.count(b"<userGroups>") == 1200
    assert expected.count(b"<dataCollectionDatafiles>") == 600


def test_example_with_tiny_max_entities(new_catalogue, tmp_path, example):
    """python-icat's 6.2 example dumps unchanged with maxEntities 20 (the
    investigations include far more than 20 objects each)."""
    client = new_catalogue()
    src = example("icatdump-6.2.xml")
    ingest_bytes(client, tmp_path, src.read_bytes())
    tiny = EmbeddedClient(client.url, max_entities=20)
    assert body(dump_bytes(tiny, tmp_path)) == body(src.read_bytes())


def test_ids_of_keyset_pages(new_catalogue):
    """Investigation ids in the server's order, page after page by keyset."""
    client = new_catalogue()
    fac = client.new("Facility", name="F")
    itype = client.new("InvestigationType", name="t", facility=fac)
    client.create_many([fac, itype])
    invs = [client.new("Investigation", name="n%d" % (i % 4), visitId="v'%d" % (i // 4),
                       title="t", facility=fac, type=itype) for i in range(23)]
    client.create_many(invs)
    expected = [o.id for o in client.search(
        "SELECT o FROM Investigation o JOIN o.facility AS f ORDER BY f.name, o.name, o.visitId")]
    for page in (1, 3, 5, 100):
        assert list(ids_of(client, "Investigation", ["facility.name", "name", "visitId"],
                           page=page)) == expected


def test_split_chunks_read_back(new_catalogue, tmp_path):
    """A chunk over --chunk-size becomes several; the file ingests into an
    empty catalogue and dumps back as the unsplit file."""
    client = build(new_catalogue(), members=50, datasets=2, files=300, collection=10)
    whole = dump_bytes(client, tmp_path)
    split = dump_bytes(client, tmp_path, chunk_size=100)
    assert len(xml_chunks(split)) > len(xml_chunks(whole)) + 4
    assert all(c.count(b' id="') <= 100 for c in xml_chunks(split))
    for fmt in ("XML", "YAML"):
        data = split if fmt == "XML" else dump_bytes(client, tmp_path, "YAML", chunk_size=100)
        copy = new_catalogue()
        ingest_bytes(copy, tmp_path, data, fmt)
        assert body(dump_bytes(copy, tmp_path)) == body(whole)


def test_keys_of_datafiles_not_kept(new_catalogue, tmp_path):
    """The chunk's key index does not grow with the datafiles written."""
    from icatdump.dumpfile import DumpFileWriter
    client = build(new_catalogue(), members=5, datasets=2, files=200, collection=1)
    seen = []
    original = DumpFileWriter.writeobjs

    def spy(self, objs, keyindex, **kw):
        original(self, objs, keyindex, **kw)
        seen.append(len(keyindex.maps[0]))
    DumpFileWriter.writeobjs = spy
    try:
        dump_bytes(client, tmp_path)
    finally:
        DumpFileWriter.writeobjs = original
    assert max(seen) < 50


def add_parameters(client, per_file=2):
    """Give every datafile ``per_file`` parameters (children sorted too)."""
    fac = client.search("SELECT o FROM Facility o")[0]
    ptypes = [client.new("ParameterType", name="p%d" % k, units="u", valueType="NUMERIC",
                         applicableToDatafile=True, facility=fac) for k in range(per_file)]
    client.create_many(ptypes)
    params = [client.new("DatafileParameter", datafile=df, type=ptype, numericValue=-i * k)
              for i, df in enumerate(client.search("SELECT o FROM Datafile o"))
              for k, ptype in enumerate(ptypes)]
    client.create_many(params)


def test_big_group_sorted_in_runs_on_disk(new_catalogue, tmp_path, monkeypatch):
    """The datafiles of a dataset bigger than ``sort_run`` are sorted in runs
    spilled to disk and merged: the file is byte for byte the one sorted in
    memory (dates, floats and unicode values included)."""
    import datetime as dt
    client = build(new_catalogue(), members=3, datasets=2, files=500, collection=3)
    add_parameters(client)
    files = client.search("SELECT o FROM Datafile o INCLUDE 1")
    zone = dt.timezone(dt.timedelta(hours=-5))
    for i, df in enumerate(files[:120]):
        df.values.update(
            datafileCreateTime=dt.datetime(2020, 1, 1, 12, 0, i % 60, i * 1001, tzinfo=zone),
            description="Prüfung \u2603 %d 'q' \"dq\"\t" % i, fileSize=i * 10 ** 9,
            checksum=None if i % 3 else "")
        client.update(df)
    expected = {fmt: body(dump_bytes(client, tmp_path, fmt)) for fmt in ("XML", "YAML")}
    assert expected["XML"].count(b"<datafileCreateTime>2020-01-01T17:00:") == 120
    runs = spilled_runs(monkeypatch, 37)
    for fmt in ("XML", "YAML"):
        runs.clear()
        assert body(dump_bytes(client, tmp_path, fmt)) == expected[fmt]
        # Two datasets of 500 datafiles: 14 runs each, the last one short.
        assert runs == [37] * 13 + [19] + [37] * 13 + [19]


def test_no_room_for_sorted_runs(new_catalogue, tmp_path, monkeypatch):
    """A full disk under TMPDIR while a big group is sorted: the dump fails
    with one line naming the place and what to do, and leaves no file."""
    import errno
    from icatdump import spill
    from icatdump.cli.common import classify
    from icatdump.dumpfile import DumpFileWriter
    client = build(new_catalogue(), members=3, datasets=1, files=300, collection=3)
    monkeypatch.setattr(DumpFileWriter, "sort_run", 50)
    written = [0]
    dump_entry = spill.pickle.dump

    def filling(*args):
        written[0] += 1
        if written[0] > 120:
            raise OSError(errno.ENOSPC, "No space left on device")
        dump_entry(*args)
    monkeypatch.setattr(spill.pickle, "dump", filling)
    out = tmp_path / "full.xml"
    with pytest.raises(OSError) as info:
        with open_dumpfile(client, str(out), "XML", "w") as writer:
            dump(client, writer)
    code, message = classify(info.value)
    assert code != 0 and "\n" not in message
    assert message.startswith(spill.tempfile.gettempdir() + ": ")
    assert "No space left on device" in message and "TMPDIR" in message
    assert list(tmp_path.glob("*full.xml*")) == []


def test_spilled_runs_merge_stably():
    """Equal sort keys come out in the order of their runs (one stable sort);
    objects shared within and between entries come back as they went in."""
    from icatdump.spill import SpilledRuns
    shared = ["x", "y"]
    with SpilledRuns() as runs:
        runs.add([(["a"], 1, "a"), (["b"], 2, shared)])
        runs.add([(["a"], 3, ["b", "b"]), (["c"], 4, shared)])
        runs.add([])
        runs.add([(["a"], 5, shared), (["b"], 6, "b")])
        assert list(runs.merged()) == [
            (["a"], 1, "a"), (["a"], 3, ["b", "b"]), (["a"], 5, shared),
            (["b"], 2, shared), (["b"], 6, "b"), (["c"], 4, shared)]


def test_prefetch_streams_pages(new_catalogue, tmp_path, monkeypatch):
    """With prefetching, a big group reaches the writer page by page: the
    fetching thread runs at most a few pages ahead, not a whole group."""
    from icatdump.soap.client import SoapClient
    from icatdump.soap.server import serve
    from icatdump.dumpfile import DumpFileWriter
    client = build(new_catalogue(), members=3, datasets=1, files=900, collection=3)
    expected = dump_bytes(client, tmp_path)
    url = client.url
    client.close()
    monkeypatch.setattr(DumpFileWriter, "sort_run", 50)
    monkeypatch.setattr(DumpFileWriter, "prefetch_pages", 2)
    srv = serve(lambda: EmbeddedClient(url, max_entities=100))
    try:
        soap = SoapClient(srv.url)
        soap.login("simple", {"username": "root", "password": "secret"})
        pulled = [0]
        searched = []
        search = soap.search

        def recorded(*args, **kwargs):
            found = search(*args, **kwargs)
            if str(args[0]).startswith("SELECT o FROM Datafile"):
                searched.append((len(found), pulled[0]))
            return found
        soap.search = recorded
        original_writeobjs = DumpFileWriter.writeobjs

        def counted(objs):
            for obj in objs:
                if obj.type.name == "Datafile":
                    pulled[0] += 1
                    time.sleep(0.002)       # a writer slower than the searches
                yield obj

        def counting_writeobjs(self, objs, keyindex, **kw):
            original_writeobjs(self, counted(objs), keyindex, **kw)
        monkeypatch.setattr(DumpFileWriter, "writeobjs", counting_writeobjs)
        got = dump_bytes(soap, tmp_path, prefetch=True)
        soap.logout()
    finally:
        srv.shutdown()
    assert body(got) == body(expected)
    page = max(size for size, _ in searched)
    assert sum(size for size, _ in searched) == 900 and len(searched) > 10
    fetched = 0
    for size, done in searched:
        # When the thread searches again, it holds the pages queued and the
        # one it could not queue yet: never the whole group.
        assert fetched - done <= (2 + 1) * page
        fetched += size


def investigation_chunk(data: bytes, name: bytes) -> bytes:
    [chunk] = [c for c in xml_chunks(data)
               if re.search(rb'<investigation id="Investigation_[^"]*name-' + name, c)]
    return chunk


@pytest.mark.parametrize("how", ["investigation", "query"])
def test_selection_ingests_into_empty_catalogue(new_catalogue, tmp_path, example, how):
    """One investigation of the 6.2 example, selected, ingests into an empty
    catalogue, whose dump has that investigation's chunk unchanged."""
    client = new_catalogue()
    ingest_bytes(client, tmp_path, example("icatdump-6.2.xml").read_bytes())
    full = dump_bytes(client, tmp_path)
    if how == "investigation":
        selection = Selection(investigations=[("ESNF", "12100409-ST", "1.1-P")])
    else:
        selection = Selection(queries=["SELECT i FROM Investigation i WHERE i.name = '12100409-ST'"])
    part = dump_bytes(client, tmp_path, selection=selection)
    assert len(part) < len(full) / 2
    copy = new_catalogue()
    ingest_bytes(copy, tmp_path, part)
    again = dump_bytes(copy, tmp_path)
    assert investigation_chunk(again, b"12100409") == investigation_chunk(full, b"12100409")
    assert b"10100601" not in again      # the other investigations stay out


def test_selection_of_datafiles_by_query(new_catalogue, tmp_path, example):
    """A data collection selected by query brings its datafiles, their
    datasets and investigations: enough to ingest it on its own."""
    client = new_catalogue()
    ingest_bytes(client, tmp_path, example("icatdump-6.2.xml").read_bytes())
    part = dump_bytes(client, tmp_path, selection=Selection(
        queries=["SELECT o FROM DataCollection o"]))
    copy = new_catalogue()
    ingest_bytes(copy, tmp_path, part)
    assert len(copy.search("SELECT o FROM DataCollection o")) == \
        len(client.search("SELECT o FROM DataCollection o"))


def test_cli_options(new_catalogue, tmp_path, example):
    client = new_catalogue()
    ingest_bytes(client, tmp_path, example("icatdump-6.2.xml").read_bytes())
    out = tmp_path / "sel.xml"
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-w", client.url,
                        "-f", "XML", "-o", str(out), "--investigation", "12100409-ST:1.1-P",
                        "--max-entities", "50", "--chunk-size", "7", "-q"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"12100409" in out.read_bytes() and b"10100601" not in out.read_bytes()
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-w", client.url,
                        "--investigation", "nonesuch", "-q"], capture_output=True, timeout=60)
    assert r.returncode != 0 and b"nonesuch" in r.stderr and b"Traceback" not in r.stderr


def test_split_file_read_by_python_icat(new_catalogue, tmp_path, example):
    """python-icat 1.7.0's icatingest resolves a split file (chunks of 5
    objects) through the local server; the catalogue dumps as the example."""
    pytest.importorskip("icat")
    scripts = python_icat_sdist() / "src" / "scripts"
    from icatdump.soap.server import serve
    client = new_catalogue()
    src = example("icatdump-6.2.xml").read_bytes()
    ingest_bytes(client, tmp_path, src)
    split = tmp_path / "split.xml"
    split.write_bytes(dump_bytes(client, tmp_path, chunk_size=5))
    assert len(xml_chunks(split.read_bytes())) > len(xml_chunks(src)) + 10
    target = new_catalogue()
    srv = serve(lambda: EmbeddedClient(target.url))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICAT_")}
        env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), no_proxy="127.0.0.1,localhost")
        r = subprocess.run([sys.executable, str(scripts / "icatingest.py"), "-w",
                            srv.url + "?wsdl", "-a", "simple", "-u", "root", "-p", "secret",
                            "-f", "XML", "-i", str(split)],
                           env=env, cwd=str(tmp_path), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    finally:
        srv.shutdown()
    assert body(dump_bytes(EmbeddedClient(target.url), tmp_path)) == body(src)


def test_prefetch_over_soap_same_output(new_catalogue, tmp_path, example):
    """The prefetching thread (default over SOAP) does the chunks' searches
    and changes nothing in the file, also with pages shrunk by a small
    maxEntities."""
    from icatdump.soap.client import SoapClient
    from icatdump.soap.server import serve
    client = new_catalogue()
    ingest_bytes(client, tmp_path, example("icatdump-6.2.xml").read_bytes())
    url = client.url
    client.close()
    srv = serve(lambda: EmbeddedClient(url, max_entities=50))
    try:
        soap = SoapClient(srv.url)
        soap.login("simple", {"username": "root", "password": "secret"})
        assert soap.max_entities == 50
        threads = []
        search = soap.search

        def recorded_search(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return search(*args, **kwargs)
        soap.search = recorded_search
        with_thread = dump_bytes(soap, tmp_path, prefetch=True)
        ahead = sum(name.startswith("icatdump-prefetch") for name in threads)
        on_main = len(threads) - ahead
        del threads[:]
        without = dump_bytes(soap, tmp_path, prefetch=False)
        assert not any(name.startswith("icatdump-prefetch") for name in threads)
        assert ahead + on_main == len(threads)
        # The chunks' searches ran on the fetching thread; only the plan's
        # own (which chunks there are) and the change watch's fingerprints
        # before and after the dump on the main one.
        del threads[:]
        fingerprint(soap)
        watch = 2 * len(threads)
        del threads[:]
        for _ in plan(soap):
            pass
        assert ahead > 0 and on_main == len(threads) + watch, (ahead, on_main, len(threads))
        soap.logout()
    finally:
        srv.shutdown()
    assert with_thread == without or body(with_thread) == body(without)
    assert body(with_thread) == body(example("icatdump-6.2.xml").read_bytes())


def test_python_icat_style_writeobj_in_big_groups(new_catalogue, tmp_path, monkeypatch):
    """A writer that overrides ``writeobj`` as python-icat's writers do (and
    has no ``write_record``) gets every object of a group bigger than
    ``sort_run`` through that hook, in the order and with the values and
    keys it gets when the group is sorted in memory."""
    class KeyLineWriter(DumpFileWriter):
        """One line per object: key, attributes, related keys, children."""

        def head(self):
            self.outfile.write("head\n")

        def startdata(self):
            self.outfile.write("chunk\n")

        def finalize(self):
            self.outfile.write("end\n")

        def writeobj(self, key, obj, keyindex):
            self.outfile.write("%s %s\n" % (key, self._text(obj, keyindex)))
            self.objects_written += 1

        def _text(self, obj, keyindex):
            parts = []
            for name, value in sorted(obj.values.items()):
                if isinstance(value, list):
                    value = sorted(self._text(c, keyindex) for c in value)
                elif hasattr(value, "unique_key"):
                    value = value.unique_key(keyindex)
                parts.append("%s=%s" % (name, value))
            return "{%s}" % " ".join(parts)

    client = build(new_catalogue(), members=3, datasets=2, files=300, collection=3)
    add_parameters(client)

    def dumped() -> list[str]:
        out = tmp_path / ("lines-%d.txt" % len(list(tmp_path.iterdir())))
        with KeyLineWriter(client, str(out)) as writer:
            dump(client, writer)
        return out.read_text(encoding="utf-8").splitlines()

    in_memory = dumped()
    datafiles = [line for line in in_memory if line.startswith("Datafile_")]
    assert len(datafiles) == 600 and "parameters=['{" in datafiles[0]
    assert "dataset=Dataset_" in datafiles[0]
    runs = spilled_runs(monkeypatch, 37)
    assert dumped() == in_memory
    # Two datasets of 300 datafiles: 9 runs each, the last one short.
    assert runs == [37] * 8 + [4] + [37] * 8 + [4]


def test_max_entities_reaches_the_writer(new_catalogue, tmp_path):
    """``dump(max_entities=N)`` reaches the writer's searches when the
    client claims a bigger limit than its server allows: the pages of
    datafiles (the writer's) are sized under N from the start; without it
    the server refuses them (and they shrink)."""
    from icatdump.client import IcatError
    client = build(new_catalogue(), members=300, datasets=2, files=200, collection=100)
    expected = body(dump_bytes(client, tmp_path))

    class Overstated(EmbeddedClient):
        max_entities = property(lambda self: 10000)

    def refused(**kw) -> list:
        messages = []
        with Overstated(client.url, max_entities=100) as small:
            search = small.search

            def watched(*args, **kwargs):
                try:
                    return search(*args, **kwargs)
                except IcatError as exc:
                    messages.append((str(args[0]).split(" WHERE")[0], exc.message))
                    raise
            small.search = watched
            assert body(dump_bytes(small, tmp_path, **kw)) == expected
        return messages

    def datafile_pages(messages) -> list:
        return [query for query, _ in messages if query.startswith("SELECT o FROM Datafile")]

    assert datafile_pages(refused())
    assert datafile_pages(refused(max_entities=100)) == []
