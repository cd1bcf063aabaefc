"""Opening data files through the library (open_input, open_dumpfile)
and the one chunk loop (DumpFileReader.iter_chunks), on python-icat's
example files: the format sniffed by the backends, gzip read through,
python-icat's positional call kept, a contradicting format refused, and
errors of every reading tool naming file and chunk."""

import gzip
import io
import json
import subprocess
import sys

import pytest

from icatdump.dumpfile import DataFileError, open_dumpfile
from icatdump.inputs import FormatMismatch
from icatdump.registry import open_input
from icatdump.offline import OfflineClient
from icatdump.schema import Schema


def client():
    return OfflineClient(Schema.for_version("6.2"))


def keys(reader) -> list:
    """Every chunk's number and the keys of its objects, read through the
    chunk loop."""
    return [(chunk.number, [key for key, _ in chunk.objects()])
            for chunk in reader.iter_chunks()]


@pytest.fixture(params=["XML", "YAML"])
def fmt(request):
    return request.param


@pytest.fixture
def expected(example, fmt):
    with open_dumpfile(client(), str(example("icatdump-6.2.%s" % fmt.lower())),
                       fmt, "r") as reader:
        return keys(reader)


def test_format_sniffed_plain_gzip_and_streams(example, fmt, expected, tmp_path):
    src = example("icatdump-6.2.%s" % fmt.lower())
    packed = tmp_path / "dump.gz"           # no telling extension on purpose
    packed.write_bytes(gzip.compress(src.read_bytes()))
    assert len(expected) > 5 and sum(len(k) for _, k in expected) > 300
    for f in (str(src), src, str(packed), io.BytesIO(packed.read_bytes()),
              io.BufferedReader(io.BytesIO(src.read_bytes()))):
        with open_dumpfile(client(), f) as reader:
            assert type(reader).__module__ == "icatdump.backends.%s" % fmt.lower()
            assert keys(reader) == expected
    # The keyword spelling, and python-icat's positional one.
    with open_dumpfile(client(), str(packed), format=fmt.lower()) as reader:
        assert keys(reader) == expected
    with open_dumpfile(client(), str(packed), fmt, "r") as reader:
        assert keys(reader) == expected


def test_header_read_by_the_backend(example, fmt, tmp_path):
    src = example("icatdump-5.0.%s" % fmt.lower())
    packed = tmp_path / "dump.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    for f in (str(src), str(packed)):
        with open_input(f) as data:
            assert data.format == fmt
            assert data.header["apiversion"] == "5.0.1"
            assert data.header["service"] == "https://icat.example.com:8181/ICATService/ICAT?wsdl"
            assert set(data.header) == {"date", "service", "apiversion", "generator"}


def test_contradicting_format(example, fmt):
    src = str(example("icatdump-6.2.%s" % fmt.lower()))
    other = "YAML" if fmt == "XML" else "XML"
    with pytest.raises(FormatMismatch) as info:
        open_dumpfile(client(), src, other, "r")
    assert str(info.value) == "%s: read as %s, but the file looks like %s" % (src, other, fmt)


def test_what_cannot_be_sniffed(tmp_path):
    empty, text = tmp_path / "empty", tmp_path / "text"
    empty.write_bytes(gzip.compress(b"  \n"))
    text.write_text("hello\n")
    with pytest.raises(DataFileError, match=r"empty: file is empty$"):
        open_dumpfile(client(), str(empty))
    # (Formats registered in code by other tests of this process may be named too.)
    with pytest.raises(DataFileError, match=r"text: not an ICAT data file "
                                            r"\(none of PORT, XML, YAML(, .+)?\)$"):
        open_dumpfile(client(), str(text))
    with pytest.raises(ValueError, match="text stream cannot be detected"):
        open_dumpfile(client(), io.StringIO("%YAML 1.1\n---\n"))
    with pytest.raises(ValueError, match="two formats given"):
        open_dumpfile(client(), str(text), "XML", format="YAML")
    with pytest.raises(ValueError, match="a format is needed to write"):
        open_dumpfile(client(), str(tmp_path / "out"), mode="w")


BAD_SECOND_CHUNK = """\
%YAML 1.1
---
facility:
  Facility_name-LAB:
    name: LAB
---
- not a mapping
"""


def test_every_tool_locates_a_bad_chunk(tmp_path):
    """A backend's error in a chunk's records names file and chunk, whether
    the chunk loop is driven by getobjs, info or check."""
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_SECOND_CHUNK)
    expected = "%s, chunk 2, line 7: a chunk must be a mapping of entity types" % path
    with open_dumpfile(client(), str(path)) as reader:
        with pytest.raises(DataFileError) as info:
            list(reader.getobjs())
    assert str(info.value) == expected
    listed = "%s: chunk 2, line 7: a chunk must be a mapping of entity types" % path
    for command, line in (("info", "icatdata: error: " + expected), ("check", listed)):
        proc = subprocess.run([sys.executable, "-m", "icatdump.cli.data", command, str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        out = proc.stdout + proc.stderr
        assert out.splitlines()[0] == line, out
        assert "Traceback" not in out


def test_info_counts_through_the_chunk_loop(example, tmp_path):
    """info on a gzip file without -f: sniffed, header and counts as for
    the plain file."""
    src = example("icatdump-6.2.xml")
    packed = tmp_path / "x.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    infos = []
    for path in (src, packed):
        proc = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "info", "--json",
                               str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        infos.append(json.loads(proc.stdout))
    for k in ("format", "header", "chunks", "objects", "top_level", "embedded"):
        assert infos[0][k] == infos[1][k], k
    assert infos[0]["format"] == "XML" and infos[0]["header"]["apiversion"] == "6.2.0"
