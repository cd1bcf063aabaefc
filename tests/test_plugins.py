"""Format backends from plugin packages (entry-point group ``icatdump.backends``).

* the example plugin ``examples/icatdump-sqlite`` is built and pip-installed
  into a directory of its own (``pip install --target``), which only the
  subprocesses that should see it get on their PYTHONPATH: the test
  environment itself stays clean, and nothing needs uninstalling;
* python-icat's 6.2 example goes YAML → catalogue → SQLITE file → fresh
  catalogue → YAML and comes out as it went in;
* a plugin that fails to load warns once, in one line, and XML and YAML
  keep working; an in-code ``register_backend`` wins over an entry point of
  the same name; format names are found in any letter case;
* ``--list-formats`` shows every format with its origin.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import logging
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from icatdump import dumpfile
from icatdump.dumpfile import (BackendOrigins, Backends, discover_backends, get_backend,
                               register_backend)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "icatdump-sqlite"
HEADER = (b"# Date:", b"# Service:", b"# ICAT-API:", b"# Generator:")


def body(data: bytes) -> list[bytes]:
    """A YAML data file's lines without the four header lines."""
    return [line for line in data.splitlines() if not line.startswith(HEADER)]


def _can_build_offline() -> bool:
    """Can pip build the plugin with what is installed (--no-build-isolation)?

    setuptools before 70.1 needs the ``wheel`` package for that.
    """
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def run_python(args, site=None):
    """Run ``python args...`` with ``site`` (a plugin directory) importable;
    it must succeed."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site:
        env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> pathlib.Path:
    """The example plugin, pip-installed into a directory of its own."""
    target = tmp_path_factory.mktemp("plugin-site")
    build = tmp_path_factory.mktemp("plugin-src") / "icatdump-sqlite"
    # Build from a copy: a build leaves build/ and *.egg-info next to setup.cfg.
    shutil.copytree(PLUGIN, build, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    run_python(["-m", "pip", "install", "--no-deps", "-q", *isolation,
                "--target", str(target), str(build)])
    assert list(target.glob("icatdump_sqlite-*.dist-info"))
    return target


@pytest.fixture(scope="module")
def sqlite_plugin(plugin_site):
    """The installed plugin module, loaded in this process without putting
    its directory on sys.path (which would let discovery find it)."""
    init = plugin_site / "icatdump_sqlite" / "__init__.py"
    spec = importlib.util.spec_from_file_location("icatdump_sqlite", init)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- (a) the example plugin: a full round trip ----------------------------------

ROUNDTRIP = r"""
import json, sys
from icatdump.dump import dump
from icatdump.dumpfile import BackendOrigins, open_dumpfile
from icatdump.ingest import ingest
from icatdump.store import EmbeddedClient, init_catalogue

src, tmp = sys.argv[1], sys.argv[2]

def catalogue(name):
    init_catalogue(tmp + "/" + name, "6.2")
    return EmbeddedClient(tmp + "/" + name)

first = catalogue("first.sqlite")
with open_dumpfile(first, src, "YAML", "r") as reader:
    ingest(first, reader)
with open_dumpfile(first, tmp + "/dump.sqlite", "SQLITE", "w") as writer:
    dump(first, writer)
second = catalogue("second.sqlite")
with open_dumpfile(second, tmp + "/dump.sqlite", "sqlite", "r") as reader:
    stats = ingest(second, reader)
with open_dumpfile(second, tmp + "/out.yaml", "YAML", "w") as writer:
    dump(second, writer)
print(json.dumps({"origin": BackendOrigins["SQLITE"], "chunks": stats.chunks}))
"""


def test_sqlite_plugin_roundtrip(plugin_site, example, tmp_path):
    src = example("icatdump-6.2.yaml")
    proc = run_python(["-c", ROUNDTRIP, str(src), str(tmp_path)], site=plugin_site)
    result = json.loads(proc.stdout)
    assert result["origin"] == "icatdump_sqlite (icatdump-sqlite)"
    assert result["chunks"] > 5
    assert body((tmp_path / "out.yaml").read_bytes()) == body(src.read_bytes())
    assert proc.stderr == ""

    # The dump is a plain SQLite database, laid out as the plugin's README says.
    db = sqlite3.connect(tmp_path / "dump.sqlite")
    date, service, apiversion, generator = db.execute("SELECT * FROM header").fetchone()
    assert apiversion == "6.2.0" and generator.startswith("icatdump")
    users = db.execute("SELECT i.name, u.user, u.role FROM investigation i "
                       "JOIN investigationUser u ON u._parent = i._seq "
                       "WHERE u._relation = 'investigationUsers'").fetchall()
    assert ("08100122-EF", "User_name-db=2Fjbotu", "Principal Investigator") in users
    chunks = [c for (c,) in db.execute("SELECT DISTINCT _chunk FROM investigation")]
    assert len(chunks) == 3
    if shutil.which("sqlite3"):
        out = subprocess.run(["sqlite3", str(tmp_path / "dump.sqlite"),
                              "SELECT count(*) FROM rule"], capture_output=True, text=True)
        assert out.stdout.strip() == "161"


def test_sqlite_plugin_streams(sqlite_plugin, example):
    """Not a file on disk on either side: an in-memory stream in and out."""
    from icatdump.offline import OfflineClient
    from icatdump.dumpfile import open_dumpfile
    from icatdump.schema import Schema

    schema = Schema.for_version("6.2")
    src = example("icatdump-6.2.yaml")
    client = OfflineClient(schema)
    out = io.BytesIO()
    with open_dumpfile(client, str(src), "YAML", "r") as reader, \
            sqlite_plugin.writer(client, out) as writer:
        for chunk in reader.chunks():
            writer.startdata()
            index = {}
            for key, obj in reader.getobjs_from_data(chunk, index):
                client.create(obj)
                reader.index_object(index, key, obj)
                writer.writeobj(key, obj, {})
    assert out.getvalue().startswith(b"SQLite format 3\0")

    back = OfflineClient(schema)
    reader = sqlite_plugin.reader(back, io.BytesIO(out.getvalue()))
    tags = [raw.tag for chunk in reader.chunks() for raw in reader.parse_chunk(chunk)]
    assert tags[0] == "user" and tags[-1] == "job" and "investigationUser" not in tags


def test_sqlite_plugin_refuses_other_files(sqlite_plugin, tmp_path):
    from icatdump.offline import OfflineClient
    from icatdump.schema import Schema

    bad = tmp_path / "not.sqlite"
    bad.write_bytes(b"%YAML 1.1\n---\n")
    reader = sqlite_plugin.reader(OfflineClient(Schema.for_version("6.2")), str(bad))
    with pytest.raises(dumpfile.DataFileError, match="not an icatdump SQLite file"):
        list(reader.chunks())


def test_cli_dumps_with_the_plugin(plugin_site, example, tmp_path):
    src = example("icatdump-6.2.yaml")
    cat = tmp_path / "cat.sqlite"
    run_python(["-m", "icatdump.cli.data", "init", str(cat)], site=plugin_site)
    run_python(["-m", "icatdump.cli.ingest", "-q", "-w", str(cat), "-i", str(src)],
               site=plugin_site)
    run_python(["-m", "icatdump.cli.dump", "-q", "-w", str(cat), "-f", "sqlite",
                "-o", str(tmp_path / "dump.sqlite")], site=plugin_site)
    db = sqlite3.connect(tmp_path / "dump.sqlite")
    assert db.execute("SELECT count(*) FROM investigation").fetchone() == (3,)


def test_cli_ingests_and_converts_with_the_plugin(plugin_site, example, tmp_path):
    """icatingest -f SQLITE and icatdata convert from/to SQLITE, by path and
    from standard input, give back the example as it went in."""
    src = example("icatdump-6.2.yaml")
    dump_file = tmp_path / "dump.sqlite"
    run_python(["-m", "icatdump.cli.data", "convert", "-q", str(src), str(dump_file)],
               site=plugin_site)
    assert dump_file.read_bytes().startswith(b"SQLite format 3\0")
    for name, how in (("path", ["-i", str(dump_file)]), ("stdin", ["-i", "-"])):
        cat = tmp_path / ("%s.sqlite" % name)
        run_python(["-m", "icatdump.cli.data", "init", str(cat)], site=plugin_site)
        with open(dump_file, "rb") as stdin:
            env = dict(os.environ, PYTHONPATH=str(plugin_site))
            proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q",
                                   "-w", str(cat), "-f", "SQLITE", *how], stdin=stdin,
                                  capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / ("%s.yaml" % name)
        run_python(["-m", "icatdump.cli.dump", "-q", "-w", str(cat), "-o", str(out)],
                   site=plugin_site)
        assert body(out.read_bytes()) == body(src.read_bytes())
    back = tmp_path / "back.yaml"
    run_python(["-m", "icatdump.cli.data", "convert", "-q", "-f", "SQLITE",
                str(dump_file), str(back)], site=plugin_site)
    assert body(back.read_bytes()) == body(src.read_bytes())


def test_cli_plugin_format_errors(plugin_site, tmp_path):
    """Under -f SQLITE: an empty file, another SQLite database (a catalogue)
    and a file of no known format are exit 1, a YAML file exit 2 (the
    plugin's sniff says it is not one of its files); the cause on the first
    line (a hint may follow), no traceback."""
    cat = tmp_path / "cat.sqlite"
    run_python(["-m", "icatdump.cli.data", "init", str(cat)], site=plugin_site)
    empty, yaml_file, text = tmp_path / "empty.sqlite", tmp_path / "a.yaml", tmp_path / "a.txt"
    empty.write_bytes(b"")
    yaml_file.write_text("%YAML 1.1\n---\n")
    text.write_text("hello\n")
    env = dict(os.environ, PYTHONPATH=str(plugin_site))
    for path, message, code in (
            (empty, "file is empty", 1),
            (cat, "not an ICAT data file (not SQLITE)", 1),
            (text, "not an ICAT data file (not SQLITE)", 1),
            (yaml_file, "-f SQLITE given, but the file looks like YAML", 2)):
        proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q", "-w",
                               str(cat), "-f", "SQLITE", "-i", str(path)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == code, proc.stderr
        lines = proc.stderr.splitlines()
        assert message in lines[0] and str(path) in lines[0] and len(lines) <= 3, proc.stderr
        assert "Traceback" not in proc.stderr


def test_cli_sniffs_the_plugin_format(plugin_site, example, tmp_path):
    """The example plugin offers sniff: its dumps, plain and gzip-compressed,
    are found without -f by icatdata info, check and convert and icatingest;
    another SQLite file (a catalogue) is not taken for one."""
    src = example("icatdump-6.2.yaml")
    dump_file, packed = tmp_path / "dump.sqlite", tmp_path / "dump.gz"
    run_python(["-m", "icatdump.cli.data", "convert", "-q", str(src), str(dump_file)],
               site=plugin_site)
    packed.write_bytes(gzip.compress(dump_file.read_bytes()))
    want = json.loads(run_python(["-m", "icatdump.cli.data", "info", "--json", str(src)],
                                 site=plugin_site).stdout)
    for path in (dump_file, packed):
        info = json.loads(run_python(["-m", "icatdump.cli.data", "info", "--json", str(path)],
                                     site=plugin_site).stdout)
        assert info["format"] == "SQLITE" and info["header"] == {}
        for k in ("chunks", "objects", "top_level", "embedded"):
            assert info[k] == want[k], k
        proc = run_python(["-m", "icatdump.cli.data", "check", str(path)], site=plugin_site)
        assert "no problems" in proc.stderr
        back = tmp_path / "back.yaml"
        run_python(["-m", "icatdump.cli.data", "convert", "-q", str(path), str(back)],
                   site=plugin_site)
        assert body(back.read_bytes()) == body(src.read_bytes())
    cat = tmp_path / "cat.sqlite"
    run_python(["-m", "icatdump.cli.data", "init", str(cat)], site=plugin_site)
    run_python(["-m", "icatdump.cli.ingest", "-q", "-w", str(cat), "-i", str(packed)],
               site=plugin_site)
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "info", str(cat)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(plugin_site)))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["icatdata: error: %s: not an ICAT data file "
                                        "(none of PORT, XML, YAML, SQLITE)" % cat]


# -- (b), (c): the registry -----------------------------------------------------

def fake_dist(site: pathlib.Path, name: str, entry_points: dict[str, str],
              modules: dict[str, str]) -> pathlib.Path:
    """An installed distribution as importlib.metadata sees it, made by hand."""
    info = site / ("%s-1.0.dist-info" % name.replace("-", "_"))
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n" % name)
    (info / "entry_points.txt").write_text(
        "[icatdump.backends]\n" + "".join("%s = %s\n" % kv for kv in entry_points.items()))
    for module, code in modules.items():
        (site / (module + ".py")).write_text(textwrap.dedent(code))
    return site


BROKEN = {"broken_fmt": "raise ImportError('needs the frobnicate library')\n",
          "readerless_fmt": "writer = object\n"}


@pytest.fixture
def broken_site(tmp_path) -> pathlib.Path:
    return fake_dist(tmp_path / "broken", "broken-formats",
                     {"BROKEN": "broken_fmt", "READERLESS": "readerless_fmt"}, BROKEN)


@pytest.fixture
def fresh_registry(monkeypatch):
    """Discovery not yet run; the registry as it was afterwards."""
    saved = dict(Backends), dict(BackendOrigins)
    Backends.clear()
    BackendOrigins.clear()
    monkeypatch.setattr("icatdump.registry._discovered", False)
    yield
    for registry, copy in zip((Backends, BackendOrigins), saved):
        registry.clear()
        registry.update(copy)


def test_broken_plugin_warns_once_in_process(broken_site, fresh_registry, monkeypatch,
                                             caplog):
    monkeypatch.syspath_prepend(str(broken_site))
    with caplog.at_level(logging.WARNING, logger="icatdump.plugins"):
        discover_backends()
        discover_backends()
        assert get_backend("xml")[0].__module__ == "icatdump.backends.xml"
        assert get_backend("Yaml")[0].__module__ == "icatdump.backends.yaml"
        with pytest.raises(ValueError, match="unknown data file format 'BROKEN'"):
            get_backend("BROKEN")
    messages = sorted(r.getMessage() for r in caplog.records)
    assert messages == [
        "icatdump: format plugin BROKEN = broken_fmt (broken-formats) skipped: "
        "ImportError: needs the frobnicate library",
        "icatdump: format plugin READERLESS = readerless_fmt (broken-formats) skipped: "
        "AttributeError: module 'readerless_fmt' has no attribute 'reader'",
    ]
    assert sorted(Backends) == ["PORT", "XML", "YAML"]


def test_broken_plugin_leaves_the_cli_working(broken_site, example, tmp_path):
    """Through the commands: XML and YAML convert, one line per broken plugin."""
    src = example("icatdump-6.2.yaml")
    proc = run_python(["-m", "icatdump.cli.data", "convert", "-q", str(src),
                       str(tmp_path / "out.xml")], site=broken_site)
    expected = example("icatdump-6.2.xml").read_bytes()
    strip = (b"<date>", b"<service>", b"<apiversion>", b"<generator>")
    assert [l for l in (tmp_path / "out.xml").read_bytes().splitlines()
            if not l.lstrip().startswith(strip)] == \
        [l for l in expected.splitlines() if not l.lstrip().startswith(strip)]
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert sum("BROKEN = broken_fmt" in l and "frobnicate" in l for l in lines) == 1
    assert sum("READERLESS = readerless_fmt" in l for l in lines) == 1

    proc = run_python(["-m", "icatdump.cli.dump", "--list-formats"], site=broken_site)
    assert [l.split()[0] for l in proc.stdout.splitlines()] == ["PORT", "XML", "YAML"]
    assert len(proc.stderr.splitlines()) == 2, proc.stderr


class CodeReader(dumpfile.DumpFileReader):
    pass


class CodeWriter(dumpfile.DumpFileWriter):
    pass


FAKE = {"fake_fmt": """
    from icatdump.dumpfile import DumpFileReader, DumpFileWriter
    class reader(DumpFileReader): pass
    class writer(DumpFileWriter): pass
"""}


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = fake_dist(tmp_path / "fake", "fake-format", {"FAKE": "fake_fmt"}, FAKE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fake_fmt", raising=False)
    return site


def test_register_backend_before_discovery_wins(fake_site, fresh_registry):
    register_backend("fake", CodeReader, CodeWriter)
    discover_backends()
    assert get_backend("FAKE") == (CodeReader, CodeWriter)
    assert get_backend("fake") == (CodeReader, CodeWriter)
    assert "fake_fmt" not in sys.modules        # the entry point was never loaded
    assert sorted(Backends) == ["PORT", "XML", "YAML", "fake"]     # listed as registered
    assert BackendOrigins["fake"] == "registered in code by %s" % __name__


def test_register_backend_after_discovery_wins(fake_site, fresh_registry):
    discover_backends()
    assert get_backend("fake")[0].__module__ == "fake_fmt"
    assert BackendOrigins["FAKE"] == "fake_fmt (fake-format)"
    register_backend("FAKE", CodeReader, CodeWriter)
    assert get_backend("Fake") == (CodeReader, CodeWriter)
    assert sorted(Backends) == ["FAKE", "PORT", "XML", "YAML"]


def test_register_backend_replaces_a_builtin_in_any_case(fresh_registry):
    register_backend("xml", CodeReader, CodeWriter)
    discover_backends()
    assert get_backend("XML") == (CodeReader, CodeWriter)
    assert sorted(Backends) == ["PORT", "YAML", "xml"]


# -- (d) --list-formats ------------------------------------------------------------

def test_list_formats_builtin_only():
    proc = run_python(["-m", "icatdump.cli.dump", "--list-formats"])
    assert proc.stdout.splitlines() == [
        "PORT     icatdump.backends.port (icatdump)",
        "XML      icatdump.backends.xml (icatdump)",
        "YAML     icatdump.backends.yaml (icatdump)",
    ]
    assert proc.stderr == ""


def test_list_formats_with_the_plugin(plugin_site):
    proc = run_python(["-m", "icatdump.cli.dump", "--list-formats"], site=plugin_site)
    assert proc.stdout.splitlines() == [
        "PORT     icatdump.backends.port (icatdump)",
        "SQLITE   icatdump_sqlite (icatdump-sqlite)",
        "XML      icatdump.backends.xml (icatdump)",
        "YAML     icatdump.backends.yaml (icatdump)",
    ]
    assert proc.stderr == ""
    proc = run_python(["-m", "icatdump.cli.ingest", "--list-formats"], site=plugin_site)
    assert "SQLITE" in proc.stdout


# -- (e) a plugin that can sniff and read its header: the file tools, gzip -------

JSONL = {"jsonl_fmt": '''
    """JSON lines: a header line, then one line per chunk (doc/plugins.md),
    with the two optional hooks: sniff and read_header."""
    import json
    from icatdump.dumpfile import DataFileError, DumpFileReader, DumpFileWriter, RawObject
    from icatdump.types import to_text

    MAGIC = b'{"icatdump-jsonl": 1'

    def sniff(head):
        return head.startswith(MAGIC)

    def read_header(stream):
        first = json.loads(stream.readline())
        return {k: first[k] for k in ("service", "apiversion") if first.get(k)}

    def record_json(record, key=None):
        return {"type": record.type.instance_name, "key": key,
                "fields": [[n, to_text(v)] for n, v in record.attrs]
                          + [[n, k] for n, k in record.refs]
                          + [[n, [record_json(c) for c in cs]] for n, cs in record.children]}

    def raw_object(obj):
        return RawObject(obj["type"], obj["key"],
                         [(n, [raw_object(c) for c in v] if isinstance(v, list) else v)
                          for n, v in obj["fields"]])

    class writer(DumpFileWriter):
        mode = "w"

        def head(self):
            self.outfile.write(MAGIC.decode() + ", " + json.dumps(
                {"service": self.client.url, "apiversion": str(self.client.apiversion)})[1:]
                + "\\n")
            self.chunk = []

        def startdata(self):
            if self.chunk:
                self.outfile.write(json.dumps(self.chunk) + "\\n")
            self.chunk = []

        def write_record(self, key, record):
            self.chunk.append(record_json(record, key))

        def finalize(self):
            self.startdata()

    class reader(DumpFileReader):
        mode = "r"

        def getdata(self):
            self.infile.readline()
            for number, line in enumerate(self.infile, start=2):
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DataFileError("invalid JSON: %s" % exc, line=number) from None

        def parse_chunk(self, chunk):
            for obj in chunk:
                yield raw_object(obj)
'''}


@pytest.fixture(scope="module")
def jsonl_site(tmp_path_factory) -> pathlib.Path:
    return fake_dist(tmp_path_factory.mktemp("jsonl"), "icatdump-jsonl", {"JSONL": "jsonl_fmt"},
                     JSONL)


def run_cli(site, *args, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("ICATDUMP_DEBUG", None)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, timeout=300, stdin=stdin)


def test_sniffing_plugin_gets_the_file_tools_and_gzip(jsonl_site, example, tmp_path):
    """A plugin with sniff and read_header: icatdata info, check and convert
    find its files without -f, plain and gzip-compressed, read its header
    (the ICAT 5.0 schema of a 5.0 file) and give the content back."""
    src = example("icatdump-5.0.yaml")
    plain = tmp_path / "dump.jsonl"
    run_python(["-m", "icatdump.cli.data", "convert", "-q", str(src), str(plain)],
               site=jsonl_site)
    assert plain.read_bytes().startswith(b'{"icatdump-jsonl": 1, "service": ')
    packed = tmp_path / "dump.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))

    yaml_info = json.loads(run_python(["-m", "icatdump.cli.data", "info", "--json", str(src)],
                                      site=jsonl_site).stdout)
    assert yaml_info["header"]["apiversion"] == "5.0.1"
    for path in (plain, packed):
        info = json.loads(run_python(["-m", "icatdump.cli.data", "info", "--json", str(path)],
                                     site=jsonl_site).stdout)
        assert info["format"] == "JSONL"
        assert info["header"] == {"service": yaml_info["header"]["service"],
                                  "apiversion": "5.0.1"}
        for k in ("chunks", "objects", "top_level", "embedded"):
            assert info[k] == yaml_info[k], k

        proc = run_cli(jsonl_site, "icatdump.cli.data", "check", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ICAT 5.0 schema" in proc.stderr and "no problems" in proc.stderr, proc.stderr

        back = tmp_path / ("back-%s.yaml" % path.suffix.lstrip("."))
        run_python(["-m", "icatdump.cli.data", "convert", "-q", str(path), str(back)],
                   site=jsonl_site)
        assert body(back.read_bytes()) == body(src.read_bytes())

    # From standard input too, and through icatingest.
    cat = tmp_path / "cat.sqlite"
    run_python(["-m", "icatdump.cli.data", "init", "--schema-version", "5.0", str(cat)],
               site=jsonl_site)
    with open(packed, "rb") as stdin:
        proc = run_cli(jsonl_site, "icatdump.cli.ingest", "-q", "-w", str(cat), "-i", "-",
                       stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out.yaml"
    run_python(["-m", "icatdump.cli.dump", "-q", "-w", str(cat), "-o", str(out)],
               site=jsonl_site)
    assert body(out.read_bytes()) == body(src.read_bytes())


def test_sniffing_plugin_contradicted_and_unknown(jsonl_site, example, tmp_path):
    """-f JSONL on a YAML file is a usage error saying what the file looks
    like; a file no format recognizes names the formats that were asked."""
    src = example("icatdump-5.0.yaml")
    proc = run_cli(jsonl_site, "icatdump.cli.data", "info", "-f", "jsonl", str(src))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "icatdata: error: %s: -f JSONL given, but the file looks like YAML" % src]
    other = tmp_path / "other.txt"
    other.write_text('{"something": "else"}\n')
    proc = run_cli(jsonl_site, "icatdump.cli.data", "check", str(other))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "icatdata: error: %s: not an ICAT data file (none of PORT, XML, YAML, JSONL)" % other]
