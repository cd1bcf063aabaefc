"""The source tree has no unused imports, undefined names or other mistakes
pyflakes finds, and mypy finds no type errors in the package (its settings,
lenient per module where it cannot follow, are in setup.cfg): both hide real
errors and rot quickly in a fast-moving tree."""

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


def test_mypy_is_clean():
    # The files to check and the settings come from setup.cfg's [mypy].
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "setup.cfg"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "No module named mypy" not in proc.stderr, "mypy is a test dependency"
    assert proc.returncode == 0, proc.stdout + proc.stderr
