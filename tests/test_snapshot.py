"""Dumps are snapshots: a dump taken while an ingest commits can be restored.

The embedded catalogue is dumped inside one read transaction; over SOAP,
where the server keeps no snapshot, a change during the dump is detected and
the dump fails without leaving a file.
"""

import subprocess
import sys
import threading

import pytest

from icatdump.dump import dump
from icatdump.dumpfile import open_dumpfile
from icatdump.entity import Entity
from icatdump.schema import Schema
from icatdump.snapshot import CatalogueChanged
from icatdump.soap.client import SoapClient
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

SCHEMA = Schema.for_version("6.2")
HEAD = """%YAML 1.1
# Date: Mon, 01 Dec 2025 16:03:33 +0000
# Service: file:test
# ICAT-API: 6.2.0
# Generator: test
"""


def facility_file(path, n, types=40):
    """A new facility in one chunk, then one parameter type of it per chunk:
    committed chunk by chunk with --commit-size 1.  A dump reads facilities,
    then instruments, then parameter types: one that does not read a single
    state can hold a parameter type without its facility."""
    fac = "Facility_name-F%d" % n
    parts = [HEAD, "---\nfacility:\n  %s:\n    name: F%d\n" % (fac, n)]
    for i in range(types):
        parts.append("---\nparameterType:\n"
                     "  ParameterType_facility-(name-F%d)_name-P%d_units-u:\n"
                     "    facility: %s\n    name: P%d\n    units: u\n"
                     "    valueType: STRING\n" % (n, i, fac, i))
    path.write_text("".join(parts))
    return path


def instruments_file(path, count):
    """Many instruments of a facility: they make the time between a dump's
    read of facilities and of parameter types long enough to commit in."""
    parts = [HEAD, "---\nfacility:\n  Facility_name-big:\n    name: big\n",
             "instrument:\n"]
    for i in range(count):
        parts.append("  Instrument_facility-(name-big)_name-I%d:\n"
                     "    facility: Facility_name-big\n    name: I%d\n" % (i, i))
    path.write_text("".join(parts))
    return path


def fac(values, id=None):
    return Entity(SCHEMA["Facility"], values, id=id)


def cli(command, *args):
    return subprocess.run([sys.executable, "-m", "icatdump.cli." + command, *args],
                          capture_output=True, text=True, timeout=300)


def body(path):
    """A dump without its header date and service."""
    return [line for line in path.read_text().splitlines() if not line.startswith(("# Date:", "# Service:"))]


def test_dumps_taken_during_ingests_restore(tmp_path):
    cat = tmp_path / "busy.sqlite"
    init_catalogue(cat)
    big = instruments_file(tmp_path / "big.yaml", 20000)
    assert cli("ingest", "-q", "-w", str(cat), "-i", str(big)).returncode == 0
    files = [facility_file(tmp_path / ("f%d.yaml" % n), n) for n in range(12)]
    stop = threading.Event()
    ingested = []

    def ingest_loop():
        for f in files:
            if stop.is_set():
                return
            r = cli("ingest", "-q", "-w", str(cat), "-i", str(f), "--commit-size", "1")
            ingested.append(r.returncode)

    writer = threading.Thread(target=ingest_loop)
    writer.start()
    dumps = []
    try:
        while writer.is_alive() and len(dumps) < 8:
            out = tmp_path / ("dump%d.yaml" % len(dumps))
            r = cli("dump", "-q", "-w", str(cat), "-f", "YAML", "-o", str(out))
            assert r.returncode == 0, r.stderr
            dumps.append(out)
    finally:
        stop.set()
        writer.join()
    assert ingested and set(ingested) == {0}
    assert dumps
    for n, out in enumerate(dumps):
        fresh = tmp_path / ("fresh%d.sqlite" % n)
        init_catalogue(fresh)
        r = cli("ingest", "-q", "-w", str(fresh), "-i", str(out))
        assert r.returncode == 0, "dump %d does not restore: %s" % (n, r.stderr)
        again = tmp_path / ("again%d.yaml" % n)
        assert cli("dump", "-q", "-w", str(fresh), "-f", "YAML", "-o", str(again)) \
            .returncode == 0
        assert body(again) == body(out)


def test_embedded_dump_reads_one_state(tmp_path):
    """Deterministically: a facility committed by another connection after
    the dump's first read is not in the dump."""
    cat = tmp_path / "c.sqlite"
    init_catalogue(cat)
    other = EmbeddedClient(cat)
    client = EmbeddedClient(cat)
    out = tmp_path / "d.yaml"
    created = []

    def meanwhile(name, count):
        if not created:
            created.append(other.create(fac({"name": "late"})))

    with open_dumpfile(client, str(out), "YAML", "w") as writer:
        dump(client, writer, progress=meanwhile)
    assert created
    assert "late" not in out.read_text()
    assert [f.name for f in client.search("SELECT f FROM Facility f")] == ["late"]
    other.close()
    client.close()


@pytest.fixture
def served(tmp_path):
    cat = tmp_path / "s.sqlite"
    init_catalogue(cat)
    srv = serve(lambda: EmbeddedClient(cat))
    client = SoapClient(srv.url)
    client.login("simple", {"username": "root", "password": "secret"})
    yield cat, client
    client.close()
    srv.shutdown()


def test_soap_dump_detects_a_change_and_writes_nothing(served, tmp_path):
    cat, client = served
    client.create(fac({"name": "early"}))
    other = EmbeddedClient(cat)
    out = tmp_path / "d.yaml"

    def meanwhile(name, count):
        if name == "static":
            other.create(fac({"name": "late%d" % count}))

    with pytest.raises(CatalogueChanged, match=r"Facility: 1 objects, then 2"):
        with open_dumpfile(client, str(out), "YAML", "w") as writer:
            dump(client, writer, progress=meanwhile)
    assert not out.exists()
    assert not list(tmp_path.glob(".d.yaml*"))
    other.close()


def test_soap_dump_detects_an_update(served, tmp_path):
    cat, client = served
    fid = client.create(fac({"name": "f", "fullName": "before"}))
    other = EmbeddedClient(cat)

    def meanwhile(name, count):
        if name == "static":
            other.update(fac({"name": "f", "fullName": "after"}, id=fid))

    with pytest.raises(CatalogueChanged, match=r"Facility: modified"):
        with open_dumpfile(client, str(tmp_path / "d.yaml"), "YAML", "w") as writer:
            dump(client, writer, progress=meanwhile)
    other.close()


def test_soap_dump_of_a_quiet_catalogue_succeeds(served, tmp_path):
    cat, client = served
    client.create(fac({"name": "f"}))
    out = tmp_path / "d.yaml"
    with open_dumpfile(client, str(out), "YAML", "w") as writer:
        assert dump(client, writer) == 1
    assert "name: f" in out.read_text()
