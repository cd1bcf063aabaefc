"""One table of field rules: ``icatdata check`` and a real ingest agree.

The property test puts one random value (strings with astral-plane
characters and lengths around the limit in ICAT's unit, numbers, dates,
enumeration names, booleans, nulls -- of the field's type or not) into one
field of a small valid file, then asks both sides: ``check`` (offline) and
an ingest into an embedded catalogue (a SQLite file).  They must give the
same verdict, in XML (all values text) and in YAML (typed scalars).  The
emoji case runs both commands as subprocesses.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
import sys
from xml.sax.saxutils import escape

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from icatdump.check import check
from icatdump.dumpfile import open_dumpfile
from icatdump.ingest import ingest
from icatdump.rules import field_rule, icat_length, rules_of
from icatdump.schema import ENUMS, Schema
from icatdump.store import EmbeddedClient, init_catalogue

SCHEMA = Schema.for_version("6.2")

#: A small valid chunk: (tag, key, fields); a field value ("ref", key) is a
#: reference.  Keys are local names, which check does not compare with the
#: object (a changed name must not make a key mismatch).
BASE = [
    ("facility", "f", [("name", "F"), ("daysUntilRelease", 10)]),
    ("parameterType", "pt", [("facility", ("ref", "f")), ("name", "P"), ("units", "u"),
                             ("valueType", "NUMERIC"), ("minimumNumericValue", 1.5),
                             ("enforced", False)]),
    ("investigationType", "it", [("facility", ("ref", "f")), ("name", "T")]),
    ("datasetType", "dst", [("facility", ("ref", "f")), ("name", "D")]),
    ("investigation", "inv", [("facility", ("ref", "f")), ("name", "I"), ("visitId", "1"),
                              ("title", "A title"), ("type", ("ref", "it")),
                              ("startDate", dt.datetime(2020, 1, 2, 3, 4, 5,
                                                        tzinfo=dt.timezone.utc))]),
    ("sample", "s", [("investigation", ("ref", "inv")), ("name", "S")]),
    ("dataset", "ds", [("investigation", ("ref", "inv")), ("name", "DS"),
                       ("type", ("ref", "dst")), ("sample", ("ref", "s")),
                       ("complete", True)]),
    ("datafile", "df", [("dataset", ("ref", "ds")), ("name", "a.nxs"), ("fileSize", 7),
                        ("description", "d")]),
    ("study", "st", [("name", "Study"), ("status", "NEW")]),
]

#: The fields the test varies: every kind of rule is among them.
TARGETS = [
    (tag, name) for tag, name in [
        ("facility", "name"), ("facility", "description"), ("facility", "daysUntilRelease"),
        ("parameterType", "valueType"), ("parameterType", "minimumNumericValue"),
        ("parameterType", "enforced"), ("parameterType", "units"),
        ("investigation", "title"), ("investigation", "summary"),
        ("investigation", "startDate"), ("investigation", "fileSize"),
        ("investigation", "type"),
        ("dataset", "complete"), ("dataset", "location"), ("dataset", "sample"),
        ("dataset", "type"),
        ("datafile", "description"), ("datafile", "name"), ("datafile", "fileSize"),
        ("datafile", "datafileCreateTime"),
        ("study", "status"), ("study", "description"),
    ]]

ASTRAL = "\U0001F600\U00010348\U0002A6A5"
BMP = "aZ é中\u20ac"


@st.composite
def string_near_limit(draw, limit):
    """A string whose length in UTF-16 code units is within 3 of ``limit``,
    a random mix of astral (2 units) and BMP (1 unit) characters."""
    units = draw(st.integers(max(0, limit - 3), limit + 3))
    astral = draw(st.integers(0, units // 2))
    chars = [draw(st.sampled_from(ASTRAL)) for _ in range(astral)] + \
        [draw(st.sampled_from(BMP)) for _ in range(units - 2 * astral)]
    return "".join(draw(st.permutations(chars)))


#: Characters an XML 1.0 document can carry (no controls, no surrogates).
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                             blacklist_characters="\ufffe\uffff"), max_size=12)

DATES = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                     timezones=st.one_of(st.none(), st.timezones()))


def value_strategy(rule):
    """Values of every kind, with more of the kinds near the field's rule."""
    kinds = [
        st.none(),
        TEXT,
        st.integers(-2 ** 70, 2 ** 70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        DATES,
        st.sampled_from([v for vals in ENUMS.values() for v in vals]
                        + ["org.icatproject.ParameterValueType.STRING", "numeric",
                           "yes", "0", "1e3", " 12 ", "2020-02-30T00:00:00", ""]),
    ]
    if rule.length:
        kinds += [string_near_limit(rule.length)] * 3
    return st.one_of(kinds)


def objects(tag, name, value):
    """BASE with ``tag``'s ``name`` set to ``value`` (None: left out)."""
    out = []
    for otag, key, fields in BASE:
        fields = [(n, v) for n, v in fields if not (otag == tag and n == name)]
        if otag == tag and value is not None:
            fields.append((name, value))
        out.append((otag, key, fields))
    return out


def xml_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def write_xml(objs) -> str:
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
           '  <apiversion>6.2.0</apiversion>\n</head>\n<data>\n']
    for tag, key, fields in objs:
        out.append('  <%s id="%s">\n' % (tag, key))
        for name, value in fields:
            if isinstance(value, tuple):
                out.append('    <%s ref="%s"/>\n' % (name, value[1]))
            else:
                out.append("    <%s>%s</%s>\n" % (name, escape(xml_text(value)), name))
        out.append("  </%s>\n" % tag)
    out.append("</data>\n</icatdata>\n")
    return "".join(out)


def write_yaml(objs) -> str:
    chunk = {}
    for tag, key, fields in objs:
        chunk.setdefault(tag, {})[key] = {
            name: value[1] if isinstance(value, tuple) else value for name, value in fields}
    return "%YAML 1.1\n# ICAT-API: 6.2.0\n" + yaml.safe_dump(chunk, explicit_start=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An empty 6.2 catalogue, copied for each example."""
    path = tmp_path_factory.mktemp("rules") / "template.sqlite"
    init_catalogue(str(path), "6.2")
    return path


def verdicts(text: str, fmt: str, template, tmp_path):
    """(check's problems, the ingest's error or None) for one file."""
    report = check(io.BytesIO(text.encode("utf-8")), fmt, SCHEMA, name="t")
    problems = [str(p) for p in report.problems]
    db = tmp_path / "cat.sqlite"
    shutil.copyfile(template, db)
    client = EmbeddedClient(str(db))
    try:
        with open_dumpfile(client, io.BytesIO(text.encode("utf-8")), fmt, "r") as reader:
            ingest(client, reader)
        error = None
    except Exception as exc:            # any refusal is the ingest's verdict
        error = "%s: %s" % (type(exc).__name__, exc)
    finally:
        client.close()
    return problems, error


def test_base_file_is_valid(template, tmp_path):
    for fmt, text in (("XML", write_xml(BASE)), ("YAML", write_yaml(BASE))):
        assert verdicts(text, fmt, template, tmp_path) == ([], None)


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_check_and_ingest_agree(fmt, data, template, tmp_path):
    tag, name = data.draw(st.sampled_from(TARGETS), label="field")
    etype = SCHEMA.by_instance_name(tag)
    rule = field_rule(etype.name, etype.fields[name])
    if rule.kind == "ONE":
        value = data.draw(st.sampled_from([None, ("ref", "f"), ("ref", "nothing")]),
                          label="reference")
    else:
        value = data.draw(value_strategy(rule), label="value")
    objs = objects(tag, name, value)
    text = write_xml(objs) if fmt == "XML" else write_yaml(objs)
    problems, error = verdicts(text, fmt, template, tmp_path)
    assert (not problems) == (error is None), (problems, error)


def test_rules_table():
    """The table's columns, against what ICAT states (see icatdump.rules)."""
    ds = rules_of(SCHEMA["Dataset"])
    assert ds["complete"].required is False and ds["complete"].default is False
    assert ds["fileSize"].default == 0 and not ds["fileSize"].required
    assert ds["name"].required and ds["name"].length == 255
    assert ds["type"].required and not ds["sample"].required
    assert rules_of(SCHEMA["ParameterType"])["valueType"].enum == ENUMS["ParameterValueType"]
    assert icat_length("a\u00e9\u4e2d") == 3
    assert icat_length("\U0001F600" * 200) == 400
    rule = ds["description"]
    assert rule.too_long("\U0001F600" * 127 + "a") is None        # 255 units
    assert rule.too_long("\U0001F600" * 128) == 256
    assert rule.too_long("x" * 256) == 256


def emoji_file(example, tmp_path):
    text = example("icatdump-6.2.xml").read_text(encoding="utf-8")
    start = text.index("<datafile id=")
    at = text.index(">", start) + 1
    path = tmp_path / "emoji.xml"
    path.write_text(text[:at] + "\n    <description>%s</description>" % ("\U0001F600" * 200)
                    + text[at:], encoding="utf-8")
    return path


def test_emoji_description_check_and_icatingest_agree(example, tmp_path):
    """200 emoji are 200 code points but 400 UTF-16 code units, over the
    255 of Datafile.description: both commands refuse the file (exit 1)."""
    path = emoji_file(example, tmp_path)
    checked = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "check", str(path)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1, checked.stderr
    assert "Datafile.description is 400 UTF-16 code units long (200 characters" \
        in checked.stdout
    db = tmp_path / "cat.sqlite"
    init_catalogue(str(db), "6.2")
    ingested = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db),
                               "-i", str(path)], capture_output=True, text=True, timeout=300)
    assert ingested.returncode == 1, ingested.stderr
    assert "Datafile: description cannot have length > 255" in ingested.stderr
    assert "Traceback" not in ingested.stderr + checked.stderr
