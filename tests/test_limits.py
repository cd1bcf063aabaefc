"""Bounded input: every reader refuses a value or chunk past its ceiling
(icatdump/limits.py) in one line naming file, line and limit, before the
parser has built it -- and the small holes of the parsers.

The bombs are made here: a gzip member of 1 MiB of one byte is ~1 KiB,
and gzip members may be concatenated, so a 1 GiB value is a 1 MiB file.
Most tests set a low ceiling (ICATDUMP_MAX_VALUE_SIZE=64K) and a value of
1 MiB; one per format runs at the default ceiling on a 1 GiB value and
measures the peak memory of the command.
"""

from __future__ import annotations

import codecs
import gzip
import json
import subprocess
import sys

import pytest

from icatdump import limits
from icatdump.check import CheckClient
from icatdump.dumpfile import DataFileError, discover_backends, get_backend
from icatdump.schema import Schema
from test_file_tools import ROOT, cli

MiB = 1 << 20

XML_HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n<icatdata>\n<head>\n'
            '  <apiversion>6.2.0</apiversion>\n</head>\n<data>\n')       # 6 lines
XML_TAIL = "</data>\n</icatdata>\n"
YAML_HEAD = "%YAML 1.1\n# ICAT-API: 6.2.0\n---\nfacility:\n  f:\n"          # 5 lines

#: (before, filler line or None for one run of "a", after, line of the error)
BOMBS = {
    "xml-attribute": (XML_HEAD + '<facility id="f" name="', None, '"/>\n' + XML_TAIL, 7),
    "xml-text": (XML_HEAD + '<facility id="f"><name>', None, "</name></facility>\n" + XML_TAIL, 7),
    "xml-comment": (XML_HEAD + "<!--", None, "-->\n" + XML_TAIL, 7),
    "xml-comment-of-markup": (XML_HEAD + "<!--", "<a>\n", "-->\n" + XML_TAIL, 7),
    "xml-cdata": (XML_HEAD + '<facility id="f"><name><![CDATA[', None,
                  "]]></name></facility>\n" + XML_TAIL, 7),
    "xml-pi": (XML_HEAD + "<?pi ", None, "?>\n" + XML_TAIL, 7),
    "yaml-plain": (YAML_HEAD + "    name: ", None, "\n", 6),
    "yaml-quoted": (YAML_HEAD + '    name: "', None, '"\n', 6),
    "yaml-block": (YAML_HEAD + "    name: |\n", "      " + "a" * 73 + "\n", "", 6),
    "yaml-folded-plain": (YAML_HEAD + "    name: a\n", "      " + "a" * 73 + "\n", "", 6),
}


def bomb(kind: str, size: int, compressed: bool) -> bytes:
    """A data file whose one value is ``size`` bytes (gzip: members of 1 MiB)."""
    before, filler, after, _ = BOMBS[kind]
    filler = filler or "a"
    block = (filler * (MiB // len(filler))).encode()
    whole, rest = divmod(size, len(block))
    if not compressed:
        return before.encode() + block * whole + block[:rest] + after.encode()
    member = gzip.compress(block, mtime=0)
    return (gzip.compress(before.encode(), mtime=0) + member * whole
            + gzip.compress(block[:rest] + after.encode(), mtime=0))


def data_cli(*args):
    """``icatdata ARGS``, in this process (the environment is this one's)."""
    code, out, err = cli(*args)
    return subprocess.CompletedProcess(args, code, out, err)


def ingest_cli(*args):
    return subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture
def low(monkeypatch):
    """A value ceiling of 64 KiB, for this process and the commands it starts."""
    monkeypatch.setenv(limits.VALUE_ENV, "64K")
    return "64 KiB"


def one_error(proc, path, *parts):
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr
    assert lines and lines[0].startswith("%s: error: %s" % (lines[0].split(":")[0], path)), lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_value_past_the_ceiling_is_refused_with_file_line_and_limit(tmp_path, low, kind):
    path = tmp_path / ("bomb." + kind.split("-")[0])
    path.write_bytes(bomb(kind, MiB, compressed=False))
    line = BOMBS[kind][3]
    one_error(data_cli("info", path), path, "line %d:" % line, "longer than 64 KiB, the limit",
              limits.VALUE_ENV)


@pytest.mark.parametrize("command", ["info", "check", "convert", "salvage"])
@pytest.mark.parametrize("kind", ["xml-attribute", "yaml-plain"])
def test_every_file_tool_refuses_a_compressed_bomb(tmp_path, low, kind, command):
    path = tmp_path / ("bomb.%s.gz" % kind.split("-")[0])
    path.write_bytes(bomb(kind, 4 * MiB, compressed=True))
    args = [command, path] + ([tmp_path / "out.xml"] if command in ("convert", "salvage") else [])
    proc = data_cli(*args)
    if command in ("check", "salvage"):
        # These list problems instead of stopping: the bomb is the one problem.
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "longer than 64 KiB, the limit" in proc.stdout + proc.stderr
    else:
        one_error(proc, path, "line", "longer than 64 KiB, the limit")
    assert not (tmp_path / "out.xml").exists() or command == "salvage"


@pytest.mark.parametrize("kind", ["xml-text", "yaml-block"])
def test_ingest_refuses_a_compressed_bomb(tmp_path, low, kind):
    db = tmp_path / "cat.sqlite"
    assert data_cli("init", db).returncode == 0
    path = tmp_path / ("bomb.%s.gz" % kind.split("-")[0])
    path.write_bytes(bomb(kind, 4 * MiB, compressed=True))
    one_error(ingest_cli("-q", "-w", db, "-i", path), path,
              "line %d:" % BOMBS[kind][3], "longer than 64 KiB, the limit")


def peak_rss_kib(args) -> tuple[int, subprocess.CompletedProcess]:
    """Run ``args`` as the child of a fresh Python; its peak RSS in KiB."""
    probe = ("import resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "sys.stdout.write('%d %d\\n' % (resource.getrusage(resource.RUSAGE_CHILDREN)"
             ".ru_maxrss, p.returncode))\nsys.stdout.write(p.stderr)\n")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120).stdout
    first, _, err = out.partition("\n")
    rss, code = map(int, first.split())
    return rss, subprocess.CompletedProcess(args, code, "", err)


@pytest.mark.parametrize("kind", ["xml-attribute", "yaml-plain"])
def test_a_gigabyte_value_at_the_default_ceiling_stays_small(tmp_path, monkeypatch, kind):
    monkeypatch.delenv(limits.VALUE_ENV, raising=False)
    path = tmp_path / ("bomb.%s.gz" % kind.split("-")[0])
    path.write_bytes(bomb(kind, 1 << 30, compressed=True))
    assert path.stat().st_size < 2 * MiB
    rss, proc = peak_rss_kib([sys.executable, "-m", "icatdump.cli.data", "info", path])
    one_error(proc, path, "line %d:" % BOMBS[kind][3],
              "longer than %s, the limit" % limits.describe(limits.DEFAULT_MAX_VALUE_SIZE))
    assert rss <= 200 * 1024, "peak RSS %d KiB" % rss


def test_a_value_under_the_ceiling_is_read(tmp_path, low):
    for kind in ("xml-text", "yaml-plain", "yaml-block"):
        path = tmp_path / ("ok." + kind.split("-")[0])
        path.write_bytes(bomb(kind, 60 << 10, compressed=False))
        proc = data_cli("info", "--json", path)
        assert proc.returncode == 0, (kind, proc.stderr)
        assert json.loads(proc.stdout)["top_level"] == {"facility": 1}


@pytest.mark.parametrize("fmt", ["xml", "yaml"])
def test_a_chunk_past_its_ceiling_is_refused(tmp_path, monkeypatch, fmt):
    monkeypatch.setenv(limits.CHUNK_ENV, "100K")
    if fmt == "xml":
        text = (XML_HEAD + '<facility id="f0"><name>f0</name></facility>\n</data>\n<data>\n'
                + "".join('<facility id="f%d"><name>facility %d</name></facility>\n' % (i, i)
                          for i in range(1, 4000)) + XML_TAIL)
        line = 8
    else:
        text = (YAML_HEAD + "    name: f\n---\nfacility:\n"
                + "".join("  f%d:\n    name: facility %d\n" % (i, i) for i in range(1, 4000)))
        line = 7
    path = tmp_path / ("big-chunk." + fmt)
    path.write_text(text)
    one_error(data_cli("info", path), path, "chunk 2", "line %d:" % line,
              "longer than 100 KiB, the limit", limits.CHUNK_ENV)
    monkeypatch.setenv(limits.CHUNK_ENV, "1M")
    assert data_cli("info", path).returncode == 0


def test_a_bad_ceiling_setting_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.VALUE_ENV, "lots")
    path = tmp_path / "f.yaml"
    path.write_text(YAML_HEAD + "    name: f\n")
    proc = data_cli("info", path)
    assert proc.returncode == 2, proc.stderr
    assert "ICATDUMP_MAX_VALUE_SIZE: 'lots' is not a size" in proc.stderr


def read_all(path, fmt, **settings):
    """Every record of a file as the library reads it: (tag, key, line, fields)."""
    discover_backends()
    reader_cls, _ = get_backend(fmt)
    reader = reader_cls(CheckClient(Schema.for_version("6.2")), path)
    for name, value in settings.items():
        setattr(reader, name, value)
    with reader:
        return [(raw.tag, raw.key, raw.line, repr(raw.fields))
                for chunk in reader.chunks() for raw in reader.parse_chunk(chunk)]


def test_library_setting(tmp_path):
    path = tmp_path / "f.xml"
    path.write_bytes(bomb("xml-attribute", 5000, compressed=False))
    assert read_all(path, "XML")
    with pytest.raises(DataFileError, match="line 7: .* longer than 4000 bytes, the limit"):
        read_all(path, "XML", max_value_size=4000)


@pytest.mark.parametrize("name", ["icatdump-6.2.yaml", "icatdump-4.4.yaml"])
def test_yaml_read_past_the_fast_loader_is_the_same(example, tmp_path, name):
    """Documents longer than the value ceiling are composed by the checked
    loader, from their start: the same records on the same lines, and the
    same errors."""
    src = example(name)
    assert read_all(src, "YAML", max_value_size=300) == read_all(src, "YAML")
    text = src.read_text()
    first = text.index("\n---\n") + 5
    for end in ("\n...\n---\n", "\n... # end\n\n# next\n---\n"):     # '...' ends a document
        ended = tmp_path / "ended.yaml"
        ended.write_text(text[:first] + text[first:].replace("\n---\n", end))
        records = read_all(ended, "YAML")
        assert len(records) == len(read_all(src, "YAML"))
        assert read_all(ended, "YAML", max_value_size=300) == records
    bad = tmp_path / "bad.yaml"
    cut = text.index("\n---", len(text) // 2)
    bad.write_text(text[:cut] + "\n---\nfacility:\n  f:\n    name: [unclosed\n" + text[cut:])
    messages = []
    for limit in (None, 300):
        with pytest.raises(DataFileError) as exc:
            read_all(bad, "YAML", max_value_size=limit)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and "line" in messages[0]


@pytest.mark.parametrize("end", ["", "...\n", "... # end\n# next\n\n"])
def test_yaml_restart_after_returned_documents(tmp_path, monkeypatch, end):
    """Small documents go through the fast loader, a longer one is read
    again from its own start: nothing twice, nothing lost, same lines."""
    from icatdump.backends.yaml import _MeasuredText
    def doc(n, first):
        return ("---\nfacility:\n"
                + "".join("  f%d_%d:\n    name: facility %d\n" % (first, i, i) for i in range(n)))
    path = tmp_path / "mixed.yaml"
    path.write_text("%YAML 1.1\n# c\n" + doc(2, 1) + end + doc(3, 2) + end + doc(1000, 3)
                    + end + doc(2, 4))
    records = read_all(path, "YAML")
    e = len(end.splitlines())
    assert len(records) == 1007 and records[-1][2] == 2023 + 3 * e
    restarts = []
    restart = _MeasuredText.restart
    monkeypatch.setattr(_MeasuredText, "restart",
                        lambda self: restarts.append(self._kept_from[1]) or restart(self))
    assert read_all(path, "YAML", max_value_size=20000) == records
    assert restarts == [17 + e], "the boundary before the third document"


# -- the small holes ---------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("fmt", ["xml", "yaml"])
def test_utf16_and_utf32_are_refused_by_name(tmp_path, encoding, fmt):
    text = (XML_HEAD + '<facility id="f"><name>f</name></facility>\n' + XML_TAIL if fmt == "xml"
            else YAML_HEAD + "    name: f\n")
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
           "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE}[encoding]
    path = tmp_path / ("wide." + fmt)
    path.write_bytes(bom + text.encode(encoding))
    name = encoding.upper().replace("-LE", "LE").replace("-BE", "BE")
    one_error(data_cli("info", path), path, "%s text" % name, "data files are UTF-8")
    # The library, without the command's sniffing, says the same.
    with pytest.raises(DataFileError, match="%s text" % name):
        read_all(path, fmt.upper())


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_xml_in_utf16_or_utf32_without_a_byte_order_mark_is_refused_by_name(tmp_path, encoding):
    path = tmp_path / "wide.xml"
    path.write_bytes((XML_HEAD + XML_TAIL).encode(encoding))
    name = encoding.upper().replace("-LE", "LE").replace("-BE", "BE")
    with pytest.raises(DataFileError, match="line 1: %s text: data files are UTF-8" % name):
        read_all(path, "XML")


def test_xml_declared_in_an_encoding_that_hides_markup_is_refused(tmp_path):
    """In ISO-2022-JP a '<' byte may be half of a character: the checks
    would count it, so such a file is refused; single-byte ones are read."""
    path = tmp_path / "declared.xml"
    text = (XML_HEAD.replace("utf-8", "%s") + '<facility id="f"><name>\u00e9</name></facility>\n'
            + XML_TAIL)
    path.write_bytes((text % "ISO-2022-JP").replace("\u00e9", "\u6771").encode("iso-2022-jp"))
    one_error(data_cli("info", path), path, "line 1:", "XML in the encoding ISO-2022-JP")
    path.write_bytes((text % "ISO-8859-1").encode("latin-1"))
    assert read_all(path, "XML") == [("facility", "f", 7, repr([("name", "\u00e9")]))]


def check_problems(path) -> list[str]:
    proc = data_cli("check", "-q", path)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout.splitlines()


def test_an_element_given_twice_is_refused(tmp_path):
    path = tmp_path / "twice.xml"
    path.write_text(XML_HEAD + '<facility id="f">\n<name>a</name>\n<name>b</name>\n'
                    '</facility>\n' + XML_TAIL)
    assert check_problems(path) == [
        "%s: chunk 1, line 9, f: <name> given twice in <facility>" % path]
    path.write_text(XML_HEAD + '<facility id="f">\n<name>a</name>\n</facility>\n'
                    '<instrument id="i"><name>i</name><facility ref="f"/><facility ref="f"/>'
                    '</instrument>\n' + XML_TAIL)
    assert check_problems(path) == [
        "%s: chunk 1, line 10, i: <facility> given twice in <instrument>" % path]


@pytest.mark.parametrize("value, tag", [("!!binary aGVsbG8=", "binary"), ("!!set {a, b}", "set"),
                                        ("!!omap [a: 1]", "omap"), ("!!pairs [a: 1]", "pairs")])
def test_yaml_values_of_no_icat_type_are_refused_by_name(tmp_path, value, tag):
    path = tmp_path / "tagged.yaml"
    path.write_text(YAML_HEAD + "    name: %s\n" % value)
    assert check_problems(path) == [
        "%s: chunk 1, line 6, f: a value of YAML type !!%s: ICAT values are strings, numbers, "
        "booleans, dates or null" % (path, tag)]


@pytest.mark.parametrize("fmt", ["xml", "yaml"])
def test_times_finer_than_a_microsecond_are_refused(tmp_path, fmt):
    def cycle(date):
        if fmt == "xml":
            return (XML_HEAD + '<facility id="f"><name>f</name></facility>\n'
                    '<facilityCycle id="c"><name>c</name><facility ref="f"/>'
                    "<startDate>%s</startDate></facilityCycle>\n" % date + XML_TAIL)
        return (YAML_HEAD + "    name: f\nfacilityCycle:\n  c:\n    facility: f\n    name: c\n"
                "    startDate: %s\n" % date)
    path = tmp_path / ("cycle." + fmt)
    for date in ("2020-01-01T00:00:00.123456+00:00", "2020-01-01T00:00:00.123456Z"
                 if fmt == "yaml" else "2020-01-01T00:00:00.5"):
        path.write_text(cycle(date))
        assert check_problems(path) == [], date
    path.write_text(cycle("2020-01-01T00:00:00.123456789+00:00"))
    [problem] = check_problems(path)
    assert "c: " in problem and "'2020-01-01T00:00:00.123456789+00:00' has more than 6 " \
        "fractional second digits" in problem, problem
