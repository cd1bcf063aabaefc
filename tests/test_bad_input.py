"""Every kind of bad input gives one clear error from ``icatingest``.

Each case runs the real command (``python -m icatdump.cli.ingest``) on a
small file and checks three things: the exit code (1 for a data problem),
the message (file, chunk, line where known, key, cause, then how much went
in and how to go on; at most three lines, no traceback), and the catalogue
afterwards: unchanged, or holding exactly the chunks before the bad one --
the bad chunk is rolled back whole, even the objects before the bad one.

The files have two chunks: chunk 1 creates a facility, chunk 2 a good
investigation type and then the bad object.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys

import pytest

from icatdump.schema import Schema
from icatdump.store import init_catalogue

HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
        '  <date>2025-12-01T16:03:43+00:00</date>\n  <apiversion>6.2.0</apiversion>\n'
        '</head>\n')
FACILITY = ('  <facility id="Facility_name-ESNF">\n    <name>ESNF</name>\n'
            '    <fullName>Example</fullName>\n  </facility>\n')
GOOD = ('  <investigationType id="it">\n    <name>Experiment</name>\n'
        '    <facility ref="Facility_name-ESNF"/>\n  </investigationType>\n')
BAD_LINE = 18       # the first line of the bad object in xml2()


def xml2(bad: str) -> str:
    """Chunk 1: the facility; chunk 2: a good object, then ``bad``."""
    return HEAD + "<data>\n" + FACILITY + "</data>\n<data>\n" + GOOD + bad + "</data>\n</icatdata>\n"


YHEAD = "%YAML 1.1\n# Date: Mon, 01 Dec 2025 16:03:33 +0000\n# ICAT-API: 6.2.0\n"
YFACILITY = "---\nfacility:\n  Facility_name-ESNF:\n    fullName: Example\n    name: ESNF\n"
YGOOD = "investigationType:\n  it:\n    facility: Facility_name-ESNF\n    name: Experiment\n"


def yaml2(bad: str) -> str:
    """Chunk 1: the facility; chunk 2: ``bad`` (sections sort after
    investigationType), then the good object."""
    return YHEAD + YFACILITY + "---\n" + YGOOD + bad


AFTER_CHUNK_1 = {"Facility": 1}
SCHEMA = Schema.for_version("6.2")


def counts(db) -> dict:
    """Objects per entity type in the catalogue file (non-zero ones)."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        for et in SCHEMA:
            n = conn.execute('SELECT COUNT(*) FROM "%s"' % et.name).fetchone()[0]
            if n:
                out[et.name] = n
        return out
    finally:
        conn.close()


def run_ingest(db, path, *args, input=None):
    return subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db),
                           "-i", str(path), "-q", *args],
                          input=input, capture_output=True, timeout=120)


@pytest.fixture
def catalogue(tmp_path):
    db = tmp_path / "icat.sqlite"
    init_catalogue(str(db))
    return db


def check_error(r, path, *parts, code=1):
    """One clear error: exit code, every part in the message, 1-3 lines, no traceback."""
    err = r.stderr.decode("utf-8")
    assert r.returncode == code, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 3, err
    assert "Traceback" not in err
    assert lines[0].startswith("icatingest: error: %s" % path), err
    for part in parts:
        assert part in err, (part, err)
    return err


# (id, file content, expected message parts, catalogue afterwards)
CASES = [
    ("empty", "", ["file is empty"], {}),
    ("blank", "\n  \n", ["file is empty"], {}),
    ("plain-text", "hello world, this is not data\n", ["not an ICAT data file"], {}),
    ("json", '{"facility": 1}\n', ["not an ICAT data file"], {}),
    ("other-xml", "<html><body><p>hi</p></body></html>\n",
     ["not an ICAT data file", "<html>"], {}),
    ("other-xml-with-data", "<html><data><facility><name>x</name></facility></data></html>\n",
     ["not an ICAT data file"], {}),
    ("binary", bytes(random.Random(1).randrange(256) for _ in range(3000)),
     ["not an ICAT data file"], {}),
    ("binary-after-lt", b"<" + bytes(random.Random(2).randrange(256) for _ in range(3000)),
     ["chunk 1", "XML syntax error"], {}),
    ("xml-truncated-mid-chunk", xml2(GOOD.replace("it", "it2"))[:-60],
     ["chunk 2", "XML syntax error", "1 chunk ingested", "--duplicate IGNORE"], AFTER_CHUNK_1),
    ("xml-truncated-mid-object", xml2("")[:xml2("").index("<investigationType") + 30],
     ["chunk 2", "XML syntax error", "1 chunk ingested"], AFTER_CHUNK_1),
    ("xml-truncated-mid-tag", xml2("")[:xml2("").index("<investigationType") + 8],
     ["chunk 2", "XML syntax error"], AFTER_CHUNK_1),
    ("xml-malformed", xml2("  <instrument id=\"i\"><name>E2</nam></instrument>\n"),
     ["chunk 2", "line %d" % BAD_LINE, "XML syntax error", "mismatch"], AFTER_CHUNK_1),
    ("xml-not-well-formed-attr", xml2("  <instrument id=i><name>E2</name></instrument>\n"),
     ["chunk 2", "XML syntax error"], AFTER_CHUNK_1),
    ("unknown-entity", xml2('  <gizmo id="g"><name>x</name></gizmo>\n'),
     ["chunk 2", "line %d" % BAD_LINE, "g:", "unknown entity type 'gizmo'",
      "1 chunk ingested"], AFTER_CHUNK_1),
    ("unknown-attribute", xml2('  <instrument id="i"><name>E2</name><colour>red</colour>'
                               '<facility ref="Facility_name-ESNF"/></instrument>\n'),
     ["chunk 2", "line %d" % BAD_LINE, "i:", "invalid attribute 'colour' in instrument"],
     AFTER_CHUNK_1),
    ("reference-nowhere", xml2('  <instrument id="i"><name>E2</name>'
                               '<facility ref="Facility_name-NOPE"/></instrument>\n'),
     ["chunk 2", "line %d" % BAD_LINE, "i:",
      "reference 'Facility_name-NOPE' not found in the file or the catalogue"], AFTER_CHUNK_1),
    ("reference-by-attributes-nowhere", xml2('  <instrument id="i"><name>E2</name>'
                                             '<facility name="NOPE"/></instrument>\n'),
     ["chunk 2", "i:", "reference by attributes", "Nothing found"], AFTER_CHUNK_1),
    ("reference-to-wrong-type", xml2('  <instrument id="i"><name>E2</name>'
                                     '<facility ref="it"/></instrument>\n'),
     ["chunk 2", "i:", "names a InvestigationType, expected a Facility"], AFTER_CHUNK_1),
    ("local-reference-from-other-chunk", xml2('  <instrument id="i"><name>E2</name>'
                                              '<facility ref="fac_1"/></instrument>\n'),
     ["chunk 2", "i:", "malformed key 'fac_1'"], AFTER_CHUNK_1),
    ("malformed-key-type", xml2('  <instrument id="i"><name>E2</name>'
                                '<facility ref="Faci lity_name-ESNF"/></instrument>\n'),
     ["chunk 2", "i:", "malformed key"], AFTER_CHUNK_1),
    ("malformed-key-part", xml2('  <instrument id="i"><name>E2</name>'
                                '<facility ref="Facility_nameESNF"/></instrument>\n'),
     ["chunk 2", "i:", "malformed key part 'nameESNF'"], AFTER_CHUNK_1),
    ("text-for-number", xml2('  <facility id="f"><name>F2</name>'
                             '<daysUntilRelease>many</daysUntilRelease></facility>\n'),
     ["chunk 2", "line %d" % BAD_LINE, "f:", "'many' is not a valid Integer"], AFTER_CHUNK_1),
    ("bad-datetime", xml2('  <facilityCycle id="c"><name>c1</name><startDate>yesterday'
                          '</startDate><facility ref="Facility_name-ESNF"/></facilityCycle>\n'),
     ["chunk 2", "c:", "FacilityCycle.startDate: invalid date/time 'yesterday'"], AFTER_CHUNK_1),
    ("bad-enum", xml2('  <parameterType id="p"><name>x</name><units>T</units>'
                      '<valueType>COLOUR</valueType><facility ref="Facility_name-ESNF"/>'
                      '</parameterType>\n'),
     ["chunk 2", "p:", "'COLOUR' is not one of DATE_AND_TIME, NUMERIC, STRING"], AFTER_CHUNK_1),
    ("bad-boolean", xml2('  <parameterType id="p"><name>x</name><units>T</units>'
                         '<valueType>NUMERIC</valueType><enforced>perhaps</enforced>'
                         '<facility ref="Facility_name-ESNF"/></parameterType>\n'),
     ["chunk 2", "p:", "'perhaps' is not a valid boolean"], AFTER_CHUNK_1),
    ("elements-where-a-value-belongs", xml2('  <facility id="f"><name><b>F2</b></name>'
                                            '</facility>\n'),
     ["chunk 2", "line %d" % BAD_LINE, "unexpected elements inside <name>"], AFTER_CHUNK_1),
    ("missing-required", xml2('  <facility id="f"><fullName>no name</fullName></facility>\n'),
     ["chunk 2", "f:", "VALIDATION", "name cannot be null"], AFTER_CHUNK_1),
    ("missing-required-relation", xml2('  <instrument id="i"><name>E2</name></instrument>\n'),
     ["chunk 2", "i:", "facility cannot be null"], AFTER_CHUNK_1),
    ("string-too-long", xml2('  <facility id="f"><name>%s</name></facility>\n' % ("x" * 300)),
     ["chunk 2", "f:", "name cannot have length > 255"], AFTER_CHUNK_1),
    ("duplicate-key-in-chunk", xml2(GOOD),
     ["chunk 2", "line %d" % BAD_LINE, "it:", "key defined twice in the chunk (first on line 14)"],
     AFTER_CHUNK_1),
    ("duplicate-object-in-file", xml2(GOOD.replace('"it"', '"it2"')),
     ["chunk 2", "it2:", "OBJECT_ALREADY_EXISTS", "InvestigationType exists"], AFTER_CHUNK_1),
    # YAML
    ("yaml-truncated-mid-chunk", yaml2("instrument:\n  i:\n    name: \"E2 unfinished")[:-3],
     ["chunk 2", "YAML error", "unexpected end of stream", "1 chunk ingested"], AFTER_CHUNK_1),
    ("yaml-truncated-mid-object", yaml2("instrument:\n  i:\n    facility: Facility_name-ESNF\n"),
     ["chunk 2", "i:", "name cannot be null"], AFTER_CHUNK_1),
    ("yaml-malformed", yaml2("instrument:\n  i:\n    name: [E2\n"),
     ["chunk 2", "YAML error", "flow sequence"], AFTER_CHUNK_1),
    ("yaml-bad-indentation", yaml2("instrument:\n  i:\n    name: E2\n   fullName: x\n"),
     ["chunk 2", "YAML error"], AFTER_CHUNK_1),
    ("yaml-unknown-entity", yaml2("gizmo:\n  g:\n    name: x\n"),
     ["chunk 2", "line 14", "unknown entry 'gizmo'"], AFTER_CHUNK_1),
    ("yaml-unknown-attribute", yaml2("instrument:\n  i:\n    colour: red\n    name: E2\n"),
     ["chunk 2", "line 15", "i:", "invalid attribute 'colour' in instrument"], AFTER_CHUNK_1),
    ("yaml-reference-nowhere", yaml2("instrument:\n  i:\n    facility: Facility_name-NOPE\n"
                                     "    name: E2\n"),
     ["chunk 2", "i:", "'Facility_name-NOPE' not found"], AFTER_CHUNK_1),
    ("yaml-number-as-reference", yaml2("instrument:\n  i:\n    facility: 42\n    name: E2\n"),
     ["chunk 2", "i:", "expected a reference to a Facility"], AFTER_CHUNK_1),
    ("yaml-list-for-value", yaml2("facility:\n  f:\n    name: [a, b]\n"),
     ["chunk 2", "f:", "Facility.name: expected a single value, got a list"], AFTER_CHUNK_1),
    ("yaml-mapping-for-value", yaml2("facility:\n  f:\n    name: {a: b}\n"),
     ["chunk 2", "f:", "expected a single value, got a dict"], AFTER_CHUNK_1),
    ("yaml-text-for-number", yaml2("facility:\n  f:\n    daysUntilRelease: soon\n"
                                   "    name: F2\n"),
     ["chunk 2", "f:", "'soon' is not a valid Integer"], AFTER_CHUNK_1),
    ("yaml-bad-date", yaml2("facilityCycle:\n  c:\n    facility: Facility_name-ESNF\n"
                            "    name: c1\n    startDate: 2010-13-45\n"),
     ["chunk 2", "line 18", "c:", "invalid timestamp value '2010-13-45'"], AFTER_CHUNK_1),
    ("yaml-duplicate-key", yaml2("facility:\n  f:\n    name: F2\n  f:\n    name: F3\n"),
     ["chunk 2", "line 17", "duplicate key 'f'"], AFTER_CHUNK_1),
    ("yaml-chunk-not-a-mapping", yaml2("")[:-len(YGOOD)] + "- a\n- b\n",
     ["chunk 2", "a chunk must be a mapping"], AFTER_CHUNK_1),
    ("yaml-objects-as-list", yaml2("instrument:\n- a\n- b\n"),
     ["chunk 2", "'instrument' must map keys to objects"], AFTER_CHUNK_1),
]


@pytest.mark.parametrize("content, parts, after",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(catalogue, tmp_path, content, parts, after):
    path = tmp_path / "bad.data"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    r = run_ingest(catalogue, path)
    check_error(r, path, *parts)
    assert counts(catalogue) == after


def test_duplicate_in_catalogue_under_throw(catalogue, tmp_path):
    """The second ingest of a file: the first object exists; nothing of the
    chunk goes in, and the hint names the duplicate options."""
    path = tmp_path / "twice.xml"
    path.write_text(xml2(""))
    assert run_ingest(catalogue, path).returncode == 0
    before = counts(catalogue)
    r = run_ingest(catalogue, path)
    check_error(r, path, "chunk 1", "Facility_name-ESNF", "OBJECT_ALREADY_EXISTS",
                "Facility exists with name = 'ESNF'", "nothing was ingested",
                "--duplicate IGNORE")
    assert counts(catalogue) == before
    assert run_ingest(catalogue, path, "--duplicate", "IGNORE").returncode == 0
    assert counts(catalogue) == before


def test_apostrophe_in_names_is_no_error(catalogue, tmp_path):
    """A ``'`` in a name, in a key and in a reference by attributes (JPQL
    literals are escaped)."""
    path = tmp_path / "quote.xml"
    path.write_text(HEAD + "<data>\n"
                    "  <facility id=\"f\"><name>O'Brien</name></facility>\n"
                    "</data>\n<data>\n"
                    "  <instrument id=\"i\"><name>It's</name>"
                    "<facility ref=\"Facility_name-O=27Brien\"/></instrument>\n"
                    "  <investigationType id=\"t\"><name>d'Arc</name>"
                    "<facility name=\"O'Brien\"/></investigationType>\n"
                    "</data>\n</icatdata>\n")
    r = run_ingest(catalogue, path)
    assert r.returncode == 0, r.stderr
    assert counts(catalogue) == {"Facility": 1, "Instrument": 1, "InvestigationType": 1}
    r = run_ingest(catalogue, path, "--duplicate", "CHECK")
    assert r.returncode == 0, r.stderr
    assert counts(catalogue) == {"Facility": 1, "Instrument": 1, "InvestigationType": 1}


def test_stdin_is_named(catalogue):
    r = run_ingest(catalogue, "-", input=xml2("  <gizmo/>\n").encode())
    check_error(r, "<stdin>", "chunk 2", "unknown entity type 'gizmo'")


def test_debug_shows_the_traceback(catalogue, tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text(xml2('  <gizmo id="g"/>\n'))
    r = run_ingest(catalogue, path, "--debug")
    assert r.returncode == 1
    assert b"Traceback" in r.stderr
    assert b"unknown entity type 'gizmo'" in r.stderr.splitlines()[-2]


# -- hostile files, through the command ------------------------------------

HOSTILE = [
    ("billion-laughs",
     '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
     + "".join('<!ENTITY lol%d "%s">' % (i, ("&lol%d;" % (i - 1) if i else "&lol;") * 10)
               for i in range(10))
     + ']>\n<icatdata><head/><data><facility id="f"><name>&lol9;</name></facility></data>'
       '</icatdata>\n',
     # refused where the DOCTYPE starts, before the parser sees it
     ["line 2", "DOCTYPE declarations are not allowed"]),
    ("xxe-file",
     '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
     '<icatdata><head/><data><facility id="f"><name>&x;</name></facility></data></icatdata>\n',
     ["DOCTYPE declarations are not allowed"]),
    ("xxe-network",
     '<?xml version="1.0"?>\n<!DOCTYPE d SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
     '<icatdata><head/><data><facility id="f"><name>x</name></facility></data></icatdata>\n',
     ["DOCTYPE declarations are not allowed"]),
    ("yaml-python-tag",
     "%YAML 1.1\n---\nfacility:\n  f:\n    name: !!python/object/apply:os.system ['touch PWNED']\n",
     ["line 5", "YAML error", "could not determine a constructor",
      "python/object/apply:os.system"]),
    ("yaml-python-name",
     "%YAML 1.1\n---\nfacility:\n  f:\n    name: !!python/name:os.system\n",
     ["YAML error", "could not determine a constructor"]),
    ("yaml-alias-bomb",
     "%YAML 1.1\n---\nfacility:\n  f:\n    fullName: &a [x, x, x, x, x, x, x, x, x]\n"
     + "".join("    f%d: &a%d [%s]\n" % (i, i, ", ".join(["*a" if i == 0 else "*a%d" % (i - 1)] * 9))
               for i in range(9)) + "    name: *a8\n",
     ["f:", "expected a single value, got a list"]),
]


@pytest.mark.parametrize("content, parts", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_file(catalogue, tmp_path, content, parts):
    path = tmp_path / "hostile.data"
    path.write_text(content)
    r = run_ingest(catalogue, path)
    err = check_error(r, path, "chunk 1", *parts)
    assert "root:" not in err       # /etc/passwd was not read
    assert not (tmp_path / "PWNED").exists()
    assert counts(catalogue) == {}
