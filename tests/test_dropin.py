"""A python-icat user's habits: their icat.cfg keys, ``~`` in file names, -P
in a pipe, pipes closed early, shell completion.  Real CLI subprocesses."""

import os
import subprocess
import sys

import pytest

from icatdump.store import init_catalogue

SAMPLE = """%YAML 1.1
# Date: Mon, 01 Dec 2025 16:03:33 +0000
# Service: file:test
# ICAT-API: 6.2.0
# Generator: test
---
facility:
  Facility_name-LAB:
    name: LAB
"""


def run(command, *args, cwd=None, env=None, input=None, **kw):
    return subprocess.run([sys.executable, "-m", "icatdump.cli." + command, *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=dict(os.environ, **(env or {})), input=input, **kw)


@pytest.fixture
def catalogue(tmp_path):
    cat = tmp_path / "c.sqlite"
    init_catalogue(cat)
    return cat


def test_config_keys_file_format_duplicate(tmp_path, catalogue):
    """python-icat's scripts read file, format and duplicate from the section."""
    (tmp_path / "in.yaml").write_text(SAMPLE)
    (tmp_path / "icat.cfg").write_text(
        "[lab]\nurl = %s\nfile = in.yaml\nduplicate = IGNORE\n"
        "[out]\nurl = %s\nfile = out.xml\nformat = XML\n" % (catalogue, catalogue))
    r = run("ingest", "-s", "lab", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("ingest", "-s", "lab", cwd=tmp_path)
    assert r.returncode == 0 and "1 already present" in r.stderr, r.stderr
    r = run("dump", "-s", "out", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert (tmp_path / "out.xml").read_text().startswith("<?xml")
    # The command line wins over the file, as in python-icat.
    r = run("dump", "-s", "out", "-f", "YAML", "-o", "-", cwd=tmp_path)
    assert r.stdout.startswith("%YAML")


def test_bad_config_value_is_one_line(tmp_path, catalogue):
    (tmp_path / "icat.cfg").write_text("[s]\nurl = %s\nformat = CSV\n" % catalogue)
    r = run("dump", "-s", "s", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "format" in r.stderr and "icat.cfg" in r.stderr


def test_tilde_expanded_in_file_names(tmp_path, catalogue):
    home = tmp_path / "home"
    home.mkdir()
    (home / "in.yaml").write_text(SAMPLE)
    r = run("ingest", "-w", str(catalogue), "-i", "~/in.yaml", env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    r = run("dump", "-w", str(catalogue), "-o", "~/x.yaml", env={"HOME": str(home)},
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "name: LAB" in (home / "x.yaml").read_text()
    assert not (tmp_path / "~").exists()


def test_prompt_without_terminal_does_not_eat_the_data(tmp_path):
    """-P asks on the terminal only; with none, one line and exit 2 (the
    data on standard input is not read as a password)."""
    r = run("ingest", "-w", "http://127.0.0.1:9", "-a", "simple", "-u", "root", "-P",
            "-i", "-", input=SAMPLE, start_new_session=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "no terminal" in r.stderr, r.stderr
    assert "Warning" not in r.stderr and "EOFError" not in r.stderr


def test_summary_names_the_catalogue(tmp_path, monkeypatch):
    """A forgotten -s: the summary says which catalogue took the data."""
    (tmp_path / "in.yaml").write_text(SAMPLE)
    r = run("ingest", "-i", str(tmp_path / "in.yaml"), env={"ICATDUMP_HOME": str(tmp_path)},
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "into %s" % (tmp_path / "catalogue.sqlite") in r.stderr.splitlines()[-1]


@pytest.mark.parametrize("command", [["dump", "-f", "XML", "-o", "-"],
                                     ["data", "convert", "-t", "xml", "-", "-"]])
def test_broken_pipe_exits_141_quietly(tmp_path, example, command):
    """The output (94 KB of XML) is more than the pipe and the reader's
    buffer take (64 + 8 KiB), so the command is still writing when the
    reader goes away."""
    cat = tmp_path / "big.sqlite"
    init_catalogue(cat)
    sample = str(example("icatdump-6.2.yaml"))
    assert run("ingest", "-q", "-w", str(cat), "-i", sample).returncode == 0
    args = command + (["-w", str(cat)] if command[0] == "dump" else [])
    with open(sample, "rb") as data:
        proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli." + args[0], *args[1:]],
                                stdin=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize("prog, option", [("icatdump", "-o"), ("icatingest", "-i"),
                                          ("icatdump", "-c"), ("icatingest", "-w")])
def test_file_names_complete(prog, option):
    """click's bash completion offers files after the file options."""
    script = os.path.join(os.path.dirname(sys.executable), prog)
    env = dict(os.environ, COMP_WORDS="%s %s " % (prog, option), COMP_CWORD="2",
               **{"_%s_COMPLETE" % prog.upper(): "bash_complete"})
    r = subprocess.run([script], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["file,"], r.stdout + r.stderr
