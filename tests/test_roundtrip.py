"""Acceptance: python-icat's example files survive ingest + dump byte for byte.

For every example dump of python-icat 1.7.0: a fresh embedded catalogue of
the file's schema version, icatingest, icatdump, and the output must equal
the example apart from the four header lines (date, service, apiversion,
generator).  Also across formats, through stdin/stdout, and for the legacy
files written by python-icat 0.21.
"""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

from icatdump.dump import dump
from icatdump.dumpfile import open_dumpfile
from icatdump.ingest import ingest
from icatdump.store import EmbeddedClient, init_catalogue

ROOT = pathlib.Path(__file__).resolve().parent.parent
VERSIONS = ["4.4", "4.7", "4.10", "5.0", "6.2"]


def _examples():
    spec = importlib.util.spec_from_file_location("examples", ROOT / "tools" / "examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


examples = _examples()


def body(data: bytes, fmt: str) -> bytes:
    """A data file without its header lines."""
    lines = data.splitlines(keepends=True)
    if fmt == "XML":
        return b"".join(l for l in lines if not l.lstrip().startswith(
            (b"<date>", b"<service>", b"<apiversion>", b"<generator>")))
    return b"".join(l for l in lines if not l.startswith(
        (b"# Date:", b"# Service:", b"# ICAT-API:", b"# Generator:")))


def ingest_file(client, path, fmt):
    with open_dumpfile(client, str(path), fmt, "r") as reader:
        return ingest(client, reader)


def dump_to_bytes(client, fmt, tmp_path):
    out = tmp_path / ("out." + fmt.lower())
    with open_dumpfile(client, str(out), fmt, "w") as writer:
        dump(client, writer)
    return out.read_bytes()


@pytest.fixture
def catalogue(tmp_path):
    def make(version):
        path = tmp_path / ("icat-%s.sqlite" % version)
        init_catalogue(str(path), version)
        return EmbeddedClient(str(path))
    return make


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("infmt", ["XML", "YAML"])
@pytest.mark.parametrize("outfmt", ["XML", "YAML"])
def test_example_roundtrip(catalogue, tmp_path, version, infmt, outfmt):
    client = catalogue(version)
    src = examples.find("icatdump-%s.%s" % (version, infmt.lower()))
    stats = ingest_file(client, src, infmt)
    assert stats.objects > 100
    expected = examples.find("icatdump-%s.%s" % (version, outfmt.lower())).read_bytes()
    assert body(dump_to_bytes(client, outfmt, tmp_path), outfmt) == body(expected, outfmt)


@pytest.mark.parametrize("version", ["4.4", "4.7", "4.10"])
@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_legacy_files(catalogue, tmp_path, version, fmt):
    client = catalogue(version)
    ingest_file(client, examples.find("legacy-icatdump-%s.%s" % (version, fmt.lower())), fmt)
    expected = examples.find("icatdump-%s.%s" % (version, fmt.lower())).read_bytes()
    assert body(dump_to_bytes(client, fmt, tmp_path), fmt) == body(expected, fmt)


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_legacy_4_10_into_5_0(catalogue, tmp_path, fmt):
    client = catalogue("5.0")
    ingest_file(client, examples.find("legacy-icatdump-4.10.%s" % fmt.lower()), fmt)
    expected = examples.find("ref-icatdump-5.0.%s" % fmt.lower()).read_bytes()
    assert body(dump_to_bytes(client, fmt, tmp_path), fmt) == body(expected, fmt)


def run_cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", *args], input=input, capture_output=True,
                          timeout=300)


def test_cli_stdin_to_stdout(tmp_path):
    """icatingest reads stdin (format sniffed), icatdump writes stdout."""
    db = tmp_path / "c.sqlite"
    r = run_cli("icatdump.cli.data", "init", str(db), "--schema-version", "6.2")
    assert r.returncode == 0, r.stderr
    src = examples.find("icatdump-6.2.xml").read_bytes()
    r = run_cli("icatdump.cli.ingest", "-w", str(db), input=src)
    assert r.returncode == 0, r.stderr
    r = run_cli("icatdump.cli.dump", "-w", str(db), "-f", "XML")
    assert r.returncode == 0, r.stderr
    assert body(r.stdout, "XML") == body(src, "XML")


def test_cli_contradicting_format_is_a_clear_error(tmp_path):
    db = tmp_path / "c.sqlite"
    run_cli("icatdump.cli.data", "init", str(db))
    src = examples.find("icatdump-6.2.yaml")
    r = run_cli("icatdump.cli.ingest", "-w", str(db), "-f", "XML", "-i", str(src))
    assert r.returncode == 2
    assert b"looks like YAML" in r.stderr
    assert b"Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_empty_catalogue_dump_restores(tmp_path, fmt):
    """An empty catalogue's dump is a header only (python-icat's YAML one is
    a ``%YAML`` directive and comments, which YAML itself refuses as a
    stream): it restores as nothing, and ``check`` calls it fine."""
    src, dst, out = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / ("d." + fmt)
    for db in (src, dst):
        assert run_cli("icatdump.cli.data", "init", str(db)).returncode == 0
    r = run_cli("icatdump.cli.dump", "-w", str(src), "-f", fmt, "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = run_cli("icatdump.cli.ingest", "-w", str(dst), "-i", str(out))
    assert r.returncode == 0, r.stderr
    assert b"0 chunks" in r.stderr
    r = run_cli("icatdump.cli.data", "check", str(out))
    assert r.returncode == 0 and b"0 objects, no problems" in r.stdout + r.stderr


def test_yaml_header_then_text_is_still_an_error(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("%YAML 1.1\n# Service: x\nnot a chunk\n")
    db = tmp_path / "c.sqlite"
    run_cli("icatdump.cli.data", "init", str(db))
    r = run_cli("icatdump.cli.ingest", "-w", str(db), "-i", str(path))
    assert r.returncode == 1
    assert b"d.yaml, chunk 1, line 3: YAML error" in r.stderr
