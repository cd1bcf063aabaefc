"""icatdata info / check / convert / salvage and shell completion, through
the command line (a few in a subprocess, the rest with click's CliRunner),
on python-icat's example files and copies of them with one defect each."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from lxml import etree

from icatdump.cli.data import main
from icatdump.schema import Schema
from click.testing import CliRunner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ["4.4", "4.7", "4.10", "5.0", "6.2"]
EXAMPLES = (["icatdump-%s.%s" % (v, e) for v in VERSIONS for e in ("xml", "yaml")]
            + ["legacy-icatdump-%s.%s" % (v, e) for v in VERSIONS[:3] for e in ("xml", "yaml")]
            + ["ref-icatdump-5.0.xml", "ref-icatdump-5.0.yaml"])


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def run(*args):
    """``python -m icatdump.cli.data ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "icatdump.cli.data", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def body(data: bytes, fmt: str) -> bytes:
    """A data file without its four header lines."""
    lines = data.splitlines(keepends=True)
    del lines[slice(3, 7) if fmt == "XML" else slice(1, 5)]
    return b"".join(lines)


# -- info ----------------------------------------------------------------------

def count_xml(path, schema):
    """Chunks, top-level and embedded objects per type, from a whole lxml tree."""
    root = etree.parse(str(path)).getroot()
    top, emb = Counter(), Counter()

    def walk(elem, etype):
        for sub in elem:
            f = etype.fields.get(etype.aliases.get(sub.tag, sub.tag))
            if f is not None and f.kind == "MANY":
                emb[schema[f.type].instance_name] += 1
                walk(sub, schema[f.type])
    datas = root.findall("data")
    for data in datas:
        for obj in data:
            if not obj.tag.endswith("Ref"):
                top[obj.tag] += 1
                walk(obj, schema.by_instance_name(obj.tag))
    return len(datas), top, emb


def count_yaml(path, schema):
    """The same from ``yaml.safe_load_all``: embedded objects are list items."""
    top, emb = Counter(), Counter()

    def walk(d, etype):
        for k, v in d.items():
            if isinstance(v, list):
                ctype = schema[etype.fields[etype.aliases.get(k, k)].type]
                for c in v:
                    emb[ctype.instance_name] += 1
                    walk(c, ctype)
    with open(path, encoding="utf-8") as f:
        docs = list(yaml.safe_load_all(f))
    for doc in docs:
        for tag, objs in (doc or {}).items():
            for obj in objs.values():
                top[tag] += 1
                walk(obj or {}, schema.by_instance_name(tag))
    return len(docs), top, emb


@pytest.mark.parametrize("name", EXAMPLES)
def test_info_counts(example, name):
    path = example(name)
    code, out, _ = cli("info", "--json", path)
    assert code == 0
    info = json.loads(out)
    header = info["header"]
    assert info["format"] == ("XML" if name.endswith("xml") else "YAML")
    assert info["size"] == path.stat().st_size
    assert set(header) == {"date", "service", "apiversion", "generator"}
    assert header["generator"].startswith("icatdump (python-icat ")
    schema = Schema.for_version(header["apiversion"])
    chunks, top, emb = (count_xml if name.endswith("xml") else count_yaml)(path, schema)
    assert info["chunks"] == chunks
    assert info["top_level"] == dict(top)
    assert info["embedded"] == dict(emb)
    assert info["objects"] == sum(top.values()) + sum(emb.values())


def test_info_text_in_subprocess(example):
    proc = run("info", example("icatdump-6.2.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "apiversion: 6.2.0" in proc.stdout
    assert re.search(r"^chunks:\s+9$", proc.stdout, re.M)
    assert re.search(r"^\s+investigation\s+3 top-level\s+0 embedded$", proc.stdout, re.M)


# -- check ---------------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_check_clean(example, name):
    code, out, err = cli("check", example(name))
    assert (code, out) == (0, ""), out
    assert "no problems" in err


def test_check_in_subprocess_lists_expected_references(example):
    """The simple example names a facility it does not define (expected in
    the catalogue, not a problem) and lacks a required investigation type."""
    path = example("icatdump-simple.xml")
    proc = run("check", path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "%s: chunk 2, line 70, Investigation_facility-(name-ESNF)_name-10100601=2DST_"
        "visitId-1=2E1=2DN: Investigation.type is required" % path]
    assert "1 reference expected in the target catalogue" in proc.stderr
    assert "Facility_name-ESNF (1 use)" in proc.stderr


# Each defect: (format, text to replace (first occurrence), replacement, expected message).
DEFECTS = {
    "unknown entity type": ("XML", "<technique id=", "<technic id=", "unknown entity type 'technic'",
                            ("</technique>", "</technic>")),
    "unknown attribute": ("XML", "<fullName>Aelius Cordus</fullName>",
                          "<fulName>Aelius Cordus</fulName>", "invalid attribute 'fulName' in user"),
    "bad number": ("XML", "<fileCount>1</fileCount>", "<fileCount>one</fileCount>",
                   "Investigation.fileCount: 'one' is not a valid"),
    "bad date": ("XML", "<startDate>2008-03-13T10:39:42+00:00", "<startDate>2008-13-45T10:39:42",
                 "Investigation.startDate: invalid date/time"),
    "bad enum": ("XML", "<valueType>STRING</valueType>", "<valueType>TEXT</valueType>",
                 "ParameterType.valueType: 'TEXT' is not one of DATE_AND_TIME, NUMERIC, STRING"),
    "bad boolean": ("XML", "<complete>false</complete>", "<complete>maybe</complete>",
                    "Dataset.complete: 'maybe' is not a valid boolean"),
    "missing required": ("XML", "<name>08100122-EF</name>", "",
                         "Investigation.name is required"),
    "missing required embedded": ("XML", "<role>owner</role>", "",
                                  "Investigation.investigationGroups[1].role is required"),
    "over-long string": ("XML", "<fullName>Aelius Cordus</fullName>",
                         "<fullName>%s</fullName>" % ("x" * 256),
                         "User.fullName is 256 characters long, at most 255 allowed"),
    "malformed key": ("XML", '<user id="User_name-db=2Facord">', '<user id="User_name=db=2Facord">',
                      "malformed key"),
    "duplicate key": ("XML", '<user id="User_name-db=2Fahau">', '<user id="User_name-db=2Facord">',
                      "duplicate key (first defined at line 10)"),
    "key not matching": ("XML", '<user id="User_name-db=2Fahau">', '<user id="User_name-db=2Fxhau">',
                         "key does not match the object, whose key is User_name-db=2Fahau"),
    "unresolvable local reference": ("XML", '<facility ref="Facility_name-ESNF"/>',
                                     '<facility ref="esnf_1"/>',
                                     "reference 'esnf_1' is not defined in this chunk"),
    "unresolvable generic reference": ("XML", '<dataCollection id="DataCollection_00000003">',
                                       '<dataCollection id="DataCollection_00000009">',
                                       "reference 'DataCollection_00000003' is not defined "
                                       "earlier in the file"),
    "reference to a wrong type": ("XML", '<facility ref="Facility_name-ESNF"/>',
                                  '<facility ref="User_name-db=2Facord"/>',
                                  "names a User, expected a Facility"),
    "bad rule flags": ("XML", "<crudFlags>R</crudFlags>\n    <what>Application</what>",
                       "<crudFlags>RX</crudFlags>\n    <what>Application</what>",
                       "Rule: CRUD value RX contains false"),
    "bad rule what": ("XML", "<what>DatafileFormat</what>",
                      "<what>SELECT x FROM Nonsense x</what>",
                      "Rule: Nonsense is not an ICAT entity"),
    "yaml unknown entity type": ("YAML", "\ntechnique:", "\ntechnic:", "unknown entry 'technic'"),
    "yaml bad number": ("YAML", "    fileCount: 1\n", "    fileCount: one\n",
                        ".fileCount: 'one' is not a valid"),
    "yaml wrong type": ("YAML", "    facility: Facility_name-ESNF\n",
                        "    facility: DatasetType_facility-(name-ESNF)_name-raw\n",
                        "names a DatasetType, expected a Facility"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_check_finds_defect(example, tmp_path, defect):
    """``check`` lists the defect; a defect of a Rule is found by the very
    check the catalogue runs when the Rule is written, and ingest refuses
    the same file with the same words."""
    fmt, old, new, message, *more = DEFECTS[defect]
    ext = fmt.lower()
    text = example("icatdump-6.2.%s" % ext).read_text(encoding="utf-8")
    for old, new in [(old, new)] + more:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / ("bad." + ext)
    path.write_text(text, encoding="utf-8")
    code, out, err = cli("check", path)
    assert code == 1
    lines = out.splitlines()
    hits = [l for l in lines if message in l]
    assert hits, out
    assert re.match(r"^%s: chunk \d+(, line \d+)?(, \S+)?: " % re.escape(str(path)), hits[0])
    if defect.startswith("bad rule"):
        db = tmp_path / "c.sqlite"
        subprocess.run([sys.executable, "-m", "icatdump.cli.data", "init", str(db)], check=True)
        r = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-w", str(db), "-i",
                            str(path)], capture_output=True, text=True)
        assert r.returncode == 1 and message.split(": ", 1)[1] in r.stderr, r.stderr


def test_check_caps_the_listing(example, tmp_path):
    text = example("icatdump-6.2.xml").read_text(encoding="utf-8")
    path = tmp_path / "bad.xml"
    path.write_text(text.replace("<complete>false</complete>", "<complete>no way</complete>"))
    code, out, _ = cli("check", "--max-problems", "2", path)
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3
    assert re.match(r"^\.\.\. and \d+ more problems$", lines[-1])


def test_check_python_api(example):
    from icatdump.check import check
    report = check(str(example("icatdump-simple.yaml")), "YAML", Schema.for_version("5.0"))
    assert report.problem_count == 1 and report.objects == 8
    assert report.expected == {"Facility_name-ESNF": 1}


# -- convert -------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_convert_cli_both_ways(example, tmp_path, version):
    """Through the command line: XML → YAML gives python-icat's YAML example
    byte for byte apart from the header, and YAML → XML its XML example."""
    for src, dst in (("xml", "yaml"), ("yaml", "xml")):
        out = tmp_path / ("out." + dst)
        proc = run("convert", "-q", example("icatdump-%s.%s" % (version, src)), out)
        assert proc.returncode == 0, proc.stderr
        fmt = dst.upper()
        expected = example("icatdump-%s.%s" % (version, dst)).read_bytes()
        assert body(out.read_bytes(), fmt) == body(expected, fmt)


# -- salvage -------------------------------------------------------------------

def complete_prefix(data: bytes, cut: int, fmt: str) -> bytes:
    """What salvage must keep of ``data[:cut]``: the original up to the end
    of its last complete chunk, closed as a file."""
    part = data[:cut]
    if fmt == "XML":
        end = part.rfind(b"</data>\n")
        keep = part[:end + len(b"</data>\n")] if end >= 0 else part[:part.index(b"</head>\n") + 8]
        return keep + b"</icatdata>\n"
    # A YAML document is complete when the next one starts within the cut.
    starts = [m.start() for m in re.finditer(rb"^---$", data, re.M)] + [len(data)]
    complete = [s for s, e in zip(starts, starts[1:]) if e <= cut and data[e - 1:e] == b"\n"]
    end = starts[starts.index(complete[-1]) + 1] if complete else starts[0]
    return data[:end]


def ingest_file(path, fmt, tmp_path):
    from icatdump.dumpfile import open_dumpfile
    from icatdump.ingest import ingest
    from icatdump.store import EmbeddedClient, init_catalogue
    db = tmp_path / "cat.sqlite"
    if db.exists():
        db.unlink()
    init_catalogue(str(db), "6.2")
    client = EmbeddedClient(str(db))
    try:
        with open_dumpfile(client, str(path), fmt, "r") as reader:
            ingest(client, reader)
    finally:
        client.close()


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_salvage_truncated_keeps_complete_chunks(example, tmp_path, fmt):
    ext = fmt.lower()
    data = example("icatdump-6.2.%s" % ext).read_bytes()
    cuts = [int(len(data) * f) for f in (0.1, 0.35, 0.6, 0.85, 0.97)]
    cuts = [c + 1 if data[c - 1:c] == b"\n" else c for c in cuts]   # mid-line
    if fmt == "XML":
        cuts.append(data.index(b"</data>\n", len(data) // 2) + 8)    # right after a chunk
    for cut in cuts:
        src = tmp_path / ("cut." + ext)
        src.write_bytes(data[:cut])
        out = tmp_path / ("salvaged." + ext)
        code, _, err = cli("salvage", src, out)
        assert code == 1, err
        assert "dropped" in err
        got = out.read_bytes()
        expected = complete_prefix(data, cut, fmt)
        assert body(got, fmt) == body(expected, fmt), cut
        if fmt == "XML" or b"\n---\n" in expected:    # no chunk: no YAML document
            ingest_file(out, fmt, tmp_path)


def test_salvage_subprocess_other_format(example, tmp_path):
    data = example("icatdump-6.2.yaml").read_bytes()
    src = tmp_path / "cut.yaml"
    src.write_bytes(data[:len(data) // 2 + 7])
    out = tmp_path / "salvaged.xml"
    proc = run("salvage", "-t", "XML", src, out)
    assert proc.returncode == 1
    assert re.search(r"chunk \d+, line \d+, dropped: YAML error", proc.stderr)
    ingest_file(out, "XML", tmp_path)


def test_salvage_whole_file_is_a_conversion(example, tmp_path):
    src = example("icatdump-6.2.xml")
    out = tmp_path / "all.xml"
    code, _, err = cli("salvage", src, out)
    assert code == 0, err
    assert body(out.read_bytes(), "XML") == body(src.read_bytes(), "XML")


def test_salvage_drops_invalid_chunk_and_its_dependants(example, tmp_path):
    """A bad dataset in chunk 4: the data collection chunk that names it,
    the publication and job chunks that name that collection go too;
    the independent chunks stay."""
    text = example("icatdump-6.2.xml").read_text(encoding="utf-8")
    src = tmp_path / "bad.xml"
    src.write_text(text.replace("<complete>false</complete>", "<complete>maybe</complete>", 1))
    out = tmp_path / "salvaged.xml"
    code, _, err = cli("salvage", src, out)
    assert code == 1
    dropped = [int(n) for n in re.findall(r"chunk (\d+), line \d+, dropped", err)]
    assert dropped == [4, 7, 8, 9]
    assert "refers to an object of dropped chunk 4" in err
    assert out.read_bytes().count(b"<data>") == 5
    ingest_file(out, "XML", tmp_path)


# -- completion ----------------------------------------------------------------

@pytest.mark.parametrize("command", ["icatdump", "icatingest", "icatdata"])
def test_completion_script(command):
    # The console scripts sit next to the interpreter running the tests
    # (make test does not put .venv/bin on PATH).
    exe = shutil.which(command, path=os.path.dirname(sys.executable)) or shutil.which(command)
    if exe is None:
        pytest.skip("%s is not installed" % command)
    env = dict(os.environ, **{"_%s_COMPLETE" % command.upper(): "bash_source"})
    proc = subprocess.run([exe], env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "_%s_completion" % command in proc.stdout
    assert "complete " in proc.stdout
    # And it completes: what bash would get for "COMMAND --ver<TAB>".
    env = dict(os.environ, COMP_WORDS="%s --ver" % command, COMP_CWORD="1",
               **{"_%s_COMPLETE" % command.upper(): "bash_complete"})
    proc = subprocess.run([exe], env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "plain,--version" in proc.stdout.splitlines(), proc.stdout
