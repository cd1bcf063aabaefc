"""One error hierarchy, one exit code per error, and what a bug looks like.

* every error class is an :class:`~icatdump.errors.IcatdumpError` with its
  exit code, still importable (the same class) from the module that first
  defined it, with the base it had then (``ValueError`` for data problems);
* ``classify`` maps foreign exceptions: bad input stays a data problem, a
  lost connection a server problem, anything else an internal error;
* through the commands: a plugin that trips over its own bug (TypeError)
  ends with exit 4, one line naming a log file that holds the traceback
  (and no password); ``-v`` shows the traceback as well;
* ``-w`` naming a file that is no catalogue is a usage problem (exit 2),
  said in one line naming the file.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from icatdump import errors
from icatdump.errors import (EXIT_DATA, EXIT_INTERNAL, EXIT_SERVER, EXIT_USAGE,
                             IcatdumpError, classify)
from icatdump.store import init_catalogue

#: Where each error was defined before errors.py, and must still be found.
OLD_HOMES = {
    "icatdump.client": ["IcatError", "ParameterError", "InternalError", "PrivilegesError",
                        "NoSuchObjectError", "ObjectExistsError", "SessionError",
                        "ValidationError", "NotImplementedError_", "SearchResultError",
                        "ERROR_TYPES", "error_for"],
    "icatdump.config": ["ConfigError"],
    "icatdump.entity": ["DataConsistencyError"],
    "icatdump.cli.common": ["UsageProblem"],
    "icatdump.store": ["CatalogueError"],
    "icatdump.store.catalogue": ["CatalogueError"],
    "icatdump.store.lock": ["CatalogueBusy"],
    "icatdump.types": ["ValueProblem"],
    "icatdump.dumpfile": ["DataFileError"],
    "icatdump.soap.codec": ["DecodeError"],
    "icatdump.soap.server": ["ClientFault"],
    "icatdump.keys": ["KeyError_"],
    "icatdump.snapshot": ["CatalogueChanged"],
}


@pytest.mark.parametrize("module", sorted(OLD_HOMES))
def test_errors_are_still_found_where_they_were(module):
    mod = importlib.import_module(module)
    for name in OLD_HOMES[module]:
        assert getattr(mod, name) is getattr(errors, name), (module, name)


def test_one_root_and_an_exit_code_each():
    classes = [v for v in vars(errors).values()
               if isinstance(v, type) and issubclass(v, BaseException)]
    # The classes of the old modules (OLD_HOMES), the root and ServerError.
    assert {c.__name__ for c in classes} == \
        {n for names in OLD_HOMES.values() for n in names if n[0].isupper()} - \
        {"ERROR_TYPES"} | {"IcatdumpError", "ServerError"}
    for cls in classes:
        assert issubclass(cls, IcatdumpError), cls
        assert cls.exit_code in (EXIT_DATA, EXIT_USAGE, EXIT_SERVER), cls
    for name in ("DataFileError", "DataConsistencyError", "ValueProblem", "KeyError_",
                 "SearchResultError", "DecodeError", "CatalogueChanged"):
        assert issubclass(getattr(errors, name), ValueError), name
    assert issubclass(errors.ServerError, ConnectionError)
    assert classify(errors.ConfigError("icat.cfg: no section [x]")) == \
        (EXIT_USAGE, "icat.cfg: no section [x]")
    assert classify(errors.CatalogueError("x is not a catalogue"))[0] == EXIT_USAGE
    assert classify(errors.CatalogueBusy("pid 7 writes x"))[0] == EXIT_SERVER
    assert classify(errors.SessionError("expired")) == (EXIT_SERVER, "SESSION: expired")
    assert classify(errors.ObjectExistsError("x"))[0] == EXIT_DATA
    assert errors.UsageProblem("no such file").hint is None
    assert errors.UsageProblem("no such file", hint="give -i FILE").hint == "give -i FILE"
    assert errors.CatalogueChanged(["Dataset"]).hint.startswith("no file was written")
    err = errors.DataFileError("bad\n value", "f.xml", 2, 14, "Facility_name-A")
    assert classify(err) == (EXIT_DATA, "f.xml, chunk 2, line 14, Facility_name-A: bad value")


def test_foreign_exceptions():
    assert classify(ValueError("not a number: 'x'")) == (EXIT_DATA, "not a number: 'x'")
    assert classify(ConnectionRefusedError(111, "Connection refused"))[0] == EXIT_SERVER
    assert classify(TimeoutError("timed out"))[0] == EXIT_SERVER
    assert classify(FileNotFoundError(2, "No such file or directory", "in.xml")) == \
        (EXIT_DATA, "in.xml: No such file or directory")
    assert classify(sqlite3.OperationalError("database or disk is full")) == \
        (EXIT_DATA, "catalogue: database or disk is full")
    for bug in (TypeError("'NoneType' has no len()"), KeyError("name"),
                AttributeError("x"), sqlite3.ProgrammingError("closed")):
        code, message = classify(bug)
        assert code == EXIT_INTERNAL and message.startswith(type(bug).__name__ + ": ")


# -- through the commands --------------------------------------------------------

BUGGY_PLUGIN = '''
    from icatdump.dumpfile import DumpFileReader, DumpFileWriter

    class reader(DumpFileReader):
        pass

    class writer(DumpFileWriter):
        def head(self):
            return len(None)        # a bug: TypeError
'''


@pytest.fixture
def buggy_site(tmp_path) -> pathlib.Path:
    """A format plugin whose writer fails with a TypeError, installed as
    importlib.metadata sees a distribution."""
    site = tmp_path / "site"
    info = site / "buggy_format-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-format\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[icatdump.backends]\nBUGGY = buggy_fmt\n")
    (site / "buggy_fmt.py").write_text(textwrap.dedent(BUGGY_PLUGIN))
    return site


def run(args, tmp_path, site=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ICATDUMP_HOME=str(tmp_path / "home"))
    env.pop("PYTHONPATH", None)
    env.pop("ICATDUMP_DEBUG", None)
    if site:
        env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_internal_error_exit_4_traceback_in_a_log(buggy_site, tmp_path):
    init_catalogue(tmp_path / "cat.sqlite")
    out = tmp_path / "out.buggy"
    proc = run(["icatdump.cli.dump", "-w", "cat.sqlite", "-f", "BUGGY", "-o", str(out),
                "-a", "simple", "-u", "root", "-p", "s3cret-pw"], tmp_path, buggy_site)
    assert proc.returncode == EXIT_INTERNAL, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    found = re.fullmatch(r"icatdump: error: internal error \(a bug, please report it\): "
                         r"TypeError: .*; traceback in (\S+)", lines[0])
    assert found, lines[0]
    log = pathlib.Path(found.group(1))
    assert log.parent == tmp_path / "home" / "log"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "in head" in text and "return len(None)" in text and "TypeError" in text
    assert "s3cret-pw" not in text
    assert not out.exists() and not list(tmp_path.glob("*out.buggy*"))


def test_internal_error_verbose_shows_the_traceback(buggy_site, tmp_path):
    init_catalogue(tmp_path / "cat.sqlite")
    proc = run(["icatdump.cli.dump", "-w", "cat.sqlite", "-f", "BUGGY", "-o", "out", "-v"],
               tmp_path, buggy_site)
    assert proc.returncode == EXIT_INTERNAL, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "return len(None)" in proc.stderr
    assert "internal error" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("command", [["icatdump.cli.dump", "-o", "out.xml"],
                                     ["icatdump.cli.ingest", "-i", "in.yaml"]])
def test_w_names_a_file_that_is_no_catalogue(command, tmp_path, example):
    (tmp_path / "notacatalogue.txt").write_text("just some text\n" * 100)
    (tmp_path / "in.yaml").write_bytes(example("icatdump-6.2.yaml").read_bytes())
    proc = run([*command, "-w", "notacatalogue.txt"], tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "notacatalogue.txt is not an icatdump catalogue" in lines[0], \
        proc.stderr
    assert not (tmp_path / "out.xml").exists()


def test_internal_error_without_a_log_directory(buggy_site, tmp_path):
    """No place for the log (ICATDUMP_HOME is a file): the traceback goes to
    stderr instead of being lost, and the last line says why."""
    init_catalogue(tmp_path / "cat.sqlite")
    (tmp_path / "home").write_text("not a directory")
    proc = run(["icatdump.cli.dump", "-w", "cat.sqlite", "-f", "BUGGY", "-o", "out"],
               tmp_path, buggy_site)
    assert proc.returncode == EXIT_INTERNAL, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert "internal error" in last and "the traceback above (no log file: " in last
    assert str(tmp_path / "home") in last
