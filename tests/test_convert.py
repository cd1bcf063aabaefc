"""Offline conversion: python-icat's example files, through our reader and
writer with no catalogue, come out byte for byte as python-icat wrote them
(apart from the four header lines), in both formats and from legacy files."""

import io
import re

import pytest
from lxml import etree

from icatdump.dumpfile import DataFileError
from icatdump.entity import Entity
from icatdump.keys import KeyError_
from icatdump.offline import OfflineClient, convert
from icatdump.client import SearchResultError
from icatdump.schema import Schema

VERSIONS = ["4.4", "4.7", "4.10", "5.0", "6.2"]
EXT = {"XML": "xml", "YAML": "yaml"}


def body(data: bytes, fmt: str) -> bytes:
    """A data file without its four header lines (and nothing else).

    Only the header is cut, so a ``<date>`` element inside ``<data>`` (a
    DataPublicationDate) still counts.
    """
    lines = data.splitlines(keepends=True)
    if fmt == "XML":
        assert lines[2] == b"<head>\n" and lines[7] == b"</head>\n"
    else:
        assert lines[0] == b"%YAML 1.1\n"
        assert all(l.startswith(b"# ") for l in lines[1:5])
    head = slice(3, 7) if fmt == "XML" else slice(1, 5)
    del lines[head]
    return b"".join(lines)


def run_convert(src, infmt, outfmt, version, tmp_path) -> bytes:
    out = tmp_path / ("out." + EXT[outfmt])
    convert(str(src), infmt, str(out), outfmt, Schema.for_version(version))
    return out.read_bytes()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("infmt", ["XML", "YAML"])
@pytest.mark.parametrize("outfmt", ["XML", "YAML"])
def test_examples_convert_byte_identical(example, tmp_path, version, infmt, outfmt):
    src = example("icatdump-%s.%s" % (version, EXT[infmt]))
    expected = example("icatdump-%s.%s" % (version, EXT[outfmt])).read_bytes()
    got = run_convert(src, infmt, outfmt, version, tmp_path)
    assert body(got, outfmt) == body(expected, outfmt)


@pytest.mark.parametrize("version", ["4.4", "4.7", "4.10"])
@pytest.mark.parametrize("infmt", ["XML", "YAML"])
@pytest.mark.parametrize("outfmt", ["XML", "YAML"])
def test_legacy_files_convert_to_current_layout(example, tmp_path, version, infmt, outfmt):
    src = example("legacy-icatdump-%s.%s" % (version, EXT[infmt]))
    expected = example("icatdump-%s.%s" % (version, EXT[outfmt])).read_bytes()
    assert body(run_convert(src, infmt, outfmt, version, tmp_path), outfmt) \
        == body(expected, outfmt)


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_ref_file_round_trips(example, tmp_path, fmt):
    src = example("ref-icatdump-5.0." + EXT[fmt])
    assert body(run_convert(src, fmt, fmt, "5.0", tmp_path), fmt) == body(src.read_bytes(), fmt)


def test_one_big_chunk_is_split_like_icatdump(example, tmp_path):
    """All chunks merged into one <data>: convert restores icatdump's chunks
    (one per investigation and per publication, data collections alone)."""
    original = example("icatdump-5.0.xml").read_bytes()
    merged = re.sub(rb"</data>\n<data>\n", b"", original)
    assert merged.count(b"<data>") == 1
    src = tmp_path / "merged.xml"
    src.write_bytes(merged)
    assert body(run_convert(src, "XML", "XML", "5.0", tmp_path), "XML") \
        == body(original, "XML")


@pytest.mark.parametrize("version", VERSIONS)
def test_written_xml_validates_against_python_icat_xsd(example, tmp_path, version):
    schema = etree.XMLSchema(etree.parse(str(example("icatdata-%s.xsd" % version))))
    src = example("icatdump-%s.yaml" % version)
    doc = etree.fromstring(run_convert(src, "YAML", "XML", version, tmp_path))
    assert schema.validate(doc), schema.error_log.last_error


def test_header_comes_from_the_client(example, tmp_path):
    out = tmp_path / "out.yaml"
    convert(str(example("icatdump-6.2.yaml")), "YAML", str(out), "YAML",
            Schema.for_version("6.2"), url="https://icat.example.org/x", apiversion="6.2.0")
    head = out.read_text().splitlines()[:5]
    assert head[0] == "%YAML 1.1"
    assert head[2] == "# Service: https://icat.example.org/x"
    assert head[3] == "# ICAT-API: 6.2.0"
    assert head[4].startswith("# Generator: icatdump")


def test_convert_failure_leaves_no_output(tmp_path):
    src = tmp_path / "bad.yaml"
    src.write_text("---\nfacility:\n  Facility_name-X:\n    nmae: X\n")
    out = tmp_path / "out.xml"
    with pytest.raises(DataFileError) as info:
        convert(str(src), "YAML", str(out), "XML", Schema.for_version("6.2"))
    assert "nmae" in str(info.value) and "line 3" in str(info.value)
    assert list(tmp_path.iterdir()) == [src]


# -- the offline client ----------------------------------------------------------

def _all_refs(path):
    return set(re.findall(r'ref="([^"]+)"', path.read_text()))


@pytest.mark.parametrize("version", ["4.4", "6.2"])
def test_placeholder_reproduces_every_key(example, version):
    client = OfflineClient(Schema.for_version(version))
    keys = [k for k in _all_refs(example("icatdump-%s.xml" % version))
            if not re.search(r"_\d{8}$", k)]
    assert len(keys) > 50
    for key in keys:
        obj = client.search_unique_key(key)
        assert obj.unique_key() == key
        assert obj.unique_key({}) == key
        obj.sortkey()


def test_placeholder_values_and_sortkey():
    client = OfflineClient(Schema.for_version("6.2"))
    key = ("Dataset_investigation-(facility-(name-ESNF)_name-10100601=2DST_"
           "visitId-1=2E1=2DN)_name-e208341")
    ds = client.search_unique_key(key)
    assert ds.name == "e208341"
    assert ds.investigation.visitId == "1.1-N"
    assert ds.investigation.facility.name == "ESNF"
    assert ds.sortkey() == ["Dataset", ["Investigation", ["Facility", "ESNF"],
                                        "10100601-ST", "1.1-N"], "e208341"]


def test_placeholder_uses_and_fills_objindex():
    client = OfflineClient(Schema.for_version("6.2"))
    index = {}
    obj = client.search_unique_key("Facility_name-ESNF", index)
    assert index == {"Facility_name-ESNF": obj}
    assert client.search_unique_key("Facility_name-ESNF", index) is obj


@pytest.mark.parametrize("key", [
    "Facility_nmae-ESNF",                     # no such attribute
    "Nonsense_name-x",                        # no such entity
    "Dataset_name-x",                         # constraint part missing
    "DataCollection_00000001",                # generic key not in the file
    "Facility_name-E=ZZ",                     # bad escape
    "Investigation_investigationUsers-(x-y)",  # one-to-many in a key
])
def test_placeholder_rejects_bad_keys(key):
    client = OfflineClient(Schema.for_version("6.2"))
    with pytest.raises(KeyError_):
        client.search_unique_key(key)


def test_create_many_assigns_ids_recursively():
    schema = Schema.for_version("6.2")
    client = OfflineClient(schema)
    inv = Entity(schema["Investigation"], {"keywords": [
        Entity(schema["Keyword"], {"name": "a"}), Entity(schema["Keyword"], {"name": "b"})]})
    fac = Entity(schema["Facility"], {"name": "F"})
    ids = client.create_many([inv, fac])
    assert ids == [inv.id, fac.id]
    all_ids = [inv.id, fac.id] + [k.id for k in inv.keywords]
    assert None not in all_ids and len(set(all_ids)) == 4


def test_search_is_impossible_offline():
    client = OfflineClient(Schema.for_version("6.2"))
    with pytest.raises(SearchResultError):
        client.search("SELECT o FROM Facility o")


def test_reference_by_attributes_cannot_convert_offline(tmp_path):
    src = tmp_path / "in.xml"
    src.write_text('<icatdata><data><investigationType id="t"><name>x</name>'
                   '<facility name="ESNF"/></investigationType></data></icatdata>')
    with pytest.raises(DataFileError, match="no catalogue"):
        convert(str(src), "XML", io.BytesIO(), "XML", Schema.for_version("6.2"))
