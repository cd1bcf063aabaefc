"""The documentation builds, and what it shows is true.

* ``doc/`` builds with Sphinx with warnings as errors (as ``make docs`` does);
* every fenced ```python block of a page in ``doc/`` runs: the blocks of one
  page run in order, in one namespace, in an empty directory (a block that
  is not meant to run is written as ``{code-block} python``);
* every option of ``icatdump``/``icatingest``/``icatdata`` used in a shell
  example (```sh blocks of doc/*.md and README.md), and every option in an
  inline code span of our own pages, exists;
* the exit codes documented are the ones the commands use;
* ``--version`` works on every command.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from icatdump import __version__
from icatdump import errors
from icatdump.cli.data import main as icatdata
from icatdump.cli.dump import main as icatdump
from icatdump.cli.ingest import main as icatingest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "doc"
PAGES = sorted(DOC.glob("*.md"))
README = ROOT / "README.md"
COMMANDS = {"icatdump": icatdump, "icatingest": icatingest, "icatdata": icatdata}
# Pages whose inline `--option` mentions are all about our commands.
OWN_PAGES = ["index", "guide", "configuration", "format", "file-tools", "migration", "cli",
             "api", "plugins", "soap", "port", "performance", "design"]


def fenced(text: str, lang: str) -> list[tuple[int, str]]:
    """(line number, content) of the ```lang blocks of a Markdown text."""
    blocks = []
    for m in re.finditer(r"^```%s[ \t]*\n(.*?)^```[ \t]*$" % re.escape(lang), text, re.S | re.M):
        blocks.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return blocks


# -- the Sphinx build ----------------------------------------------------------

def test_sphinx_build_without_warnings(tmp_path):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOC), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "sphinx failed:\n" + proc.stdout + proc.stderr
    assert (tmp_path / "html" / "index.html").exists()
    cli_page = (tmp_path / "html" / "cli.html").read_text(encoding="utf-8")
    for name in ("--outputfile", "--inputfile", "--duplicate", "convert", "serve"):
        assert name in cli_page
    assert time.monotonic() - start < 60


# -- Python examples -----------------------------------------------------------

PYTHON_PAGES = [p for p in PAGES if fenced(p.read_text(encoding="utf-8"), "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICATDUMP_HOME", str(tmp_path / "home"))
    namespace = {"__name__": "__doc_example__"}
    for line, code in fenced(page.read_text(encoding="utf-8"), "python"):
        # Line numbers in tracebacks point into the page.
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)


# -- shell examples and options -----------------------------------------------

def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in command.params:
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def _check_invocation(words: list[str], where: str) -> list[str]:
    """Problems with one command line (``words[0]`` is one of ours)."""
    command = COMMANDS[words[0]]
    args = words[1:]
    if isinstance(command, click.Group):
        if args and args[0] in ("--help", "-h", "--version"):
            return []
        sub = next((a for a in args if not a.startswith("-")), None)
        if sub not in command.commands:
            return ["%s: %s has no subcommand %r" % (where, words[0], sub)]
        args = args[args.index(sub) + 1:]
        command = command.commands[sub]
    known = _options(command) | {"--version"}
    problems = []
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            continue
        name = arg.split("=", 1)[0]
        if name.startswith("--cred_") and len(name) > len("--cred_"):
            continue
        if name not in known:
            problems.append("%s: %s has no option %s" % (where, words[0], name))
    return problems


def _shell_commands(text: str):
    """Command lines of the ```sh blocks: (line number, words)."""
    for start, block in fenced(text, "sh"):
        for i, line in enumerate(block.splitlines()):
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = line.removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\||&&|;", line):
                try:
                    words = shlex.split(part)
                except ValueError:
                    continue
                if words and words[0] in COMMANDS:
                    yield start + i, words


def test_shell_examples_use_real_options():
    problems, seen = [], 0
    for page in PAGES + [README]:
        for line, words in _shell_commands(page.read_text(encoding="utf-8")):
            seen += 1
            problems += _check_invocation(words, "%s:%d" % (page.name, line))
    assert seen > 20
    assert not problems, "\n".join(problems)


def test_inline_options_exist():
    every = set()
    for command in COMMANDS.values():
        every |= _options(command)
        for sub in getattr(command, "commands", {}).values():
            every |= _options(sub)
    every |= {"--version", "--cred_"}
    problems = []
    for page in [DOC / (name + ".md") for name in OWN_PAGES] + [README]:
        text = page.read_text(encoding="utf-8")
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)   # inline spans only
        for m in re.finditer(r"`(--?[A-Za-z][\w-]*)", text):
            name = m.group(1)
            if name.startswith("--cred_"):
                name = "--cred_"
            if name not in every:
                problems.append("%s: no command has the option %s" % (page.name, name))
    assert not problems, "\n".join(problems)


def test_own_pages_are_in_the_site():
    for name in OWN_PAGES:
        assert (DOC / (name + ".md")).exists(), name
    index = (DOC / "index.md").read_text(encoding="utf-8")
    for name in OWN_PAGES[1:]:
        assert re.search(r"^%s$" % name, index, re.M), name


# -- exit codes and --version --------------------------------------------------

def _documented_codes(page: str) -> dict[int, str]:
    text = (DOC / page).read_text(encoding="utf-8")
    section = text.split("xit codes", 1)[1]
    return {int(m.group(1)): m.group(2) for m in
            re.finditer(r"^\| (\d+) \| (.*?) \|$", section, re.M)}


def test_documented_exit_codes_match_the_code():
    expected = {errors.EXIT_OK: "success", errors.EXIT_DATA: "data",
                errors.EXIT_USAGE: "usage", errors.EXIT_SERVER: "server",
                errors.EXIT_INTERNAL: "internal", errors.EXIT_INTERRUPTED: "interrupted",
                errors.EXIT_BROKEN_PIPE: "pipe"}
    for page in ("guide.md", "migration.md"):
        codes = _documented_codes(page)
        assert set(codes) == set(expected), page
        for code, word in expected.items():
            assert word in codes[code], (page, code)
    readme = README.read_text(encoding="utf-8")
    assert re.search(r"0 success, 1 data problem, 2 usage or configuration problem,\s+"
                     r"3 connection or server problem,\s+4 internal error", readme)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_version_option(name):
    result = CliRunner().invoke(COMMANDS[name], ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "%s, version %s" % (name, __version__)


def test_make_docs_target():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:", makefile, re.M)
    assert "sphinx -W --keep-going" in makefile
    assert os.path.exists(DOC / "conf.py")


def test_readme_links_exist():
    readme = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((doc/[^)#]+)", readme)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
