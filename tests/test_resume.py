"""An interrupted ingest can simply be run again.

``icatingest`` is killed (SIGKILL: no cleanup at all) at several points,
then run again with ``--duplicate IGNORE``; the dump of the catalogue must
be byte-identical to the dump after an uninterrupted ingest.  Also: Ctrl-C
stops cleanly with exit 130 and a resume hint, re-running a complete ingest
creates nothing, identical objects without a uniqueness constraint are
neither lost nor doubled, CHECK compares by schema type, and a dump that
fails or is killed leaves no file under its name.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from icatdump.dump import dump
from icatdump.dumpfile import open_dumpfile
from icatdump.store import EmbeddedClient, init_catalogue

from test_bad_input import counts

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _generate(path, fmt, objects):
    spec = importlib.util.spec_from_file_location("generate", ROOT / "bench" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.generate(str(path), fmt, objects)


def ingest_cmd(db, path, *args):
    return [sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db), "-i", str(path),
            "-q", *args]


def ingest(db, path, *args):
    r = subprocess.run(ingest_cmd(db, path, *args), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    return r


def dump_body(db, tmp_path) -> bytes:
    """The XML dump of a catalogue without its date and service lines."""
    out = tmp_path / "dump.xml"
    with EmbeddedClient(str(db)) as client:
        with open_dumpfile(client, str(out), "XML", "w") as writer:
            dump(client, writer)
    return b"".join(l for l in out.read_bytes().splitlines(True)
                    if not l.lstrip().startswith((b"<date>", b"<service>")))


def next_id(db) -> int:
    """How many ids committed transactions have used (the catalogue's sequence)."""
    conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT value FROM icatdump_meta WHERE key = 'next_id'")
                   .fetchone()[0])
    finally:
        conn.close()


def new_catalogue(tmp_path, name) -> pathlib.Path:
    db = tmp_path / name
    init_catalogue(str(db))
    return db


def kill_after(db, path, ids: int, delay: float = 0.0, *args, commit_size: int = 1) -> bool:
    """Start an ingest and SIGKILL it once ``ids`` ids are committed (plus
    ``delay`` seconds, to land inside a chunk).  False if it finished first.
    It commits every chunk, or (``commit_size``) groups of chunks."""
    cmd = ingest_cmd(db, path, "--batch-size", "20", "--commit-size", str(commit_size), *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if os.path.exists(db) and next_id(db) > ids:
                if delay:
                    time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        return proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def files(tmp_path_factory, example):
    tmp = tmp_path_factory.mktemp("resume")
    big = tmp / "gen.xml"
    _generate(big, "XML", 3000)
    out = {}
    for name, path in (("example", example("icatdump-6.2.xml")), ("generated", big)):
        db = new_catalogue(tmp, name + ".sqlite")
        ingest(db, path)
        out[name] = (path, dump_body(db, tmp), counts(db))
    return out


@pytest.mark.parametrize("name, ids, delay, commit_size", [
    ("example", 1, 0.0, 1), ("example", 1, 0.05, 1), ("example", 300, 0.0, 1),
    ("generated", 1, 0.0, 1), ("generated", 800, 0.01, 1), ("generated", 2000, 0.0, 1),
    # Commits of several chunks together: killed between and inside groups.
    ("generated", 1, 0.0, 400), ("generated", 800, 0.01, 400), ("generated", 1500, 0.0, 400),
])
def test_killed_ingest_resumes_to_the_same_catalogue(files, tmp_path, name, ids, delay,
                                                     commit_size):
    path, expected, full = files[name]
    db = new_catalogue(tmp_path, "c.sqlite")
    killed = kill_after(db, path, ids, delay, commit_size=commit_size)
    if killed and not delay:
        assert counts(db) != full   # it really stopped half-way
    ingest(db, path, "--duplicate", "IGNORE")
    assert counts(db) == full
    assert dump_body(db, tmp_path) == expected


@pytest.mark.parametrize("name, fewer", [("example", 2), ("generated", 5)])
def test_objects_partly_there_found_in_few_searches(files, tmp_path, name, fewer):
    """Objects missing here and there -- top-level ones, embedded children,
    whole datasets with their datafiles -- are created by the re-run, the
    others found: in about one search per type and chunk, not one per
    object (python-icat's example has some fifty types in 439 objects)."""
    from icatdump.ingest import ingest as run_ingest
    path, expected, full = files[name]
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, path)
    with EmbeddedClient(str(db)) as client:
        # Not what data collections hold: one that lost a member no longer
        # matches its definition in the file (it is matched by content).
        held = {o.datafile.id for o in client.search(
            "SELECT o FROM DataCollectionDatafile o INCLUDE o.datafile.dataset")}
        held |= {o.dataset.id for o in client.search(
            "SELECT o FROM DataCollectionDataset o INCLUDE o.dataset")}
        held |= {o.datafile.dataset.id for o in client.search(
            "SELECT o FROM DataCollectionDatafile o INCLUDE o.datafile.dataset")}
        doomed = []
        for query, every in (("SELECT o FROM Datafile o", 3), ("SELECT o FROM Dataset o", 4),
                             ("SELECT o FROM Keyword o", 2), ("SELECT o FROM User o", 5),
                             ("SELECT o FROM InvestigationUser o", 3),
                             ("SELECT o FROM UserGroup o", 2)):
            doomed += [o for o in client.search(query) if o.id not in held][::every]
        client.delete_many(doomed)
        left = counts(db)
        assert left != full
        searches = []
        search = client.search

        def counted(*args, **kwargs):
            searches.append(args[0])
            return search(*args, **kwargs)
        client.search = counted
        with open_dumpfile(client, str(path), "XML", "r") as reader:
            stats = run_ingest(client, reader, "IGNORE")
    assert counts(db) == full
    assert dump_body(db, tmp_path) == expected
    created = sum(stats.created.values())
    assert created == sum(full.values()) - sum(left.values())
    assert created + sum(stats.skipped.values()) == stats.objects
    assert len(searches) * fewer < stats.objects, (len(searches), stats.objects)


def test_lookups_refused_by_the_server_are_split(files, tmp_path):
    """A server that allows fewer objects per search than it says: the
    batched lookups it refuses are tried again in halves, and the re-run
    of a complete ingest still finds everything."""
    from icatdump.client import IcatError
    from icatdump.ingest import ingest as run_ingest

    class Overstated(EmbeddedClient):
        max_entities = property(lambda self: 10000)
    path, expected, full = files["generated"]
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, path)
    refused = []
    with Overstated(str(db), max_entities=40) as client:
        search = client.search

        def watched(*args, **kwargs):
            try:
                return search(*args, **kwargs)
            except IcatError as exc:
                refused.append(exc.message)
                raise
        client.search = watched
        with open_dumpfile(client, str(path), "XML", "r") as reader:
            stats = run_ingest(client, reader, "IGNORE")
    assert refused and all("more than 40" in m for m in refused)
    assert not stats.created and counts(db) == full
    assert dump_body(db, tmp_path) == expected


def test_killed_twice_then_resumed_with_check(files, tmp_path):
    path, expected, full = files["generated"]
    db = new_catalogue(tmp_path, "c.sqlite")
    kill_after(db, path, 500)
    kill_after(db, path, 1500, 0.0, "--duplicate", "IGNORE")
    ingest(db, path, "--duplicate", "CHECK")
    assert dump_body(db, tmp_path) == expected


@pytest.mark.parametrize("mode", ["IGNORE", "CHECK", "OVERWRITE"])
def test_rerun_of_a_complete_ingest_creates_nothing(files, tmp_path, mode):
    path, expected, full = files["example"]
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, path)
    before = next_id(db)
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db), "-i",
                        str(path), "--duplicate", mode], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert b" 0 created" in r.stderr
    assert next_id(db) == before
    assert dump_body(db, tmp_path) == expected


def test_check_compares_by_schema_type(example, tmp_path):
    """XML in, then CHECK with the YAML file: YAML booleans, numbers and
    dates equal the stored values (python-icat crashes on the booleans)."""
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, example("icatdump-6.2.xml"))
    before = next_id(db)
    ingest(db, example("icatdump-6.2.yaml"), "--duplicate", "CHECK")
    assert next_id(db) == before


def test_check_reports_a_difference(example, tmp_path):
    db = new_catalogue(tmp_path, "c.sqlite")
    src = example("icatdump-6.2.xml").read_text()
    changed = tmp_path / "changed.xml"
    changed.write_text(src.replace("<fullName>Aelius Cordus</fullName>",
                                   "<fullName>A. Cordus</fullName>"))
    ingest(db, example("icatdump-6.2.xml"))
    r = subprocess.run(ingest_cmd(db, changed, "--duplicate", "CHECK"), capture_output=True,
                       timeout=300)
    assert r.returncode == 1
    assert b"chunk 1, User_name-db=2Facord: OBJECT_ALREADY_EXISTS: User differs from the " \
           b"catalogue in fullName: 'A. Cordus' != 'Aelius Cordus'" in r.stderr
    ingest(db, changed, "--duplicate", "OVERWRITE")
    with EmbeddedClient(str(db)) as client:
        (user,) = client.search("SELECT u FROM User u WHERE u.name = 'db/acord'")
    assert user.values["fullName"] == "A. Cordus"


XML_HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
            '  <apiversion>6.2.0</apiversion>\n</head>\n')


@pytest.mark.parametrize("doi", ["", "<doi>same</doi>"])
def test_unconstrained_objects_neither_lost_nor_doubled(tmp_path, doi):
    """Identical rules, data collections told apart only by their children,
    a job referring to one: each stands for one object, on every re-run.
    (With a DOI the collections are searched for together.)"""
    dc = ('  <dataCollection id="DataCollection_%08d">' + doi + '\n%s  </dataCollection>\n')
    member = ('    <dataCollectionDatasets><dataset ref="Dataset_investigation-'
              '(facility-(name-F)_name-I_visitId-V)_name-%s"/></dataCollectionDatasets>\n')
    text = XML_HEAD + "<data>\n" + "".join(
        '  <rule id="Rule_%08d"><crudFlags>R</crudFlags><what>Facility</what></rule>\n' % i
        for i in (1, 2)) + (
        '  <facility id="Facility_name-F"><name>F</name></facility>\n'
        '  <datasetType id="DatasetType_facility-(name-F)_name-raw"><name>raw</name>'
        '<facility ref="Facility_name-F"/></datasetType>\n'
        '  <investigationType id="t"><name>T</name><facility ref="Facility_name-F"/>'
        '</investigationType>\n'
        '  <application id="app"><name>app</name><version>1</version>'
        '<facility ref="Facility_name-F"/></application>\n'
        '</data>\n<data>\n'
        '  <investigation id="inv"><name>I</name><title>t</title><visitId>V</visitId>'
        '<facility ref="Facility_name-F"/>'
        '<type ref="InvestigationType_facility-(name-F)_name-T"/>'
        '<publications><fullReference>same</fullReference></publications>'
        '<publications><fullReference>same</fullReference></publications>'
        + "".join('<datasets><name>%s</name><type ref="DatasetType_facility-(name-F)_name-raw"/>'
                  '</datasets>' % n for n in "ab")
        + '</investigation>\n</data>\n<data>\n'
        + dc % (1, member % "a") + dc % (2, member % "b") + dc % (3, member % "a")
        + dc % (4, "")
        + '  <job id="Job_00000001"><arguments>x</arguments>'
          '<application ref="Application_facility-(name-F)_name-app_version-1"/>'
          '<inputDataCollection ref="DataCollection_00000002"/></job>\n'
        '</data>\n</icatdata>\n')
    path = tmp_path / "unconstrained.xml"
    path.write_text(text)
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, path)
    expected = {"Rule": 2, "Facility": 1, "DatasetType": 1, "InvestigationType": 1,
                "Investigation": 1, "Publication": 2, "Dataset": 2, "DataCollection": 4,
                "DataCollectionDataset": 3, "Job": 1, "Application": 1}
    assert counts(db) == expected
    body = dump_body(db, tmp_path)
    for mode in ("IGNORE", "CHECK", "OVERWRITE"):
        ingest(db, path, "--duplicate", mode)
        assert counts(db) == expected
    assert dump_body(db, tmp_path) == body
    # One rule and a data collection lost: the re-run brings back exactly those.
    with EmbeddedClient(str(db)) as client:
        rule = client.search("SELECT r FROM Rule r")[0]
        coll = client.search("SELECT c FROM DataCollection c JOIN c.dataCollectionDatasets d "
                             "JOIN d.dataset s WHERE s.name = 'b'")[0]
        client.delete_many([rule, coll])   # the job goes with its collection
    ingest(db, path, "--duplicate", "IGNORE")
    assert counts(db) == expected


@pytest.mark.parametrize("commit_size", [1, 400])
def test_sigint_stops_cleanly_and_says_how_to_resume(files, tmp_path, commit_size):
    path, expected, full = files["generated"]
    db = new_catalogue(tmp_path, "c.sqlite")
    proc = subprocess.Popen(ingest_cmd(db, path, "--batch-size", "5",
                                       "--commit-size", str(commit_size)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and next_id(db) <= 300:
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "icatingest: error: interrupted" in err
    assert "chunks ingested; run again with --duplicate IGNORE to resume" in err
    assert counts(db) != full
    ingest(db, path, "--duplicate", "IGNORE")
    assert dump_body(db, tmp_path) == expected


# -- dumps: never a partial file under the final name -------------------------

class FailingClient:
    """An embedded catalogue whose searches fail after ``n`` calls."""

    def __init__(self, client, n):
        self._client, self._n = client, n

    def __getattr__(self, name):
        return getattr(self._client, name)

    def search(self, query):
        self._n -= 1
        if self._n < 0:
            raise ConnectionError("the catalogue went away")
        return self._client.search(query)


def test_failed_dump_leaves_the_old_file(example, tmp_path):
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, example("icatdump-6.2.xml"))
    out = tmp_path / "out.xml"
    out.write_text("the good old dump\n")
    with EmbeddedClient(str(db)) as client:
        with pytest.raises(ConnectionError):
            with open_dumpfile(FailingClient(client, 5), str(out), "XML", "w") as writer:
                dump(writer.client, writer)
    assert out.read_text() == "the good old dump\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite", "c.sqlite-shm",
                                                          "c.sqlite-wal", "out.xml"] \
        or sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite", "out.xml"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_dump_leaves_the_old_file(files, tmp_path, sig):
    path, expected, full = files["generated"]
    db = new_catalogue(tmp_path, "c.sqlite")
    ingest(db, path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "dump.xml"
    out.write_text("the good old dump\n")
    proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli.dump", "-w", str(db),
                             "-f", "XML", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        parts = [p for p in outdir.iterdir() if p.name.endswith(".part")]
        if parts and parts[0].stat().st_size > 0:
            # Frozen in the middle of writing: a dump of 3000 objects takes
            # a fraction of a second, and must not finish in between.
            proc.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.001)
    assert proc.poll() is None, "the dump finished before it could be interrupted"
    assert out.read_text() == "the good old dump\n", "the dump finished before it was frozen"
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert out.read_text() == "the good old dump\n"
    left = sorted(p.name for p in outdir.iterdir())
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert b"Traceback" not in err
        assert left == ["dump.xml"]     # the partial file is removed
    else:
        # Nothing can clean up at SIGKILL: the partial file keeps its
        # hidden temporary name, never the final one, with the dead pid in it ...
        partial = [n for n in left if n != "dump.xml"]
        assert "dump.xml" in left and len(partial) == 1
        assert partial[0].startswith(".dump.xml.%d." % proc.pid) and partial[0].endswith(".part")
        # ... and the next dump to that name removes it, saying so.
        again = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-q", "-w",
                                str(db), "-f", "XML", "-o", str(out)],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert sorted(p.name for p in outdir.iterdir()) == ["dump.xml"]
        assert again.stderr == "removed %s, the partial file of a dump that did not finish " \
            "(process %d)\n" % (outdir / partial[0], proc.pid)
        assert out.read_bytes() != b"the good old dump\n"


def test_partial_file_of_a_running_dump_is_left_alone(tmp_path):
    """Another dump to the same name, still running (here: this process),
    keeps its partial file."""
    from icatdump.atomic import partial_file
    mine = tmp_path / (".out.xml.%d.abcd.part" % os.getpid())
    mine.write_text("in progress")
    fd, name = partial_file(str(tmp_path / "out.xml"))
    os.close(fd)
    assert mine.exists() and pathlib.Path(name).exists() and pathlib.Path(name) != mine


@pytest.mark.parametrize("batch_size", ["1", "500"])
def test_object_defined_twice_in_a_chunk_is_created_once_with_ignore(tmp_path, batch_size):
    """python-icat creates objects one by one, so with IGNORE the second
    definition of an object uses the first -- whether or not a batch
    boundary falls between them; THROW refuses the second."""
    path = tmp_path / "twice.xml"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
        '  <apiversion>6.2.0</apiversion>\n</head>\n<data>\n'
        '  <facility id="f1">\n    <name>ESNF</name>\n  </facility>\n'
        '  <instrument id="i">\n    <name>E2</name>\n    <facility ref="f1"/>\n  </instrument>\n'
        '  <facility id="f2">\n    <fullName>again</fullName>\n    <name>ESNF</name>\n'
        '  </facility>\n'
        '  <investigationType id="t">\n    <name>Exp</name>\n    <facility ref="f2"/>\n'
        '  </investigationType>\n</data>\n</icatdata>\n')
    db = new_catalogue(tmp_path, "c.sqlite")
    r = subprocess.run(ingest_cmd(db, path, "--batch-size", batch_size), capture_output=True)
    assert r.returncode == 1 and b"OBJECT_ALREADY_EXISTS" in r.stderr
    assert counts(db) == {}
    r = ingest(db, path, "--duplicate", "IGNORE", "--batch-size", batch_size)
    assert counts(db) == {"Facility": 1, "Instrument": 1, "InvestigationType": 1}
    with EmbeddedClient(str(db)) as client:
        [it] = client.search("SELECT t FROM InvestigationType t INCLUDE t.facility")
        [inst] = client.search("SELECT i FROM Instrument i INCLUDE i.facility")
        assert it.facility.id == inst.facility.id


def _names_without_case(db, table):
    """Rebuild ``table`` with its name column compared without case, as on
    an ICAT whose database collation ignores case (MySQL's usual one)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        indexes = [r[0] for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
        conn.execute("DROP TABLE %s" % table)
        conn.execute(sql.replace('"name" TEXT', '"name" TEXT COLLATE NOCASE'))
        for index in indexes:
            conn.execute(index)
    finally:
        conn.close()


def _files_xml(*names):
    files = "".join(
        '  <datafile id="f%d">\n    <name>%s</name>\n    <dataset ref="ds"/>\n  </datafile>\n'
        % (i, n) for i, n in enumerate(names))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
            '  <apiversion>6.2.0</apiversion>\n</head>\n<data>\n'
            '  <facility id="fac">\n    <name>F</name>\n  </facility>\n'
            '  <investigationType id="it">\n    <name>E</name>\n    <facility ref="fac"/>\n'
            '  </investigationType>\n'
            '  <datasetType id="dt">\n    <name>raw</name>\n    <facility ref="fac"/>\n'
            '  </datasetType>\n'
            '  <investigation id="inv">\n    <name>I</name>\n    <title>T</title>\n'
            '    <visitId>1</visitId>\n    <facility ref="fac"/>\n    <type ref="it"/>\n'
            '  </investigation>\n'
            '  <dataset id="ds">\n    <name>D</name>\n    <investigation ref="inv"/>\n'
            '    <type ref="dt"/>\n  </dataset>\n' + files + '</data>\n</icatdata>\n')


def test_names_differing_in_case_are_found_where_the_catalogue_ignores_case(tmp_path):
    """A re-run whose file spells names in another case than the catalogue
    holds them: a server that compares without case returns the catalogue's
    objects for them, and they count as present (python-icat's search by key
    finds them the same way) instead of failing as duplicates."""
    db = new_catalogue(tmp_path, "c.sqlite")
    _names_without_case(db, "Datafile")
    first, second = tmp_path / "first.xml", tmp_path / "second.xml"
    first.write_text(_files_xml("A.nxs", "b.nxs", "C.nxs"))
    second.write_text(_files_xml("a.nxs", "B.nxs", "C.nxs", "d.nxs"))
    ingest(db, first)
    r = ingest(db, second, "--duplicate", "IGNORE")
    assert counts(db)["Datafile"] == 4
    with EmbeddedClient(str(db)) as client:
        names = sorted(f.name for f in client.search("SELECT f FROM Datafile f"))
    assert names == ["A.nxs", "C.nxs", "b.nxs", "d.nxs"]
    assert r.returncode == 0
