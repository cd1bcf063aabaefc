"""Unlucky file systems: a full disk, a read-only catalogue.

A full disk is a small tmpfs mounted for the test, a read-only catalogue one
made immutable with chattr; both need root and are skipped, with the reason,
where the machine does not allow them.
"""

import contextlib
import os
import subprocess
import sys

import pytest

from icatdump.store import EmbeddedClient, init_catalogue


def cli(command, *args):
    return subprocess.run([sys.executable, "-m", "icatdump.cli." + command, *args],
                          capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def small_disk(path, size="4m"):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a small tmpfs here: " + r.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def immutable(*paths):
    r = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("chattr +i does not work here: " + r.stderr.strip())
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_init_on_a_full_disk_leaves_nothing(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        (disk / "filler").write_bytes(b"x" * 3 * 1024 * 1024)
        target = disk / "c.sqlite"
        r = cli("data", "init", str(target))
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(target) in lines[0], r.stderr
        assert "Traceback" not in r.stderr
        assert sorted(os.listdir(disk)) == ["filler"]
        (disk / "filler").unlink()
        r = cli("data", "init", str(target))
        assert r.returncode == 0, r.stderr
        with EmbeddedClient(target) as client:
            assert client.schema_version == "6.2"


def test_read_only_catalogue_is_dumped_not_written(tmp_path, example):
    folder = tmp_path / "ro"
    folder.mkdir()
    cat = folder / "c.sqlite"
    init_catalogue(cat)
    sample = str(example("icatdump-6.2.yaml"))
    assert cli("ingest", "-q", "-w", str(cat), "-i", sample).returncode == 0
    assert cli("dump", "-q", "-w", str(cat), "-o", str(tmp_path / "rw.yaml")).returncode == 0
    with immutable(cat, folder):
        r = cli("dump", "-q", "-w", str(cat), "-o", str(tmp_path / "ro.yaml"))
        assert r.returncode == 0, r.stderr
        r = cli("ingest", "-q", "-w", str(cat), "-i", sample, "--duplicate", "IGNORE")
        assert r.returncode != 0
        assert r.stderr.count("\n") == 1 and "read-only" in r.stderr, r.stderr
        assert sorted(os.listdir(folder)) == ["c.sqlite"]
    assert (tmp_path / "ro.yaml").read_text().split("\n", 2)[2] == \
        (tmp_path / "rw.yaml").read_text().split("\n", 2)[2]


INTERRUPTED_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == %r:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
sys.argv = [%r, "--help"]
import icatdump_cli
icatdump_cli.%s()
"""


@pytest.mark.parametrize("prog, module", [("icatdump", "click"), ("icatingest", "lxml"),
                                          ("icatdata", "yaml")])
def test_ctrl_c_while_starting_is_no_traceback(prog, module):
    """Ctrl-C in the first tenth of a second lands while the command imports
    its modules: simulated by an import hook, it ends as Ctrl-C does later."""
    r = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT % (module, prog, prog)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 130
    assert r.stderr == "%s: error: interrupted\n" % prog


@pytest.mark.parametrize("name", ["d.yaml", "d.xml.gz"])
def test_dump_into_a_full_disk_leaves_nothing_and_names_the_file(tmp_path, example, name):
    cat = tmp_path / "c.sqlite"
    init_catalogue(cat)
    sample = str(example("icatdump-6.2.yaml"))
    assert cli("ingest", "-q", "-w", str(cat), "-i", sample).returncode == 0
    with small_disk(tmp_path / "disk", size="64k") as disk:
        (disk / "filler").write_bytes(b"x" * 56 * 1024)
        target = disk / name
        r = cli("dump", "-q", "-w", str(cat), "-o", str(target))
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        assert str(target) in r.stderr and "No space left" in r.stderr, r.stderr
        assert sorted(os.listdir(disk)) == ["filler"]


@pytest.mark.parametrize("output", [".", "sub", "sub/", "missing/"])
def test_output_directory_refused_before_any_work(tmp_path, output):
    cat = tmp_path / "c.sqlite"
    init_catalogue(cat)
    (tmp_path / "sub").mkdir()
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-q", "-w", str(cat),
                        "-o", output], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and output.rstrip("/") in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite", "sub"]
    assert list((tmp_path / "sub").iterdir()) == []
