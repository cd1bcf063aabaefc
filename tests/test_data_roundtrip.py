"""A catalogue and its files moved to another, and back out unchanged.

python-icat's 6.2 example, with two more Datafiles whose names have
spaces and non-ASCII letters, and generated content for every Datafile
(0 bytes, 1 byte, 5 MiB, the rest a few random KiB):

    icatingest --upload-datafiles into ``icatdata serve`` A
    icatdump --with-data DIR1 from A
    icatingest --upload-datafiles --datafile-dir DIR1 into a fresh serve B
    icatdump --with-data DIR2 from B

Every step is the real command in its own process against real servers
on 127.0.0.1, the dumps in XML and again in YAML. What must hold: the
two dumps are the same byte for byte but for their header (date, server
URL) and the Datafiles' locations, which each IDS chooses itself; in
XML, A's Datafiles are the example's in every other field; every file in DIR1 and
DIR2 is the content it started as; B catalogues each Datafile with its
file's size and CRC32, and serves that content to python-icat's IDS
client.
"""

from __future__ import annotations

import copy
import random
import re
import shutil
import zlib

import pytest
import yaml
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
    """(dataset key, name) -> (location, every other field as written) of
    the Datafiles of an XML or YAML dump."""
    if path.suffix == ".yaml":
        with open(path, encoding="utf-8") as f:
            found = [values for doc in yaml.safe_load_all(f) if doc
                     for values in (doc.get("datafile") or {}).values()]
        return {(v["dataset"], v["name"]): (v.get("location"),
                                            {k: x for k, x in v.items() if k != "location"})
                for v in found}
    return {(el.find("dataset").get("ref"), el.findtext("name")): (
        el.findtext("location"),
        [etree.tostring(child, with_tail=False) for child in el if child.tag != "location"])
        for el in etree.parse(str(path)).iter("datafile") if el.get("id")}


def files_under(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


#: A Datafile's location in an XML or a YAML dump.
LOCATION = re.compile(rb"<location>[^<]*</location>|^ +location: .*$", re.M)


def without_locations(data: bytes) -> tuple[bytes, int]:
    """A dump without its header, its locations blanked; and how many."""
    return LOCATION.subn(b"(location)", dump_body(data))


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_dump_with_data_ingest_elsewhere_dump_again(tmp_path, fmt):
    src, ddir, contents, dataset_names = make_source(tmp_path)
    dumps = {}
    with serving(tmp_path / "a.sqlite") as a:
        proc = ingest(a, "-i", str(src), "--upload-datafiles", "--datafile-dir", str(ddir))
        assert proc.returncode == 0, proc.stderr
        dumps["A"], dir1 = tmp_path / ("a." + fmt.lower()), tmp_path / "dir1"
        proc = dump(a, "-f", fmt, "-o", str(dumps["A"]), "--with-data", str(dir1))
        assert proc.returncode == 0, proc.stderr
    with serving(tmp_path / "b.sqlite") as b:
        proc = ingest(b, "-i", str(dumps["A"]), "--upload-datafiles", "--datafile-dir", str(dir1))
        assert proc.returncode == 0, proc.stderr
        dumps["B"], dir2 = tmp_path / ("b." + fmt.lower()), tmp_path / "dir2"
        proc = dump(b, "-f", fmt, "-o", str(dumps["B"]), "--with-data", str(dir2))
        assert proc.returncode == 0, proc.stderr
        with logged_in(b) as client:
            catalogued = client.search("SELECT df FROM Datafile df INCLUDE df.dataset")
            from_b = {(df.dataset.name, df.name): (df.fileSize, df.checksum,
                                                   client.ids.getData(DataSelection([df])).read())
                      for df in catalogued}

    # The metadata: the same in both dumps but where each IDS put the files.
    a_body, b_body = (without_locations(dumps[x].read_bytes()) for x in "AB")
    assert a_body == b_body and a_body[1] == 13
    source, in_a, in_b = datafiles(src), datafiles(dumps["A"]), datafiles(dumps["B"])
    assert len(source) == 13 and in_a.keys() == in_b.keys() == source.keys() == contents.keys()
    assert all(location for dumped in (in_a, in_b) for location, _ in dumped.values())
    if fmt == "XML":        # the example's own format: A has its Datafiles unchanged
        for key, (_, rest) in source.items():
            assert in_a[key][1] == rest, key
    # The files: each at its location, nothing else, the content it started as.
    for saved, dumped in ((dir1, in_a), (dir2, in_b)):
        got = files_under(saved)
        assert got.keys() == {location for location, _ in dumped.values()}
        for key, (location, _) in dumped.items():
            assert got[location] == contents[key], key
    # B catalogues each file's size and checksum, and serves its content.
    expected = {(dataset_names[ref], name): (len(content), "%x" % zlib.crc32(content), content)
                for (ref, name), content in contents.items()}
    assert from_b == expected
    assert {len(c) for c in contents.values()} >= {0, 1, 5 * MIB}


def test_locations_with_spaces_and_non_ascii_are_saved(tmp_path):
    """Locations as another IDS may make them, of the names themselves
    (``v11/run 1 ü.dat``): icatdump --with-data finds each Datafile by
    its location through ICAT and saves the file at that path."""
    src, ddir, contents, _ = make_source(tmp_path)
    with serving(tmp_path / "a.sqlite") as a:
        proc = ingest(a, "-i", str(src))            # metadata only, locations as written
        assert proc.returncode == 0, proc.stderr
        shutil.copytree(ddir, a[2], dirs_exist_ok=True)
        out, saved = tmp_path / "a.xml", tmp_path / "saved"
        proc = dump(a, "-f", "XML", "-o", str(out), "--with-data", str(saved))
        assert proc.returncode == 0, proc.stderr
    dumped = datafiles(out)
    assert {location for location, _ in dumped.values()} >= {
        "v11/run 1 ü.dat", "v12/日本 データ.nxs"}
    assert files_under(saved) == {location: contents[key]
                                  for key, (location, _) in dumped.items()}
