"""The package's declared public API (``icatdump.__all__``).

* every name is importable from the package and is the very object its
  defining module holds;
* ``import icatdump`` stays cheap: none of the heavy modules (SQLite, lxml,
  PyYAML, suds, click) is imported until a name that needs it is used;
* the package says it is typed (``py.typed``), so type checkers read its
  annotations.
"""

from __future__ import annotations

import importlib
import pathlib
import subprocess
import sys

import icatdump


def test_every_public_name_is_importable_and_the_original():
    assert set(icatdump.__all__) == set(icatdump._HOMES) | {"__version__"}
    for name, home in icatdump._HOMES.items():
        module = importlib.import_module("icatdump." + home)
        assert getattr(icatdump, name) is getattr(module, name), name
    ns: dict = {}
    exec("from icatdump import *", ns)
    assert set(icatdump.__all__) <= set(ns)


def test_package_import_is_cheap():
    heavy = ["sqlite3", "lxml", "yaml", "suds", "click", "icatdump.dumpfile",
             "icatdump.client"]
    code = ("import sys, icatdump; print(' '.join(m for m in %r if m in sys.modules))"
            % (heavy,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.split() == []
    code = ("import sys; from icatdump import DumpFileReader, DataFileError; "
            "print('icatdump.dumpfile' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "True"


def test_the_package_is_typed():
    assert (pathlib.Path(icatdump.__file__).parent / "py.typed").is_file()
