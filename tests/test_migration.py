"""doc/migration.md's option table against python-icat 1.7.0's own definitions.

python-icat's connection variables come from ``icat.config.Config``; the
scripts' own from their ``config.add_variable`` calls, read from the
scripts python-icat installs (``icatdump.py``, ``icatingest.py``).  The table
must list exactly those, and every row is tried on our commands: its options
exist, its config key and its environment variable take effect.
"""

import ast
import getpass
import os
import re
import sys
from pathlib import Path

import pytest

import icat.config
from icatdump import config
from icatdump.cli import dump as dump_cli
from icatdump.cli import ingest as ingest_cli

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"icatdump.py": dump_cli, "icatingest.py": ingest_cli}


def doc_rows() -> list[dict]:
    text = (ROOT / "doc" / "migration.md").read_text()
    table = text.split("## Every option, row by row", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or cells[0] in ("script", "---"):
            continue
        script, name, options, key, env, ours = cells
        rows.append({"scripts": ["icatdump.py", "icatingest.py"] if script == "both"
                     else [script], "name": name,
                     "options": tuple(re.findall(r"`([^`]+)`", options)),
                     "key": key.strip("`") or None, "env": env.strip("`") or None,
                     "ours": ours})
    return rows


def script_variables(script: str) -> set:
    """(name, options, env) of every add_variable call in a python-icat script."""
    path = Path(sys.executable).parent / script
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_variable"):
            name = ast.literal_eval(node.args[0])
            options = tuple(ast.literal_eval(node.args[1])) if len(node.args) > 1 else ()
            env = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "envvar"),
                       None)
            found.add((name, options, env))
    return found


def pyicat_variables(script: str) -> set:
    ids = "optional" if script == "icatingest.py" else False
    conf = icat.config.Config(ids=ids)
    options = {}
    for action in conf.argparser._actions:
        options.setdefault(action.dest, ())
        options[action.dest] += tuple(action.option_strings)
    found = {(v.name, tuple(sorted(options.get(v.name, ()))), v.envvar)
             for v in conf.confvariables}
    return found | {(n, tuple(sorted(o)), e) for n, o, e in script_variables(script)}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_table_lists_exactly_python_icats_variables(script):
    ours = {(r["name"], tuple(sorted(r["options"])), r["env"])
            for r in doc_rows() if script in r["scripts"]}
    assert ours == pyicat_variables(script)


def test_only_documented_differences():
    for row in doc_rows():
        assert row["ours"].startswith(("same", "stricter:")), row


# -- every row against our commands -------------------------------------------

#: variable -> (a value to set, what our resolved Config then shows)
EFFECTS = {
    "configFile": (None, None),
    "configSection": ("sec", lambda cfg: cfg.section),
    "url": ("http://icat.example.org",
            lambda cfg: cfg.url == "http://icat.example.org/ICATService/ICAT?wsdl"),
    "idsurl": ("http://ids.example.org", lambda cfg: cfg.idsurl.startswith(
        "http://ids.example.org")),
    "checkCert": ("no", lambda cfg: cfg.check_cert is False),
    "http_proxy": ("http://proxy:3128", lambda cfg: cfg.proxies["http"] == "http://proxy:3128"),
    "https_proxy": ("http://proxy:3129",
                    lambda cfg: cfg.proxies["https"] == "http://proxy:3129"),
    "no_proxy": ("localhost", lambda cfg: cfg.no_proxy == "localhost"),
    "auth": ("db", lambda cfg: cfg.auth == "db"),
    "username": ("jdoe", lambda cfg: cfg.username == "jdoe"),
    "password": ("secret", lambda cfg: cfg.password == "secret"),
    "promptPass": ("yes", lambda cfg: cfg.password == "typed"),
    "file": ("~/f.yaml", lambda cfg: cfg.settings["file"] == os.path.expanduser("~/f.yaml")),
    "format": ("xml", lambda cfg: cfg.settings["format"] == "XML"),
    "uploadDatafiles": ("yes", lambda cfg: cfg.settings["uploadDatafiles"] is True),
    "dataDir": ("~/data", lambda cfg: cfg.settings["dataDir"] == os.path.expanduser("~/data")),
    "duplicate": ("ignore", lambda cfg: cfg.settings["duplicate"] == "IGNORE"),
}


def row_cases():
    for row in doc_rows():
        for script in row["scripts"]:
            yield pytest.param(script, row, id="%s-%s" % (script, row["name"]))


@pytest.fixture
def typed_password(monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "typed")
    monkeypatch.setattr(config, "_terminal_available", lambda: True)


@pytest.mark.parametrize("script, row", list(row_cases()))
def test_row(script, row, tmp_path, typed_password):
    command = SCRIPTS[script]
    params = {}
    for p in command.main.params:
        params.update({opt: p for opt in p.opts + p.secondary_opts})
    for option in row["options"]:
        assert option in params, "%s has no %s" % (script, option)
    value, effect = EFFECTS[row["name"]]
    nothing = {p.name: None for p in command.main.params}
    cfgfile = tmp_path / "icat.cfg"
    if row["key"]:
        cfgfile.write_text("[sec]\n%s = %s\n" % (row["key"], value))
        cfg = config.resolve(dict(nothing, configsection="sec"), {}, search_path=[cfgfile],
                             need_login=False, export_proxy_env=False,
                             settings=command.SETTINGS)
        assert effect(cfg), (row, cfg)
    if row["env"]:
        cfgfile.write_text("[sec]\n")
        other = tmp_path / "other.cfg"
        other.write_text("[sec]\n")
        env = {row["env"]: str(other) if row["name"] == "configFile" else value}
        cfg = config.resolve(nothing, env, search_path=[cfgfile], need_login=False,
                             export_proxy_env=False, settings=command.SETTINGS)
        if row["name"] == "configFile":
            assert cfg.configfiles == [other]      # instead of the search path
        else:
            assert effect(cfg), (row, cfg)
