"""``icatingest --upload-datafiles`` for real: ``icatdata serve`` and
``icatingest`` as subprocesses, the files checked through python-icat's
IDS client and on the server's disk.

The data file is python-icat's 6.2 example with made-up content for its
11 datafiles: each gets a location ``v<i>/<name>``, and the fileSize and
checksum of its content (two of them share the name e208341.nxs in
different datasets, which is what python-icat's DIR/<name> rule cannot
tell apart).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest
from lxml import etree

icat = pytest.importorskip("icat")
from icat.ids import DataSelection  # noqa: E402

from icatdump.store import init_catalogue  # noqa: E402

from conftest import python_icat_sdist  # noqa: E402
from served import dump, dump_cmd, ingest, ingest_cmd, kill_when, logged_in, serving  # noqa: E402

EXAMPLE = python_icat_sdist() / "doc" / "examples" / "icatdump-6.2.xml"
DATAFILES = 11


def make_upload_set(tmp_path, with_locations=True, repeat=50):
    """The data file and DIR with the datafiles' content; returns
    ``(data file, DIR, {name of the file under DIR: content})``."""
    tree = etree.parse(str(EXAMPLE))
    ddir = tmp_path / "files"
    files = {}
    for i, df in enumerate(el for el in tree.iter("datafile") if el.get("id")):
        name = df.findtext("name")
        # Without locations, one file stands for every datafile of its name.
        content = (("%s %d\n" % (name, i)).encode() * (repeat + 7 * i) if with_locations
                   else name.encode() * repeat)
        for tag in ("checksum", "fileSize", "location"):
            for el in df.findall(tag):
                df.remove(el)
        fields = [("checksum", "%x" % zlib.crc32(content)), ("fileSize", str(len(content)))]
        rel = name
        if with_locations:
            rel = "v%d/%s" % (i, name)
            fields.append(("location", rel))
        for tag, text in reversed(fields):
            el = etree.Element(tag)
            el.text = text
            df.insert(0, el)
        (ddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (ddir / rel).write_bytes(content)
        files[rel] = content
    out = tmp_path / "upload.xml"
    tree.write(str(out), xml_declaration=True, encoding="UTF-8")
    return out, ddir, files


@pytest.fixture
def served(tmp_path):
    with serving(tmp_path / "served.sqlite") as s:
        yield s


def stored(data_dir) -> set[str]:
    return {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
            if p.is_file() and not p.relative_to(data_dir).parts[0].startswith(".")}


@pytest.fixture
def pyicat(served):
    with logged_in(served) as client:
        yield client


def datafiles(client):
    return client.search("SELECT df FROM Datafile df INCLUDE df.parameters, df.dataset")


def test_upload_keeps_everything(served, pyicat, tmp_path):
    src, ddir, files = make_upload_set(tmp_path)
    # uploadDatafiles, dataDir and idsurl from icat.cfg, as python-icat reads them.
    url, idsurl, data_dir = served
    (tmp_path / "icat.cfg").write_text(
        "[s]\nurl = %s\nidsurl = %s\nauth = simple\nusername = root\npassword = secret\n"
        "uploadDatafiles = true\ndataDir = %s\n" % (url, idsurl, ddir))
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-c",
                           str(tmp_path / "icat.cfg"), "-s", "s", "-i", str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "%d bytes uploaded to %s" % (sum(map(len, files.values())), idsurl) in proc.stderr
    found = datafiles(pyicat)
    assert len(found) == DATAFILES
    by_content = {content: rel for rel, content in files.items()}
    expected = etree.parse(str(src))
    params = {el.findtext("location"): len(el.findall("parameters"))
              for el in expected.iter("datafile") if el.get("id")}
    for df in found:
        content = pyicat.ids.getData(DataSelection([df])).read()
        rel = by_content[content]          # each file's content, once
        assert df.fileSize == len(content) and df.checksum == "%x" % zlib.crc32(content)
        assert len(df.parameters) == params[rel]        # python-icat drops these
        assert (data_dir / df.location).read_bytes() == content
    assert stored(data_dir) == {df.location for df in found}
    # Run again: CHECK compares everything but the location IDS chose, and
    # OVERWRITE leaves that alone; nothing is uploaded twice.
    for mode in ("CHECK", "OVERWRITE"):
        proc = ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir),
                      "--duplicate", mode)
        assert proc.returncode == 0, proc.stderr
    assert {(df.id, df.location) for df in datafiles(pyicat)} == {
        (df.id, df.location) for df in found}
    assert stored(data_dir) == {df.location for df in found}


def test_datafiles_embedded_in_a_dataset_are_uploaded(served, pyicat, tmp_path):
    src, ddir, files = make_upload_set(tmp_path)
    tree = etree.parse(str(src))
    df = next(el for el in tree.iter("datafile") if el.findtext("name") == "e201215.nxs")
    ref = df.find("dataset").get("ref")
    dataset = next(el for el in tree.iter("dataset") if el.get("id") == ref)
    df.remove(df.find("dataset"))
    df.getparent().remove(df)
    df.tag = "datafiles"
    del df.attrib["id"]
    dataset.append(df)
    tree.write(str(src), xml_declaration=True, encoding="UTF-8")
    proc = ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
    assert proc.returncode == 0, proc.stderr
    (got,) = pyicat.search("SELECT df FROM Datafile df WHERE df.name = 'e201215.nxs' "
                           "INCLUDE df.parameters")
    assert pyicat.ids.getData(DataSelection([got])).read() == files["v0/e201215.nxs"]
    assert len(got.parameters) == 1
    assert len(datafiles(pyicat)) == DATAFILES


def test_ambiguous_name_is_an_error_naming_both(served, pyicat, tmp_path):
    src, ddir, _ = make_upload_set(tmp_path, with_locations=False)
    proc = ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr     # the error, how to resume
    assert "%s is the file of two datafiles" % (ddir / "e208341.nxs") in lines[0]
    assert lines[0].count("_name-e208341=2Enxs") == 3       # where, first and second
    assert "name-e208341)_name" in lines[0] and "name-e208945)_name" in lines[0]


def test_location_missing_falls_back_to_name(served, pyicat, tmp_path):
    src, ddir, files = make_upload_set(tmp_path)
    # One file only at DIR/<name>: python-icat's rule finds it.
    rel = next(r for r in files if r.endswith("e201215.nxs"))
    (ddir / rel).rename(ddir / "e201215.nxs")
    proc = ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
    assert proc.returncode == 0, proc.stderr
    (df,) = pyicat.search("SELECT df FROM Datafile df WHERE df.name = 'e201215.nxs'")
    assert pyicat.ids.getData(DataSelection([df])).read() == files[rel]


@pytest.mark.parametrize("damage", ["content", "size"])
def test_a_file_that_is_not_the_dumped_one_is_refused(served, pyicat, tmp_path, damage):
    src, ddir, files = make_upload_set(tmp_path)
    rel = next(r for r in files if r.endswith("e208339.dat"))
    content = files[rel]
    (ddir / rel).write_bytes(content[:-1] + b"!" if damage == "content" else content[:-1])
    proc = ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.splitlines()[0]
    assert "_name-e208339=2Edat" in line
    assert ("the file says" in line) and (("checksum" in line) if damage == "content"
                                          else ("fileSize" in line))
    names = {df.name for df in datafiles(pyicat)}
    assert "e208339.dat" not in names
    assert stored(served[2]) == {df.location for df in datafiles(pyicat)}


def test_usage_errors(served, tmp_path):
    src, ddir, _ = make_upload_set(tmp_path)
    url = served[0]
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", url, "-a", "simple",
                           "-u", "root", "-p", "secret", "-i", str(src), "--upload-datafiles"],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HOME=str(tmp_path), ICAT_DATA_SERVICE=""))
    assert proc.returncode == 2 and "needs the IDS URL" in proc.stderr
    cat = tmp_path / "local.sqlite"
    init_catalogue(str(cat), "6.2")
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(cat),
                           "--idsurl", served[1], "-i", str(src), "--upload-datafiles"],
                          capture_output=True, text=True, timeout=300)
    # An embedded catalogue keeps its files itself: another's IDS is refused.
    assert proc.returncode == 2 and "into an embedded catalogue" in proc.stderr
    # An IDS URL where no IDS answers: a connection problem, exit 3.
    proc = ingest((url, "http://127.0.0.1:9/ids", None), "-i", str(src), "--upload-datafiles",
                  "--datafile-dir", str(ddir))
    assert proc.returncode == 3 and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_killed_during_uploads_then_ignore_ends_with_each_file_once(served, pyicat, tmp_path):
    """kill -9 after 2, 6 and 9 files went in (each run resumed with
    IGNORE), then a run to the end: every Datafile has its file at every
    point, and at the end each file is there exactly once, with its
    parameters."""
    src, ddir, files = make_upload_set(tmp_path, repeat=150000)     # ~2-4 MB each
    data_dir = served[2]
    args = ("-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir),
            "--duplicate", "IGNORE")
    kills = 0
    for at in (2, 6, 9):
        kills += kill_when(ingest_cmd(served, *args), lambda: len(stored(data_dir)) >= at)
        # No Datafile without its file, whatever point the kill hit.
        for df in datafiles(pyicat):
            assert (data_dir / df.location).is_file(), df.name
    assert kills >= 2, "the ingest ran to its end before it could be killed"
    proc = ingest(served, *args)
    assert proc.returncode == 0, proc.stderr
    found = datafiles(pyicat)
    assert len(found) == DATAFILES
    assert stored(data_dir) == {df.location for df in found}
    contents = sorted(pyicat.ids.getData(DataSelection([df])).read() for df in found)
    assert contents == sorted(files.values())
    expected = sum(len(el.findall("parameters")) for el in etree.parse(str(src)).iter("datafile")
                   if el.get("id"))
    assert sum(len(df.parameters) for df in found) == expected


def contents(client) -> dict:
    """(dataset, name) -> content of every Datafile, through the IDS."""
    return {(df.dataset.name, df.name): client.ids.getData(DataSelection([df])).read()
            for df in datafiles(client)}


def test_dump_with_data_then_upload_elsewhere(served, pyicat, tmp_path):
    """icatdump --with-data DIR from one served catalogue (by IDS, and from
    the embedded catalogue's own data directory), icatingest
    --upload-datafiles --datafile-dir DIR into another: the same files."""
    src, ddir, _ = make_upload_set(tmp_path)
    assert ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir",
                  str(ddir)).returncode == 0
    before = contents(pyicat)
    out, saved = tmp_path / "dump.xml", tmp_path / "saved"
    proc = subprocess.run(dump_cmd(served, "-f", "XML", "-o", str(out), "--with-data", str(saved)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Each file at its location: the one-name-two-datasets pair apart.
    assert {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()} == \
        {df.location for df in datafiles(pyicat)}
    local = tmp_path / "local"
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-q", "-w",
                           str(tmp_path / "served.sqlite"), "-o", str(tmp_path / "d.yaml"),
                           "--with-data", str(local)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.read_bytes() for p in local.rglob("*") if p.is_file()) == \
        sorted(before.values())
    with serving(tmp_path / "other.sqlite") as other:
        proc = ingest(other, "-i", str(out), "--upload-datafiles", "--datafile-dir", str(saved))
        assert proc.returncode == 0, proc.stderr
        with logged_in(other) as client:
            assert contents(client) == before


def test_dump_with_data_refuses_a_damaged_file(served, pyicat, tmp_path):
    src, ddir, _ = make_upload_set(tmp_path)
    assert ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir",
                  str(ddir)).returncode == 0
    (df,) = pyicat.search("SELECT df FROM Datafile df WHERE df.name = 'e208339.dat'")
    stored_file = served[2] / df.location
    stored_file.write_bytes(b"?" + stored_file.read_bytes()[1:])
    out, saved = tmp_path / "dump.xml", tmp_path / "saved"
    proc = subprocess.run(dump_cmd(served, "-f", "XML", "-o", str(out), "--with-data", str(saved)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "_name-e208339=2Edat" in proc.stderr and "checksum" in proc.stderr
    assert not out.exists()
    assert not any(p.name.endswith(".part") for p in saved.rglob("*"))
    assert not (saved / df.location).exists()


def test_dump_with_data_asks_the_catalogue_nothing_more(tmp_path):
    """--with-data fetches each file by the id of the Datafile the dump has
    just read: the catalogue gets the dump's own searches and no more
    (before, one search per file found its id by its location)."""
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient
    path = tmp_path / "c.sqlite"
    init_catalogue(str(path), "6.2")
    srv = serve(lambda: EmbeddedClient(str(path)), accounts={"root": "secret"},
                data_dir=tmp_path / "c.data")
    try:
        served = (srv.url, srv.url[:-len("/ICATService/ICAT")] + "/ids", tmp_path / "c.data")
        src, ddir, files = make_upload_set(tmp_path)
        assert ingest(served, "-i", str(src), "--upload-datafiles", "--datafile-dir",
                      str(ddir)).returncode == 0
        searches = []
        for extra in ((), ("--with-data", str(tmp_path / "saved"))):
            before = srv.service.calls["search"]
            proc = dump(served, "-o", str(tmp_path / "d.xml"), *extra)
            assert proc.returncode == 0, proc.stderr
            searches.append(srv.service.calls["search"] - before)
        assert searches[0] == searches[1] > 0
        assert sorted(p.read_bytes() for p in (tmp_path / "saved").rglob("*")
                      if p.is_file()) == sorted(files.values())
    finally:
        srv.shutdown()
