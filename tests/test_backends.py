"""The XML and YAML backends: parsing details, hostile input, and the
writers' byte layout checked against what lxml / PyYAML give for a whole
chunk at once (python-icat's way)."""

import datetime as dt
import io
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from lxml import etree

from icatdump.backends import xml as xml_backend
from icatdump.backends import yaml as yaml_backend
from icatdump.dumpfile import (DataFileError, RawObject, RawRef, Record, discover_backends,
                               get_backend)
from icatdump.offline import OfflineClient, convert
from icatdump.schema import Schema

SCHEMA = Schema.for_version("6.2")


def client():
    return OfflineClient(SCHEMA)


def xml_raw(text: str) -> list[list[RawObject]]:
    """The raw records of each chunk of an XML document."""
    reader = xml_backend.reader(client(), io.BytesIO(text.encode()))
    return [list(reader.parse_chunk(c)) for c in reader.chunks()]


def yaml_raw(text: str) -> list[list[RawObject]]:
    reader = yaml_backend.reader(client(), io.StringIO(text))
    return [list(reader.parse_chunk(c)) for c in reader.chunks()]


def read_objs(fmt, data):
    """Objects as an ingest sees them, embedded children still attached."""
    stream = io.BytesIO(data.encode()) if fmt == "XML" else io.StringIO(data)
    c = client()
    reader = get_backend(fmt)[0](c, stream)
    out = []
    for chunk in reader.chunks():
        index = {}
        for key, obj in reader.getobjs_from_data(chunk, index):
            c.create(obj)
            reader.index_object(index, key, obj)
            out.append(obj)
    return out


# -- registry ---------------------------------------------------------------------

def test_backends_are_found_through_entry_points():
    backends = discover_backends()
    assert backends["XML"] == (xml_backend.XMLDumpFileReader, xml_backend.XMLDumpFileWriter)
    assert backends["YAML"] == (yaml_backend.YAMLDumpFileReader,
                                yaml_backend.YAMLDumpFileWriter)
    assert xml_backend.reader.mode == "rb" and xml_backend.writer.mode == "wb"
    assert "b" not in yaml_backend.reader.mode and "b" not in yaml_backend.writer.mode


# -- XML reader -------------------------------------------------------------------

def test_xml_values_verbatim_and_line_numbers():
    [[obj]] = xml_raw("<icatdata>\n<data>\n<instrument id=\"I\">\n"
                      "<description>\n  two\n  lines  </description>\n"
                      "<fullName/>\n<name> x </name>\n</instrument>\n</data>\n</icatdata>")
    assert obj.line == 3 and obj.key == "I"
    assert obj.fields == [("description", "\n  two\n  lines  "), ("fullName", None),
                          ("name", " x ")]


def test_xml_references_all_forms():
    [[ref, ds]] = xml_raw(
        '<icatdata><data>'
        '<investigationRef id="inv_1" name="X" visitId="1" facility.name="F"/>'
        '<dataset id="d"><name>n</name><investigation ref="inv_1"/>'
        '<sample name="s1" investigation.ref="inv_1"/>'
        '<type id="ignored" name="raw" facility.name="F"/></dataset>'
        '</data></icatdata>')
    assert ref.ref_only and ref.tag == "investigationRef" and ref.key == "inv_1"
    assert dict(ref.fields) == {"name": "X", "visitId": "1", "facility.name": "F"}
    fields = dict(ds.fields)
    assert fields["investigation"] == "inv_1"  # a plain key string
    assert fields["sample"] == RawRef(attrs={"name": "s1", "investigation.ref": "inv_1"})
    assert fields["type"] == RawRef(attrs={"name": "raw", "facility.name": "F"})


def test_xml_embedded_children_aliases_and_lowercase_tags():
    objs = read_objs("XML", (
        '<icatdata><data>'
        '<facility id="F"><name>F</name></facility>'
        '<grouping id="G"><name>g</name></grouping>'
        '<rule id="R"><crudFlags>R</crudFlags><what>Facility</what><group ref="G"/></rule>'
        '<parametertype id="P"><applicableToDatafile>true</applicableToDatafile>'
        '<enforced>false</enforced><name>p</name><units>u</units><valueType>STRING</valueType>'
        '<verified>false</verified><facility ref="F"/>'
        '<permissibleStringValues><value>a</value></permissibleStringValues>'
        '<permissibleStringValues><value>b</value></permissibleStringValues>'
        '</parametertype></data></icatdata>'))
    fac, grp, rule, ptype = objs
    assert rule.grouping is grp
    assert ptype.facility is fac and ptype.applicableToDatafile is True
    assert [v.value for v in ptype.permissibleStringValues] == ["a", "b"]


def test_xml_comments_and_processing_instructions_are_ignored():
    text = ('<?xml version="1.0"?>\n<!-- top --><icatdata><?pi x?><data><!-- c1 -->'
            '<facility id="F"><!-- c2 --><name>E<!-- c3 -->SNF</name><?pi y?></facility>'
            '<!-- c4 --></data></icatdata><!-- end -->')
    [fac] = read_objs("XML", text)
    assert fac.name == "ESNF"


def test_xml_comments_everywhere_in_an_example(example, tmp_path):
    """Comments after every tag of python-icat's 5.0 example change nothing."""
    original = example("icatdump-5.0.xml").read_bytes()
    commented = original.replace(b">\n", b"><!-- note -->\n").replace(
        b"<?xml version=\"1.0\" encoding=\"utf-8\"?><!-- note -->",
        b"<?xml version=\"1.0\" encoding=\"utf-8\"?>")
    assert commented.count(b"<!--") > 1000
    src, out = tmp_path / "c.xml", tmp_path / "out.xml"
    src.write_bytes(commented)
    convert(str(src), "XML", str(out), "XML", Schema.for_version("5.0"))
    strip = lambda b: b.split(b"</head>\n", 1)[1]  # noqa: E731
    assert strip(out.read_bytes()) == strip(original)


def test_xml_errors_name_the_line_and_chunk():
    with pytest.raises(DataFileError) as info:
        read_objs("XML", '<icatdata>\n<data>\n<facility id="F"><name>F</name></facility>\n'
                  '</data>\n<data>\n<facility id="G">\n<nmae>G</nmae>\n</facility>\n'
                  '</data>\n</icatdata>')
    msg = str(info.value)
    assert "chunk 2" in msg and "line 6" in msg and "nmae" in msg and "G" in msg


def test_xml_syntax_error_is_clean():
    with pytest.raises(DataFileError) as info:
        read_objs("XML", "<icatdata>\n<data>\n<facility><name>F</nam></facility></data>")
    assert "XML syntax error" in str(info.value) and "line 3" in str(info.value)


def test_xml_unknown_tag_is_clean():
    with pytest.raises(DataFileError, match="unknown entity type 'facilty'"):
        read_objs("XML", "<icatdata><data><facilty><name>F</name></facilty></data></icatdata>")
    with pytest.raises(DataFileError, match="unknown entity type 'facilty'"):
        read_objs("XML", '<icatdata><data><faciltyRef id="x" name="F"/></data></icatdata>')


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE icatdata [
<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<icatdata><data><facility id="F" x="&lol9;"><name>&lol9;</name></facility></data></icatdata>
"""


def test_xml_billion_laughs_is_refused():
    # libxml2's amplification guard or our DOCTYPE refusal, whichever is first.
    with pytest.raises(DataFileError, match="DOCTYPE|amplification"):
        read_objs("XML", BILLION_LAUGHS)


@pytest.mark.parametrize("decl", [
    '<!DOCTYPE icatdata [<!ENTITY xxe SYSTEM "file://{path}">]>',
    '<!DOCTYPE icatdata [<!ENTITY % p SYSTEM "file://{path}"> %p;]>',
    '<!DOCTYPE icatdata SYSTEM "file://{path}">',
    '<!DOCTYPE icatdata SYSTEM "http://127.0.0.1:9/evil.dtd">',
])
def test_xml_external_entities_are_not_read(tmp_path, decl):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    text = ('<?xml version="1.0"?>\n' + decl.format(path=secret) +
            '\n<icatdata><data><facility id="F"><name>&xxe;</name></facility></data></icatdata>')
    with pytest.raises(DataFileError) as info:
        read_objs("XML", text)
    assert "TOPSECRET" not in str(info.value)


# -- YAML reader ------------------------------------------------------------------

def test_yaml_restore_order_and_lines():
    chunks = yaml_raw("---\nuser:\n  U_b:\n    name: b\n  U_a:\n    name: a\n"
                      "facility:\n  F:\n    name: F\n---\ninvestigationFacilityCycle:\n"
                      "  X:\n    facilityCycle: C\n")
    assert [(o.tag, o.key, o.line) for o in chunks[0]] == [
        ("user", "U_a", 5), ("user", "U_b", 3), ("facility", "F", 8)]
    assert chunks[1][0].tag == "investigationFacilityCycle"


def test_yaml_values_keep_their_types_and_children_their_lines():
    [[inv]] = yaml_raw("investigation:\n  I:\n    name: x\n    fileCount: 3\n"
                       "    startDate: 2010-01-01 10:00:00\n    doi: null\n"
                       "    keywords:\n    - name: k1\n    - name: k2\n")
    fields = dict(inv.fields)
    assert fields["fileCount"] == 3 and fields["doi"] is None
    assert isinstance(fields["startDate"], dt.datetime)
    assert [(k.tag, k.fields, k.line) for k in fields["keywords"]] == [
        ("keyword", [("name", "k1")], 8), ("keyword", [("name", "k2")], 9)]


def test_yaml_reads_objects_with_references():
    objs = read_objs("YAML", "---\nfacility:\n  Facility_name-F:\n    name: F\n"
                     "investigationType:\n  T:\n    facility: Facility_name-F\n    name: t\n")
    assert objs[1].facility is objs[0]


@pytest.mark.parametrize("text, message, line", [
    ("---\nfacilty:\n  F:\n    name: F\n", "unknown entry 'facilty'", 2),
    ("---\nfacility:\n  F:\n    name: F\n  F:\n    name: G\n", "duplicate key 'F'", 5),
    ("---\nfacility:\n  F:\n    name: [F\n", "YAML error", 5),
    ("---\n- facility\n", "must be a mapping", 2),
    ("---\nfacility:\n  F:\n    nmae: F\n", "invalid attribute 'nmae'", 3),
])
def test_yaml_errors_are_clean_and_located(text, message, line):
    with pytest.raises(DataFileError) as info:
        read_objs("YAML", text)
    assert message in str(info.value) and "line %d" % line in str(info.value)
    assert "chunk 1" in str(info.value)


def test_yaml_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = ("---\nfacility:\n  F:\n    name: !!python/object/apply:os.system\n"
            "    - touch %s\n" % marker)
    with pytest.raises(DataFileError, match="python/object") as info:
        read_objs("YAML", text)
    assert "line 4" in str(info.value)
    assert not marker.exists()


def test_yaml_anchors_and_merge_keys():
    fac, other = read_objs("YAML", "---\nfacility:\n  F: &f\n    name: F\n    description: d\n"
                           "  G:\n    <<: *f\n    name: G\n")
    assert (fac.name, other.name, other.description) == ("F", "G", "d")


# -- XML writer -------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",),
                              blacklist_characters="\x00\ufffe\uffff",
                              min_codepoint=1).filter(lambda c: True), max_size=40) \
    .filter(lambda s: all(c in "\t\n\r" or ord(c) >= 0x20 for c in s))


def _records(depth=0):
    leaf_attrs = st.lists(st.tuples(st.sampled_from(["name", "description", "value"]),
                                    st.one_of(_text, st.integers(), st.booleans())),
                          max_size=3)
    refs = st.lists(st.tuples(st.sampled_from(["facility", "type"]), _text), max_size=2)
    if depth >= 2:
        children = st.just([])
    else:
        children = st.lists(st.tuples(st.sampled_from(["keywords", "parameters"]),
                                      st.lists(_records(depth + 1), min_size=1, max_size=2)),
                            max_size=2)
    return st.builds(lambda a, r, c: Record(SCHEMA["Investigation"], a, r, c),
                     leaf_attrs, refs, children)


def _whole_chunk_xml(records):
    """python-icat's way: one tree per chunk, pretty-printed at once."""
    data = etree.Element("data")
    for key, rec in records:
        elem = _tree(rec.type.instance_name, rec)
        elem.set("id", key)
        data.append(elem)
    return etree.tostring(data, pretty_print=True)


def _tree(tag, rec):
    elem = etree.Element(tag)
    for n, v in rec.attrs:
        etree.SubElement(elem, n).text = xml_backend.to_text(v)
    for n, k in rec.refs:
        etree.SubElement(elem, n, ref=k)
    for n, items in rec.children:
        for c in items:
            elem.append(_tree(n, c))
    return elem


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_text, _records()), min_size=1, max_size=3))
def test_xml_streamed_objects_equal_a_pretty_printed_chunk(records):
    out = io.BytesIO()
    writer = xml_backend.writer(client(), out)
    writer.startdata()
    for key, rec in records:
        writer.write_record(key, rec)
    writer.startdata()
    assert out.getvalue() == _whole_chunk_xml(records)


def test_xml_writer_layout():
    out = io.BytesIO()
    fac = Record(SCHEMA["Facility"], [("name", "Dülmen <&>")], [], [])
    with xml_backend.writer(client(), out) as w:
        w.startdata()
        w.startdata()                       # an empty chunk leaves no trace
        w.write_record("Facility_name-x", fac)
        w.startdata()
    text = out.getvalue()
    assert text.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n')
    assert text.endswith(b'</head>\n<data>\n  <facility id="Facility_name-x">\n'
                         b'    <name>D&#252;lmen &lt;&amp;&gt;</name>\n  </facility>\n'
                         b'</data>\n</icatdata>\n')
    text.decode("ascii")


def test_xml_writer_refuses_what_xml_cannot_carry():
    """As lxml refuses it, naming the object's key."""
    for bad in ("\x00", "a\x07b", "\x1f", "\ud800", "\uffff"):
        rec = Record(SCHEMA["Facility"], [("name", bad)], [], [])
        w = xml_backend.writer(client(), io.BytesIO())
        w.startdata()
        with pytest.raises(ValueError, match="^Facility_name-x: All strings must be XML"):
            w.write_record("Facility_name-x", rec)
        with pytest.raises(ValueError):
            etree.Element("name").text = bad


# -- YAML writer ------------------------------------------------------------------

_ytext = st.one_of(
    st.text(st.sampled_from("ab Z09-_:'\"#\n\t\\,.[]{}&*!|>%@`?üé東😀\x85\u2028\x07"),
            max_size=200),
    st.text(st.sampled_from("a=()_-Z0"), min_size=110, max_size=140))
_yvalue = st.one_of(_ytext, st.integers(), st.booleans())
_yobj = st.recursive(
    st.dictionaries(st.sampled_from(["name", "description", "value", "type"]), _yvalue,
                    max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(["keywords", "parameters", "name"]),
                                  st.lists(inner, min_size=1, max_size=2), max_size=2),
    max_leaves=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["dataset", "user", "facility"]),
                       st.dictionaries(_ytext.filter(bool), _yobj, min_size=1, max_size=4),
                       min_size=1, max_size=3))
def test_yaml_mixed_emitters_equal_pure_pyyaml(data):
    expected = yaml.dump(data, Dumper=yaml.SafeDumper, default_flow_style=False,
                         explicit_start=True)
    assert yaml_backend.dump_chunk(data) == expected


def test_yaml_direct_scalars_equal_pure_pyyaml():
    """Short values of every kind the direct writer decides on its own."""
    import random
    rnd = random.Random(7)
    chars = "ab Z09-_:'\"#\n\t\\,.[]{}&*!|>%@`?\u00fc\u6771\U0001F600\x85\u2028\x07\x7f" \
            "\ufeff\xa0 /()=+~<"
    values = ["yes", "No", "1.0", "1e3", "0x1F", "1_000", "12:30", "~", "null", "2020-01-01",
              "<<", "=", ".inf", "-", "+1", "/x", "(a)", "a.b", "_x", "1:2:3", "---a", "...",
              "a" * 75, "a " * 40, "\u00e9" * 20, -5, 10 ** 30, True]
    values += ["".join(rnd.choice(chars) for _ in range(rnd.randint(0, 14)))
               for _ in range(1500)]
    for v in values:
        for key in ("K", "K" * 122, "K" * 123):
            data = {"dataset": {key: {"a": v, "parameters": [{"c": v}, {}]}}}
            assert yaml_backend.dump_chunk(data) == yaml.dump(
                data, Dumper=yaml.SafeDumper, default_flow_style=False, explicit_start=True), v


def test_yaml_resolver_shortcuts_give_pyyaml_tags():
    """The reader's resolver (remembered tags, plain strings decided by
    their first character) tags every plain scalar as PyYAML's does."""
    import random
    from yaml.nodes import ScalarNode
    rnd = random.Random(11)
    chars = "aAzZyYnNoOtTfF0189+-._:~<=!&*eE xX/\u00fc\t"
    values = ["", "~", "null", "NULL", "yes", "Off", "true", "false", "on", "n", "y", "1",
              "-1", "+1", ".5", ".inf", "-.Inf", ".NaN", "0x1F", "0o17", "0b101", "1_000",
              "12:30:00", "190:20:30", "1e3", "1.0e+3", "2020-01-01", "2020-01-01T00:00:00Z",
              "2020-1-1 1:02:03.5 +01:00", "<<", "=", "!", "&", "*", "file_00001.nxs",
              "inv0/ds0/x", "ds-00 \u00d1and\u00fa", "Datafile_name-x"]
    values += ["".join(rnd.choice(chars) for _ in range(rnd.randint(1, 12)))
               for _ in range(3000)]
    ours = yaml_backend._Loader("")
    theirs = yaml.SafeLoader("")
    for v in values * 2:        # twice: remembered answers too
        assert ours.resolve(ScalarNode, v, (True, False)) == \
            theirs.resolve(ScalarNode, v, (True, False)), v


def test_yaml_examples_chunks_equal_pure_pyyaml(example):
    for v in ("4.4", "5.0", "6.2"):
        with open(example("icatdump-%s.yaml" % v)) as f:
            for doc in yaml.safe_load_all(f):
                assert yaml_backend.dump_chunk(doc) == yaml.dump(
                    doc, Dumper=yaml.SafeDumper, default_flow_style=False, explicit_start=True)


def test_yaml_writer_layout():
    out = io.StringIO()
    rec = Record(SCHEMA["Dataset"], [("complete", False), ("fileCount", 1),
                                      ("startDate", dt.datetime(2008, 3, 13, 10, 39, 42,
                                                                tzinfo=dt.timezone.utc)),
                                      ("description", "1.5")],
                 [("type", "DatasetType_facility-(name-ESNF)_name-raw")], [])
    with yaml_backend.writer(client(), out) as w:
        w.startdata()
        w.write_record("Dataset_x", rec)
        w.startdata()
    lines = out.getvalue().splitlines()
    assert lines[0] == "%YAML 1.1" and lines[4].startswith("# Generator: icatdump")
    assert lines[5:] == ["---", "dataset:", "  Dataset_x:", "    complete: false",
                         "    description: '1.5'", "    fileCount: 1",
                         "    startDate: '2008-03-13T10:39:42+00:00'",
                         "    type: DatasetType_facility-(name-ESNF)_name-raw"]


def test_writer_output_is_atomic(tmp_path):
    target = tmp_path / "out.xml"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with xml_backend.writer(client(), str(target)) as w:
            w.startdata()
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.xml"]
