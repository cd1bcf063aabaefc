"""The source tree has no unused imports, undefined names or other mistakes
pyflakes finds: they hide real errors and rot quickly in a fast-moving tree."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TREES = ["icatdump", "backends", "tests", "bench", "tools", "examples", "icatdump_cli.py"]


def test_pyflakes_is_clean():
    proc = subprocess.run([sys.executable, "-m", "pyflakes", *TREES], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert "No module named pyflakes" not in proc.stderr, "pyflakes is a test dependency"
    assert proc.returncode == 0, proc.stdout + proc.stderr
