"""gzip-compressed data files (``icatdump | gzip``) are read as they are:
recognised by their first bytes, by every command that reads a data file.

A truncated or corrupt compressed file is one clear error, and everything
before the damage still counts: ingest keeps the complete chunks before
it, salvage writes them.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib

import pytest

from test_file_tools import body, cli, complete_prefix


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def run(module: str, *args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icatdump.cli." + module, *map(str, args)],
                          capture_output=True, input=stdin, timeout=300)


def new_catalogue(path):
    proc = run("data", "init", path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_ingest_compressed_file_and_stdin(example, tmp_path, fmt):
    src = example("icatdump-6.2.%s" % fmt.lower())
    packed = tmp_path / ("in.%s.gz" % fmt.lower())
    packed.write_bytes(gz(src.read_bytes()))
    for how, args, stdin in (("file", ["-i", packed], None),
                             ("stdin", ["-i", "-"], packed.read_bytes())):
        db = tmp_path / ("%s-%s.sqlite" % (fmt, how))
        new_catalogue(db)
        proc = run("ingest", "-q", "-w", db, *args, stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / ("out-%s.%s" % (how, fmt.lower()))
        proc = run("dump", "-q", "-w", db, "-f", fmt, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert body(out.read_bytes(), fmt) == body(src.read_bytes(), fmt)


def test_info_and_check_of_a_compressed_file(example, tmp_path):
    src = example("icatdump-6.2.xml")
    packed = tmp_path / "in.xml.gz"
    packed.write_bytes(gz(src.read_bytes()))
    plain, packed_info = (json.loads(cli("info", "--json", p)[1]) for p in (src, packed))
    for key in ("format", "header", "chunks", "objects", "top_level", "embedded"):
        assert packed_info[key] == plain[key], key
    code, _, err = cli("check", packed)
    assert code == 0, err


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_truncated_compressed_file(example, tmp_path, fmt):
    data = example("icatdump-6.2.%s" % fmt.lower()).read_bytes()
    packed = gz(data)
    for cut in (len(packed) // 3, len(packed) * 2 // 3, len(packed) - 20):
        src = tmp_path / ("cut.%s.gz" % fmt.lower())
        src.write_bytes(packed[:cut])
        readable = zlib.decompressobj(wbits=31).decompress(packed[:cut])
        expected = complete_prefix(data, len(readable), fmt)

        out = tmp_path / ("salvaged.%s" % fmt.lower())
        code, _, err = cli("salvage", src, out)
        assert code == 1 and "compressed data ends too early (truncated file)" in err, err
        assert body(out.read_bytes(), fmt) == body(expected, fmt), cut

        db = tmp_path / ("cut-%d.sqlite" % cut)
        new_catalogue(db)
        proc = run("ingest", "-q", "-w", db, "-i", src)
        assert proc.returncode == 1
        lines = proc.stderr.decode().splitlines()
        assert lines[0].endswith("compressed data ends too early (truncated file)"), lines
        assert str(src) in lines[0] and "Traceback" not in proc.stderr.decode()
        chunks = expected.count(b"</data>") if fmt == "XML" else expected.count(b"\n---\n")
        if chunks:
            assert "%d chunk" % chunks in lines[1], lines


def test_corrupt_compressed_file(example, tmp_path):
    """A wrong checksum shows only at the end, after every chunk was read: the
    chunks are in, the error names the damage.  (Damage inside the deflate
    data mostly shows earlier, as whatever the garbage makes of the XML.)"""
    packed = bytearray(gz(example("icatdump-6.2.xml").read_bytes()))
    packed[-8] ^= 0xFF          # the CRC-32 of the trailer
    src = tmp_path / "corrupt.xml.gz"
    src.write_bytes(bytes(packed))
    db = tmp_path / "c.sqlite"
    new_catalogue(db)
    proc = run("ingest", "-q", "-w", db, "-i", src)
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert "compressed data is corrupt: CRC check failed" in lines[0], lines
    assert str(src) in lines[0] and "Traceback" not in proc.stderr.decode()


@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_dump_and_convert_to_a_compressed_file(example, tmp_path, fmt):
    """``-o NAME.gz`` writes gzip; the content is the plain dump's, and it
    reads back through the library, icatingest and icatdata convert."""
    src = example("icatdump-6.2.%s" % fmt.lower())
    db = tmp_path / "c.sqlite"
    new_catalogue(db)
    assert run("ingest", "-q", "-w", db, "-i", src).returncode == 0
    packed = tmp_path / ("d.%s.gz" % fmt.lower())
    proc = run("dump", "-w", db, "-f", fmt, "-o", packed)
    assert proc.returncode == 0, proc.stderr
    assert b"objects (319 top-level) from " in proc.stderr
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    assert body(gzip.decompress(packed.read_bytes()), fmt) == body(src.read_bytes(), fmt)

    from icatdump.dumpfile import open_dumpfile
    from icatdump.ingest import ingest
    from icatdump.store import EmbeddedClient, init_catalogue
    init_catalogue(str(tmp_path / "lib.sqlite"))
    client = EmbeddedClient(str(tmp_path / "lib.sqlite"))
    with open_dumpfile(client, str(packed), fmt, "r") as reader:
        assert sum(ingest(client, reader).created.values()) == 439

    other = "YAML" if fmt == "XML" else "XML"
    converted = tmp_path / ("e.%s.gz" % other.lower())
    code, _, err = cli("convert", packed, converted)
    assert code == 0, err
    back = tmp_path / ("f.%s" % fmt.lower())
    code, _, err = cli("convert", converted, back)
    assert code == 0, err
    assert body(back.read_bytes(), fmt) == body(src.read_bytes(), fmt)


def test_failed_compressed_dump_leaves_nothing(tmp_path):
    """A dump to NAME.gz that fails leaves no file and no partial file."""
    proc = run("dump", "-w", tmp_path / "missing.sqlite", "-o", tmp_path / "d.xml.gz")
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_dump_into_a_missing_directory_names_the_file(tmp_path):
    """The error names the file asked for, not the hidden partial file."""
    db = tmp_path / "c.sqlite"
    new_catalogue(db)
    target = tmp_path / "missing" / "d.xml.gz"
    proc = run("dump", "-q", "-w", db, "-o", target)
    assert proc.returncode != 0
    assert proc.stderr.decode() == "icatdump: error: %s: No such file or directory\n" % target
