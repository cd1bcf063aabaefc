"""Datafile content with the embedded catalogue, no server: ``icatingest
-w CAT --upload-datafiles`` puts the files into ``CAT.data`` and
``icatdump -w CAT --with-data DIR`` gives them back.  Real subprocesses
on real SQLite files; the catalogue read back with EmbeddedClient, and
once served by ``icatdata serve`` and read through python-icat's IDS client.

The data file is python-icat's 6.2 example with content for its 11
datafiles (see tests/test_ids_ingest.py), changed so that one file is
empty and two names are not ASCII, one of them found by DIR/<name>.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import zlib

import pytest
from lxml import etree

from icatdump.store import EmbeddedClient, init_catalogue

from served import kill_when
from test_ids_ingest import make_upload_set, stored

DATAFILES = 11
EMPTY, LOCATED, BY_NAME = 1, 0, 2      # datafiles changed by make_set (file order)


def make_set(tmp_path, repeat=50, with_locations=True):
    """``(data file, DIR, {path under DIR: content})`` with an empty file
    and non-ASCII names."""
    src, ddir, files = make_upload_set(tmp_path, with_locations=with_locations, repeat=repeat)
    if not with_locations:
        return src, ddir, files
    tree = etree.parse(str(src))
    dfs = [el for el in tree.iter("datafile") if el.get("id")]

    def move(df, name, rel, content=None):
        old = df.findtext("location")
        data = files.pop(old)
        (ddir / old).unlink()
        data = data if content is None else content
        df.find("name").text = name
        if rel is None:
            df.remove(df.find("location"))
            rel = name
        else:
            df.find("location").text = rel
        df.find("fileSize").text = str(len(data))
        df.find("checksum").text = "%x" % zlib.crc32(data)
        (ddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (ddir / rel).write_bytes(data)
        files[rel] = data

    move(dfs[LOCATED], "données é✓.nxs", "v0/données é✓.nxs")
    move(dfs[EMPTY], "leer.dat", "v1/leer.dat", b"")
    move(dfs[BY_NAME], "Ωmega ñ.dat", None)
    tree.write(str(src), xml_declaration=True, encoding="UTF-8")
    return src, ddir, files


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=timeout)


def ingest_cmd(cat, src, ddir, *args):
    return [sys.executable, "-m", "icatdump.cli.ingest", "-w", str(cat), "-i", str(src),
            "--upload-datafiles", "--datafile-dir", str(ddir), *args]


def ingest(cat, src, ddir, *args):
    return subprocess.run(ingest_cmd(cat, src, ddir, *args), capture_output=True, text=True,
                          timeout=300)


def data_dir(cat):
    return cat.parent / (cat.name + ".data")


def catalogue(cat) -> list[dict]:
    """Every Datafile of ``cat``: its fields, dataset name and number of parameters."""
    client = EmbeddedClient(str(cat))
    try:
        params = client.search("SELECT p.datafile.id FROM DatafileParameter p")
        return [dict(df.values, id=df.id, dataset=df.values["dataset"].values["name"],
                     dataset_id=df.values["dataset"].id, parameters=params.count(df.id))
                for df in client.search("SELECT df FROM Datafile df INCLUDE df.dataset")]
    finally:
        client.close()


def assert_whole(cat):
    """No Datafile without its file, no file without its Datafile, no journal left."""
    dfs = catalogue(cat)
    for df in dfs:
        assert (data_dir(cat) / df["location"]).is_file(), df["name"]
    assert stored(data_dir(cat)) == {df["location"] for df in dfs}
    assert not list(data_dir(cat).glob(".uploads/*"))
    return dfs


def expected_parameters(src) -> int:
    return sum(len(el.findall("parameters")) for el in etree.parse(str(src)).iter("datafile")
               if el.get("id"))


@contextlib.contextmanager
def serving(cat):
    """``icatdata serve`` on an existing catalogue: ``(ICAT URL, IDS URL)``."""
    proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli.data", "serve", "-q", str(cat)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.endswith("/ICATService/ICAT"), proc.stderr.read()
        yield url, url[:-len("/ICATService/ICAT")] + "/ids"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_upload_into_embedded_then_with_data_gives_the_files_back(tmp_path):
    src, ddir, files = make_set(tmp_path)
    cat = tmp_path / "cat.sqlite"
    init_catalogue(str(cat), "6.2")
    proc = ingest(cat, src, ddir)
    assert proc.returncode == 0, proc.stderr
    assert "%d bytes uploaded to %s" % (sum(map(len, files.values())), data_dir(cat)) \
        in proc.stderr
    dfs = assert_whole(cat)
    assert len(dfs) == DATAFILES
    contents = {}
    for df in dfs:
        content = (data_dir(cat) / df["location"]).read_bytes()
        # Sizes and checksums as ids.server's put sets them; the location as
        # the local IDS chooses it: <dataset id>/<uuid>.
        assert df["fileSize"] == len(content) and df["checksum"] == "%x" % zlib.crc32(content)
        assert re.match(r"^%d/[0-9a-f-]{36}$" % df["dataset_id"], df["location"])
        contents[df["id"]] = content
    assert sorted(contents.values()) == sorted(files.values())
    assert {df["name"] for df in dfs} >= {"données é✓.nxs", "leer.dat", "Ωmega ñ.dat"}
    assert sum(df["parameters"] for df in dfs) == expected_parameters(src)

    out = tmp_path / "saved"
    proc = run("icatdump.cli.dump", "-w", str(cat), "-f", "XML", "-o", str(tmp_path / "d.xml"),
               "--with-data", str(out))
    assert proc.returncode == 0, proc.stderr
    for df in dfs:
        assert (out / df["location"]).read_bytes() == contents[df["id"]]
    assert stored(out) == {df["location"] for df in dfs}

    # The directory icatdata serve's IDS uses for this catalogue is the same.
    icat = pytest.importorskip("icat")
    from icat.ids import DataSelection
    with serving(cat) as (url, idsurl):
        client = icat.Client(url + "?wsdl", idsurl=idsurl)
        client.login("simple", {"username": "root", "password": "secret"})
        try:
            for df in client.search("SELECT df FROM Datafile df"):
                assert client.ids.getData(DataSelection([df])).read() == contents[df.id]
        finally:
            client.logout()

    # Runs again: nothing uploaded twice, every location kept.
    for mode in ("IGNORE", "CHECK", "OVERWRITE"):
        proc = ingest(cat, src, ddir, "--duplicate", mode)
        assert proc.returncode == 0, proc.stderr
        assert "0 bytes uploaded" in proc.stderr
    assert sorted(assert_whole(cat), key=lambda d: d["id"]) == sorted(dfs, key=lambda d: d["id"])


def damage(problem, ddir, files):
    """Spoil the file of datafile e208341.dat; what the error says."""
    rel = next(r for r in files if r.endswith("e208341.dat"))
    content = files[rel]
    if problem == "missing":
        (ddir / rel).unlink()
        return "cannot read %s" % (ddir / "e208341.dat")
    if problem == "size":
        (ddir / rel).write_bytes(content[:-1])
        return "has %d bytes, the file says fileSize %d" % (len(content) - 1, len(content))
    (ddir / rel).write_bytes(content[:-1] + b"!")
    return "the file says %x" % zlib.crc32(content)


@pytest.mark.parametrize("problem", ["missing", "size", "checksum", "ambiguous"])
def test_a_bad_file_is_one_error_and_nothing_half_ingested(tmp_path, problem):
    src, ddir, files = make_set(tmp_path, with_locations=problem != "ambiguous")
    if problem == "ambiguous":
        said = "%s is the file of two datafiles" % (ddir / "e208341.nxs")
        name = "e208341.nxs"
    else:
        said, name = damage(problem, ddir, files), "e208341.dat"
    cat = tmp_path / "cat.sqlite"
    init_catalogue(str(cat), "6.2")
    proc = ingest(cat, src, ddir)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 2, proc.stderr  # error, how to resume
    assert lines[0].startswith("icatingest: error: ") and said in lines[0], lines[0]
    assert "_name-%s" % name.replace(".", "=2E") in lines[0]
    dfs = assert_whole(cat)
    if problem != "ambiguous":
        assert name not in {df["name"] for df in dfs}
        # The chunks before went in: fixed, the same command with IGNORE completes it.
        (ddir / next(r for r in files if r.endswith(name))).write_bytes(
            files[next(r for r in files if r.endswith(name))])
        assert "--duplicate IGNORE" in lines[1]
        proc = ingest(cat, src, ddir, "--duplicate", "IGNORE")
        assert proc.returncode == 0, proc.stderr
        assert len(assert_whole(cat)) == DATAFILES


def test_usage_errors(tmp_path):
    src, ddir, _ = make_set(tmp_path)
    cat = tmp_path / "cat.sqlite"
    init_catalogue(str(cat), "6.2")
    proc = subprocess.run(ingest_cmd(cat, src, ddir, "--idsurl", "http://127.0.0.1:9/ids"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "into an embedded catalogue" in proc.stderr and "http://127.0.0.1:9/ids" in proc.stderr
    assert catalogue(cat) == [] and not data_dir(cat).exists()


def test_with_data_fetches_a_wrong_file_again(tmp_path):
    """A dump run again keeps the files in place that are right by size and
    checksum, and fetches again one of the right size but wrong content and
    one of the wrong size."""
    src, ddir, files = make_set(tmp_path)
    cat = tmp_path / "cat.sqlite"
    init_catalogue(str(cat), "6.2")
    assert ingest(cat, src, ddir).returncode == 0
    out = tmp_path / "saved"
    dump = ("icatdump.cli.dump", "-w", str(cat), "-o", str(tmp_path / "d.yaml"),
            "--with-data", str(out))
    assert run(*dump).returncode == 0
    dfs = sorted(catalogue(cat), key=lambda d: d["id"])
    wrong, short, kept = [out / df["location"] for df in dfs if df["fileSize"] > 1][:3]
    right = {p: p.read_bytes() for p in (wrong, short, kept)}
    wrong.write_bytes(b"?" + right[wrong][1:])          # same size, other content
    short.write_bytes(right[short][:-1])
    os.utime(kept, ns=(0, 0))
    proc = run(*dump)
    assert proc.returncode == 0, proc.stderr
    assert "2 files (%d bytes) saved to %s (%d in place already)" % (
        len(right[wrong]) + len(right[short]), out, DATAFILES - 2) in proc.stderr
    assert {p: p.read_bytes() for p in right} == right
    assert kept.stat().st_mtime_ns == 0        # read, not written again


def test_killed_during_uploads_then_ignore_ends_as_a_clean_run(tmp_path):
    """kill -9 after 2, 5 and 8 files were stored (each run resumed with
    IGNORE, committing every chunk), then a run to the end: every committed
    Datafile has its file at every point, and the end is what one clean
    run gives, each file once."""
    src, ddir, files = make_set(tmp_path, repeat=150000)       # ~2-4 MB each
    clean = tmp_path / "clean.sqlite"
    init_catalogue(str(clean), "6.2")
    assert ingest(clean, src, ddir).returncode == 0
    cat = tmp_path / "cat.sqlite"
    init_catalogue(str(cat), "6.2")
    args = ("--duplicate", "IGNORE", "--commit-size", "1")
    kills = 0
    for at in (2, 5, 8):
        kills += kill_when(ingest_cmd(cat, src, ddir, *args),
                           lambda: data_dir(cat).is_dir() and len(stored(data_dir(cat))) >= at)
        for df in catalogue(cat):
            assert (data_dir(cat) / df["location"]).is_file(), df["name"]
    assert kills >= 2, "the ingest ran to its end before it could be killed"
    proc = ingest(cat, src, ddir, *args)
    assert proc.returncode == 0, proc.stderr

    def summary(path):
        return sorted((df["dataset"], df["name"], df["fileSize"], df["checksum"],
                       df["parameters"], (data_dir(path) / df["location"]).read_bytes())
                      for df in assert_whole(path))
    assert summary(cat) == summary(clean)
    assert len(summary(cat)) == DATAFILES
