"""The summary on stderr: one line, per-type lines with -v, nothing with -q."""

import io

from click.testing import CliRunner

from icatdump.cli.dump import main as icatdump
from icatdump.cli.ingest import main as icatingest
from icatdump.cli.progress import Progress, per_type_lines
from icatdump.store import init_catalogue

SAMPLE = """\
%YAML 1.1
---
facility:
  Facility_name-LAB:
    name: LAB
---
investigationType:
  InvestigationType_name-experiment_facility-(name-LAB):
    facility: Facility_name-LAB
    name: experiment
"""


def test_per_type_lines():
    from collections import Counter
    lines = per_type_lines(created=Counter(Dataset=3, Keyword=1),
                           already_present=Counter(Dataset=2))
    assert lines == ["Dataset  3 created, 2 already present", "Keyword  1 created"]


def test_progress_not_a_terminal():
    out = io.StringIO()
    p = Progress(stream=out, verbose=True)
    p.update("working")
    p.done("summary", ["a", "b"])
    assert out.getvalue() == "summary\n  a\n  b\n"
    out = io.StringIO()
    p = Progress(quiet=True, stream=out, verbose=True)
    p.done("summary", ["a"])
    assert out.getvalue() == ""


def test_summary_lines(tmp_path):
    cat = str(tmp_path / "c.sqlite")
    init_catalogue(cat)
    (tmp_path / "s.yaml").write_text(SAMPLE)
    runner = CliRunner()
    r = runner.invoke(icatingest, ["-w", cat, "-i", str(tmp_path / "s.yaml"), "-v"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith("icatingest: 2 chunks into %s, 2 created, in " % cat)
    assert lines[1:] == ["  Facility           1 created", "  InvestigationType  1 created"]
    r = runner.invoke(icatingest, ["-w", cat, "-i", str(tmp_path / "s.yaml"),
                                   "--duplicate", "IGNORE"])
    assert r.exit_code == 0
    assert "0 created, 2 already present" in r.stderr and len(r.stderr.splitlines()) == 1
    r = runner.invoke(icatdump, ["-w", cat, "-o", str(tmp_path / "d.xml"), "-f", "XML", "-v"])
    assert r.exit_code == 0
    assert r.stderr.startswith("icatdump: 2 objects (2 top-level) from %s written to %s in "
                               % (cat, tmp_path / "d.xml"))
    assert r.stderr.splitlines()[1:] == ["  Facility           1 written",
                                         "  InvestigationType  1 written"]
    r = runner.invoke(icatdump, ["-w", cat, "-o", str(tmp_path / "d.xml"), "-q"])
    assert r.exit_code == 0 and r.stderr == ""


def _on_a_terminal(args: list[str]) -> str:
    """Run a command with its stderr on a pseudo-terminal; what it wrote there."""
    import os
    import pty
    import subprocess
    import sys
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:         # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_progress_line_on_a_terminal(tmp_path):
    """On a terminal: a rewritten line with objects, rate and elapsed time,
    cleared before the summary."""
    cat = str(tmp_path / "c.sqlite")
    init_catalogue(cat)
    (tmp_path / "s.yaml").write_text(SAMPLE)
    out = _on_a_terminal(["icatdump.cli.ingest", "-w", cat, "-i", str(tmp_path / "s.yaml")])
    assert "\r\x1b[K" in out
    line = out.split("\r\x1b[K")[1]
    assert "objects" in line and "obj/s" in line and line.rstrip().endswith("s]"), out
    assert "icatingest: 2 chunks into %s, 2 created" % cat in out.split("\r\x1b[K")[-1]
    out = _on_a_terminal(["icatdump.cli.dump", "-w", cat, "-o", str(tmp_path / "d.yaml")])
    assert "dumped" in out and "obj/s" in out and "icatdump: 2 objects (2 top-level) from %s written" % cat in out


def test_progress_quiet_on_a_terminal(tmp_path):
    cat = str(tmp_path / "c.sqlite")
    init_catalogue(cat)
    (tmp_path / "s.yaml").write_text(SAMPLE)
    assert _on_a_terminal(["icatdump.cli.ingest", "-q", "-w", cat,
                           "-i", str(tmp_path / "s.yaml")]) == ""
