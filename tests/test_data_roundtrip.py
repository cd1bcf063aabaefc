"""A catalogue and its files moved to another, and back out unchanged.

python-icat's 6.2 example, with two more Datafiles whose names have
spaces and non-ASCII letters, and generated content for every Datafile
(0 bytes, 1 byte, 5 MiB, the rest a few random KiB):

    icatingest --upload-datafiles into ``icatdata serve`` A
    icatdump --with-data DIR1 from A
    icatingest --upload-datafiles --datafile-dir DIR1 into a fresh serve B
    icatdump --with-data DIR2 from B

Every step is the real command in its own process against real servers
on 127.0.0.1.  What must hold: the two dumps are the same byte for byte
but for their header (date, server URL) and the Datafiles' locations,
which each IDS chooses itself; A's Datafiles are the example's in every
other field; every file in DIR1 and DIR2 is the content it started as;
B catalogues each Datafile with its file's size and CRC32, and serves
that content to python-icat's IDS client.
"""

from __future__ import annotations

import copy
import random
import re
import zlib

import pytest
from lxml import etree

pytest.importorskip("icat")
from icat.ids import DataSelection  # noqa: E402

from conftest import dump_body, python_icat_sdist  # noqa: E402
from served import dump, ingest, logged_in, serving  # noqa: E402

EXAMPLE = python_icat_sdist() / "doc" / "examples" / "icatdump-6.2.xml"
#: Datafiles added to the example's first dataset, beside its own.
ADDED = ("run 1 ü.dat", "日本 データ.nxs")
MIB = 1024 * 1024
#: Content sizes that need their own case; every other Datafile gets a random one.
SIZES = {"e201215.nxs": 0, "run 1 ü.dat": 1, "日本 データ.nxs": 5 * MIB}


def make_source(tmp_path):
    """The example with the ADDED Datafiles, each Datafile with generated
    content at ``DIR/v<i>/<name>`` and its location, size and checksum
    recorded.  Returns ``(data file, DIR, {(dataset key, name): content},
    {dataset key: dataset name})``."""
    tree = etree.parse(str(EXAMPLE))
    datafiles = [el for el in tree.iter("datafile") if el.get("id")]
    first = datafiles[0]
    for n, name in enumerate(ADDED):
        added = copy.deepcopy(first)
        added.set("id", "Datafile_added_%d" % n)
        added.find("name").text = name
        first.addnext(added)
        datafiles.append(added)
    rng = random.Random(19)
    ddir, contents = tmp_path / "files", {}
    for i, df in enumerate(datafiles):
        name = df.findtext("name")
        content = rng.randbytes(SIZES.get(name, rng.randrange(2, 64 * 1024)))
        location = "v%d/%s" % (i, name)
        set_attribute(df, "checksum", "%x" % zlib.crc32(content))
        set_attribute(df, "fileSize", str(len(content)))
        set_attribute(df, "location", location)
        path = ddir / location
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        contents[(df.find("dataset").get("ref"), name)] = content
    datasets = {el.get("id"): el.findtext("name") for el in tree.iter("dataset") if el.get("id")}
    out = tmp_path / "source.xml"
    tree.write(str(out), xml_declaration=True, encoding="UTF-8")
    return out, ddir, contents, datasets


def set_attribute(df, tag, text):
    """Set an attribute of a Datafile element, added where a dump has it:
    attributes in name order, checksum first, fileSize and location just
    before name."""
    el = df.find(tag)
    if el is None:
        el = etree.Element(tag)
        if tag == "checksum":
            df.insert(0, el)
        else:
            df.find("name").addprevious(el)
    el.text = text


def datafiles(path) -> dict:
    """(dataset key, name) -> the Datafile's element, of an XML dump."""
    return {(el.find("dataset").get("ref"), el.findtext("name")): el
            for el in etree.parse(str(path)).iter("datafile") if el.get("id")}


def fields(el) -> list:
    """A Datafile element's children as text, but for its location."""
    return [etree.tostring(child, with_tail=False) for child in el if child.tag != "location"]


def files_under(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def without_locations(data: bytes) -> bytes:
    return re.sub(rb"<location>[^<]*</location>", b"<location/>", dump_body(data))


def test_dump_with_data_ingest_elsewhere_dump_again(tmp_path):
    src, ddir, contents, dataset_names = make_source(tmp_path)
    dumps = {}
    with serving(tmp_path / "a.sqlite") as a:
        proc = ingest(a, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
        assert proc.returncode == 0, proc.stderr
        dumps["A"], dir1 = tmp_path / "a.xml", tmp_path / "dir1"
        proc = dump(a, "-f", "XML", "-o", str(dumps["A"]), "--with-data", str(dir1))
        assert proc.returncode == 0, proc.stderr
    with serving(tmp_path / "b.sqlite") as b:
        proc = ingest(b, "-i", str(dumps["A"]), "--upload-datafiles", "--datafile-dir", str(dir1))
        assert proc.returncode == 0, proc.stderr
        dumps["B"], dir2 = tmp_path / "b.xml", tmp_path / "dir2"
        proc = dump(b, "-f", "XML", "-o", str(dumps["B"]), "--with-data", str(dir2))
        assert proc.returncode == 0, proc.stderr
        with logged_in(b) as client:
            catalogued = client.search("SELECT df FROM Datafile df INCLUDE df.dataset")
            served = {(df.dataset.name, df.name): (df.fileSize, df.checksum,
                                                   client.ids.getData(DataSelection([df])).read())
                      for df in catalogued}

    # The metadata: the same in both dumps but where each IDS put the files.
    a_bytes, b_bytes = dumps["A"].read_bytes(), dumps["B"].read_bytes()
    assert without_locations(a_bytes) == without_locations(b_bytes)
    source, in_a, in_b = datafiles(src), datafiles(dumps["A"]), datafiles(dumps["B"])
    assert len(source) == 13 and in_a.keys() == in_b.keys() == source.keys() == contents.keys()
    for dumped, data in ((in_a, a_bytes), (in_b, b_bytes)):
        assert data.count(b"<location>") == 13
        assert all(el.findtext("location") for el in dumped.values())
    for key, el in source.items():
        assert fields(in_a[key]) == fields(el), key
    # The files: each at its location, nothing else, the content it started as.
    for saved, dumped in ((dir1, in_a), (dir2, in_b)):
        got = files_under(saved)
        assert got.keys() == {el.findtext("location") for el in dumped.values()}
        for key, el in dumped.items():
            assert got[el.findtext("location")] == contents[key], key
    # B catalogues each file's size and checksum, and serves its content.
    expected = {(dataset_names[ref], name): (len(content), "%x" % zlib.crc32(content), content)
                for (ref, name), content in contents.items()}
    assert served == expected
    assert {len(c) for c in contents.values()} >= {0, 1, 5 * MIB}
