"""python-icat compatible configuration: sources, precedence, files, prompting."""

from __future__ import annotations

import getpass
import os
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from icatdump import config
from icatdump.config import (Config, ConfigError, complete_url, config_search_path,
                             connection_options, default_catalogue_path, is_remote, resolve)

ENV_VARS = ["ICAT_CFG", "ICAT_CFG_SECTION", "ICAT_SERVICE", "ICAT_DATA_SERVICE", "ICAT_AUTH",
            "ICAT_USER", "http_proxy", "https_proxy", "no_proxy", "ICATDUMP_HOME",
            "XDG_DATA_HOME"]
URL = "https://icat.example.org:8181/ICATService/ICAT?wsdl"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A clean environment: own HOME, empty working directory, no ICAT_* vars."""
    for var in ENV_VARS:
        monkeypatch.setenv(var, "x")     # so that monkeypatch restores the absence
        monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(config, "_terminal_available", lambda: False)
    monkeypatch.setattr(getpass, "getpass", _no_prompt)
    return home


def _no_prompt(prompt=""):
    raise AssertionError("unexpected password prompt")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(**params) -> Config:
    """resolve() over the current environment, without the machine's /etc/icat."""
    params.setdefault("search", [Path("icat.cfg")])
    search = params.pop("search")
    return resolve(params, search_path=search)


ROOT = """\
    [root]
    url = https://file.example.org
    auth = simple
    username = root
    password = secret%pw
    idsurl = https://file.example.org:8181
    """


# -- URLs and the default catalogue ------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("https://icat.example.org:8181", "https://icat.example.org:8181/ICATService/ICAT?wsdl"),
    ("http://localhost", "http://localhost/ICATService/ICAT?wsdl"),
    ("HTTPS://h:1", "https://h:1/ICATService/ICAT?wsdl"),   # as urllib spells it
    ("https://h/icat/ICAT?wsdl", "https://h/icat/ICAT?wsdl"),
    ("https://h/", "https://h/"),                   # any path, even "/", is kept
    ("https://h?wsdl", "https://h?wsdl"),           # so is a query
    ("/data/catalogue.sqlite", "/data/catalogue.sqlite"),
    ("catalogue.sqlite", "catalogue.sqlite"),
    (None, None),
])
def test_complete_url(url, expected):
    assert complete_url(url) == expected


def test_complete_ids_url():
    assert complete_url("https://h:8181", config.IDS_PATH) == "https://h:8181/ids"


@pytest.mark.parametrize("url, remote", [
    ("https://h", True), ("http://h:80/x", True), ("Http://h", True),
    ("/a/b.sqlite", False), ("b.sqlite", False), ("file:///a.sqlite", False),
    ("C:\\data\\c.sqlite", False), ("", False), (None, False),
])
def test_is_remote(url, remote):
    assert is_remote(url) is remote


def test_default_catalogue_path(tmp_path):
    env = {"HOME": str(tmp_path)}
    assert default_catalogue_path(env) == tmp_path / ".local/share/icatdump/catalogue.sqlite"
    env["XDG_DATA_HOME"] = "relative/ignored"
    assert default_catalogue_path(env) == tmp_path / ".local/share/icatdump/catalogue.sqlite"
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    assert default_catalogue_path(env) == tmp_path / "xdg/icatdump/catalogue.sqlite"
    env["ICATDUMP_HOME"] = str(tmp_path / "ih")
    assert default_catalogue_path(env) == tmp_path / "ih/catalogue.sqlite"


def test_no_url_anywhere_leaves_url_unset(home):
    cfg = run()
    assert cfg.url is None and cfg.configfiles == [] and cfg.section is None


def test_catalogue_path_is_not_completed(home):
    assert run(url="~/cat.sqlite").url == str(home / "cat.sqlite")


# -- config files ------------------------------------------------------------

def test_search_path_is_python_icats(home):
    assert config_search_path() == [Path("/etc/icat/icat.cfg"), home / ".config/icat/icat.cfg",
                                    home / ".icat/icat.cfg", Path("icat.cfg")]


def test_search_path_files_are_merged_later_wins(home):
    user = write(home / ".config/icat/icat.cfg", ROOT)
    dot = write(home / ".icat/icat.cfg", "[root]\nauth = ldap\n")
    local = write(Path("icat.cfg"), "[root]\nurl = https://local.example.org\n")
    cfg = resolve({"configsection": "root"},
                  search_path=[home / "absent.cfg"] + config_search_path()[1:])
    assert cfg.configfiles == [user, dot, local]
    assert cfg.url == "https://local.example.org/ICATService/ICAT?wsdl"
    assert cfg.auth == "ldap"
    assert cfg.username == "root"
    assert cfg.origins["url"] == "icat.cfg [root]"
    assert cfg.origins["auth"] == "%s [root]" % dot
    assert cfg.origins["username"] == "%s [root]" % user


def test_values_only_from_the_selected_section(home):
    write(Path("icat.cfg"), ROOT + "[other]\nurl = https://other.example.org\nauth = db\n")
    assert run().url is None                      # no section, no file values
    assert run(configsection="other").url == "https://other.example.org/ICATService/ICAT?wsdl"
    cfg = run(configsection="root")
    assert (cfg.auth, cfg.username, cfg.password) == ("simple", "root", "secret%pw")
    assert cfg.idsurl == "https://file.example.org:8181/ids"


def test_default_section_applies_to_every_section(home):
    write(Path("icat.cfg"), "[DEFAULT]\nauth = db\n[a]\nurl = https://a\n[b]\nauth = ldap\n")
    assert run(configsection="a").auth == "db"
    assert run(configsection="b").auth == "ldap"


def test_section_from_environment(home, monkeypatch):
    write(Path("icat.cfg"), ROOT)
    monkeypatch.setenv("ICAT_CFG_SECTION", "root")
    assert run().username == "root"
    with pytest.raises(ConfigError, match=r"\[nope\]"):
        run(configsection="nope")                 # the command line wins


def test_missing_section_is_an_error(home):
    write(Path("icat.cfg"), ROOT)
    with pytest.raises(ConfigError) as err:
        run(configsection="roots")
    assert str(err.value) == "config section [roots] not found (icat.cfg)"


def test_missing_section_without_any_file(home):
    with pytest.raises(ConfigError, match=r"section \[root\] not found "
                                          r"\(no config file found in icat.cfg\)"):
        run(configsection="root")


def test_explicit_configfile_replaces_the_search(home, tmp_path):
    write(Path("icat.cfg"), "[root]\nurl = https://searched\nauth = ldap\n")
    mine = write(tmp_path / "mine.cfg", ROOT)
    cfg = run(configfile=str(mine), configsection="root")
    assert cfg.configfiles == [mine]
    assert cfg.url == "https://file.example.org/ICATService/ICAT?wsdl"
    assert cfg.auth == "simple"


def test_configfile_from_environment_and_precedence(home, tmp_path, monkeypatch):
    env_file = write(tmp_path / "env.cfg", "[s]\nauth = from-env-file\n")
    cmd_file = write(tmp_path / "cmd.cfg", "[s]\nauth = from-cmd-file\n")
    monkeypatch.setenv("ICAT_CFG", str(env_file))
    assert run(configsection="s").auth == "from-env-file"
    assert run(configfile=str(cmd_file), configsection="s").auth == "from-cmd-file"


def test_configfile_tilde_is_expanded(home):
    write(home / "my.cfg", ROOT)
    assert run(configfile="~/my.cfg", configsection="root").configfiles == [home / "my.cfg"]


def test_unreadable_configfile_is_an_error(home, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(configfile=str(tmp_path / "nope.cfg"))
    assert str(err.value) == "cannot read config file %s: No such file or directory" % (
        tmp_path / "nope.cfg")


def test_broken_configfile_names_the_file(home):
    write(Path("icat.cfg"), "url = no section header\n")
    with pytest.raises(ConfigError) as err:
        run()
    assert str(err.value).startswith("icat.cfg: invalid config file:")
    assert "\n" not in str(err.value)


def test_percent_signs_are_not_interpolated(home):
    write(Path("icat.cfg"), ROOT)
    assert run(configsection="root").password == "secret%pw"


# -- precedence: command line > environment > file > default -----------------

@pytest.mark.parametrize("param, envvar, key, values", [
    ("url", "ICAT_SERVICE", "url", ["https://file/x", "https://env/x", "https://cmd/x"]),
    ("idsurl", "ICAT_DATA_SERVICE", "idsurl", ["https://file/ids", "https://env/ids",
                                               "https://cmd/ids"]),
    ("auth", "ICAT_AUTH", "auth", ["file", "env", "cmd"]),
    ("user", "ICAT_USER", "username", ["file", "env", "cmd"]),
])
def test_precedence(home, monkeypatch, param, envvar, key, values):
    in_file, in_env, on_cmdline = values
    other = "" if key == "auth" else "auth = a\n"
    write(Path("icat.cfg"), "[s]\npassword = pw\n%s%s = %s\n" % (other, key, in_file))
    field = key
    assert getattr(run(configsection="s"), field) == in_file
    assert getattr(run(), field) is None                          # the default
    monkeypatch.setenv(envvar, in_env)
    cfg = run(configsection="s")
    assert getattr(cfg, field) == in_env
    assert cfg.origins[field] == "environment " + envvar
    cfg = run(configsection="s", password="pw", **{param: on_cmdline})
    assert getattr(cfg, field) == on_cmdline
    assert cfg.origins[field] == "command line"


def test_password_has_no_environment_variable(home, monkeypatch):
    monkeypatch.setenv("ICAT_PASSWORD", "nope")
    monkeypatch.setenv("ICAT_PASS", "nope")
    assert run(url="x.sqlite").password is None


def test_check_certificate(home, tmp_path):
    assert run().check_cert is True
    write(Path("icat.cfg"), "[s]\ncheckCert = No\n[t]\ncheckcert = maybe\n")
    assert run(configsection="s").check_cert is False
    assert run(configsection="s", check_cert=True).check_cert is True
    assert run(check_cert=False).check_cert is False
    with pytest.raises(ConfigError) as err:
        run(configsection="t")
    assert str(err.value) == "checkCert: invalid boolean value 'maybe' (icat.cfg [t])"


def test_cacert(home, tmp_path):
    ca = write(tmp_path / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    write(Path("icat.cfg"), "[s]\ncacert = %s\n[t]\ncacert = /no/such/ca.pem\n" % ca)
    assert run().cacert is None
    assert run(configsection="s").cacert == str(ca)
    with pytest.raises(ConfigError, match=r"^cacert: no such file /no/such/ca.pem "
                                          r"\(icat.cfg \[t\]\)$"):
        run(configsection="t")
    with pytest.raises(ConfigError, match=r"\(command line\)"):
        run(cacert=str(tmp_path / "nope.pem"))


def test_proxies(home, monkeypatch):
    env = dict(os.environ)
    cfg = resolve({}, env, search_path=[])
    assert cfg.proxies == {} and cfg.no_proxy is None
    env["http_proxy"] = "http://envproxy:3128"
    write(Path("icat.cfg"), "[s]\nhttps_proxy = http://fileproxy:3128\nno_proxy = .local\n")
    cfg = resolve({"configsection": "s", "no_proxy": "localhost,.example.org"}, env,
                  search_path=[Path("icat.cfg")])
    assert cfg.proxies == {"http": "http://envproxy:3128", "https": "http://fileproxy:3128"}
    assert cfg.no_proxy == "localhost,.example.org"
    # exported for urllib, which reads no_proxy only from the environment
    assert env["https_proxy"] == "http://fileproxy:3128"
    assert env["no_proxy"] == "localhost,.example.org"
    cfg = resolve({"http_proxy": "http://cmd:1"}, {}, search_path=[], export_proxy_env=False)
    assert cfg.proxies == {"http": "http://cmd:1"}


def test_remote_url_needs_an_authenticator(home):
    with pytest.raises(ConfigError, match="no authenticator for https://h/ICATService"):
        run(url="https://h")
    assert resolve({"url": "https://h"}, search_path=[], need_login=False).auth is None
    assert run(url="local.sqlite").auth is None


# -- credentials ---------------------------------------------------------------

def test_credentials(home):
    write(Path("icat.cfg"), ROOT + "cred_token = file-token\ncred_otp = 123\n")
    cfg = run(configsection="root", password="pw", cred=(("token", "cmd-token"), ("realm", "x")))
    assert cfg.credentials == {"username": "root", "password": "pw",
                               "token": "cmd-token", "otp": "123", "realm": "x"}
    assert cfg.origins["cred_token"] == "command line"
    assert cfg.origins["cred_otp"] == "icat.cfg [root]"


@pytest.mark.parametrize("key, hint", [("password", "-p/--pass"), ("username", "-u/--user")])
def test_cred_username_password_point_to_the_real_options(home, key, hint):
    with pytest.raises(ConfigError, match="^--cred_%s: use %s" % (key, hint)):
        run(url="x.sqlite", cred=((key, "v"),))


def test_repr_hides_secrets(home):
    write(Path("icat.cfg"), ROOT + "cred_token = tok-SECRET\n"
          "https_proxy = http://pxuser:px-SECRET@proxy:3128\n")
    cfg = run(configsection="root")
    assert cfg.password == "secret%pw"
    for text in (repr(cfg), str(cfg), "%s" % cfg):
        assert "secret%pw" not in text and "SECRET" not in text
        assert "'username': 'root'" in text and "password='***'" in text
        assert "http://pxuser:***@proxy:3128" in text


# -- password prompting --------------------------------------------------------

def prompts(monkeypatch, answer="typed"):
    """Someone at a terminal answers ``answer``."""
    asked = []

    def fake(prompt=""):
        asked.append(prompt)
        return answer
    monkeypatch.setattr(getpass, "getpass", fake)
    monkeypatch.setattr(config, "_terminal_available", lambda: True)
    return asked


def test_prompt_pass_overrides_configured_password(home, monkeypatch):
    write(Path("icat.cfg"), ROOT)
    asked = prompts(monkeypatch)
    cfg = run(configsection="root", prompt_pass=True, password="cmd")
    assert asked == ["Password: "]
    assert cfg.password == "typed" and cfg.credentials["password"] == "typed"
    assert cfg.origins["password"] == "prompt"


def test_prompt_pass_in_config_file(home, monkeypatch):
    write(Path("icat.cfg"), ROOT + "promptPass = yes\n")
    asked = prompts(monkeypatch)
    assert run(configsection="root").password == "typed" and asked


def test_password_from_file_without_prompt(home):
    write(Path("icat.cfg"), ROOT)
    assert run(configsection="root").password == "secret%pw"      # _no_prompt not called


def test_user_on_command_line_ignores_file_password(home, monkeypatch):
    write(Path("icat.cfg"), ROOT)
    assert run(configsection="root", user="jdoe", password="pw").password == "pw"
    with pytest.raises(ConfigError, match="no password for user 'jdoe' and no terminal"):
        run(configsection="root", user="jdoe")
    monkeypatch.setattr(config, "_terminal_available", lambda: True)
    asked = prompts(monkeypatch)
    cfg = run(configsection="root", user="jdoe")
    assert asked and cfg.password == "typed"
    assert cfg.credentials == {"username": "jdoe", "password": "typed"}


def test_user_without_password_prompts_only_on_a_terminal(home, monkeypatch):
    write(Path("icat.cfg"), "[s]\nurl = https://h\nauth = db\nusername = jdoe\n")
    assert run(configsection="s").password is None
    monkeypatch.setattr(config, "_terminal_available", lambda: True)
    asked = prompts(monkeypatch)
    assert run(configsection="s").password == "typed" and asked
    # no prompt for the embedded catalogue or without a user
    assert run(url="x.sqlite", user="jdoe").password is None
    assert run(url="https://h", auth="anon").password is None
    assert len(asked) == 1


# -- the click options, end to end -------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.option("-o", "--outputfile", default="-")
def tiny(outputfile, **params):
    """A command like icatdump, printing what it resolved."""
    try:
        cfg = resolve(params, search_path=[Path("icat.cfg")])
    except ConfigError as exc:
        click.echo("error: %s" % exc, err=True)
        raise SystemExit(2)
    click.echo("output=%s" % outputfile)
    click.echo(repr(cfg))
    click.echo("password-ok=%s" % (cfg.password == "s3cret"))


def test_cli_end_to_end(home, tmp_path):
    write(Path("icat.cfg"), ROOT)
    result = CliRunner().invoke(tiny, [
        "-s", "root", "-w", "https://cli.example.org", "-a", "ldap", "-u", "jdoe",
        "-p", "s3cret", "--cred_token", "tok", "--cred_realm=a=b", "-o", "out.yaml",
        "--no-check-certificate", "--https-proxy", "http://p:1", "--no-proxy", "h1,h2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "output=out.yaml" in out
    assert "url='https://cli.example.org/ICATService/ICAT?wsdl'" in out
    assert "auth='ldap'" in out and "username='jdoe'" in out
    assert "'token': '***'" in out and "'realm': '***'" in out
    assert "check_cert=False" in out and "proxies={'https': 'http://p:1'}" in out
    assert "password-ok=True" in out and "s3cret" not in out


def test_cli_credential_values_arrive(home):
    seen = {}

    @click.command()
    @connection_options
    def cmd(**params):
        seen.update(resolve(params, search_path=[]).credentials)
    result = CliRunner().invoke(cmd, ["-w", "c.sqlite", "--cred_a", "1", "--cred_b=x=y",
                                      "--cred_a", "2", "--cred_c", "--not-an-option"])
    assert result.exit_code == 0, result.output
    assert seen == {"a": "2", "b": "x=y", "c": "--not-an-option"}     # last one wins
    # an option value that starts with --cred_ must be attached with '='
    seen.clear()
    result = CliRunner().invoke(cmd, ["-w", "c.sqlite", "--pass=--cred_c", "--cred_a", "1"])
    assert result.exit_code == 0, result.output
    assert seen == {"a": "1", "password": "--cred_c"}


def test_cli_help_documents_the_options(home):
    out = CliRunner().invoke(tiny, ["--help"]).output
    for text in ("-c, --configfile FILE", "-s, --configsection SECTION", "-w, --url URL",
                 "--idsurl URL", "--no-check-certificate", "--cacert FILE", "--http-proxy URL",
                 "--https-proxy URL", "--no-proxy HOSTS", "-a, --auth AUTH",
                 "-u, --user USERNAME", "-p, --pass PASSWORD", "-P, --prompt-pass",
                 "--cred_<key> VALUE", "ICAT_CFG", "ICAT_SERVICE", "ICAT_USER"):
        assert text in out


@pytest.mark.parametrize("args, message", [
    (["--cred_token"], "Option '--cred_token' requires a value."),
    (["--cred_=x"], "Option '--cred_=x' needs a key"),
])
def test_cli_bad_cred_options(home, args, message):
    result = CliRunner().invoke(tiny, args)
    assert result.exit_code == 2 and message in result.output


def test_cli_double_dash_ends_the_options(home):
    result = CliRunner().invoke(tiny, ["--", "--cred_x"])
    assert result.exit_code == 2 and "unexpected extra argument (--cred_x)" in result.output


def test_cli_config_error_exits_2(home):
    result = CliRunner().invoke(tiny, ["-s", "missing"])
    assert result.exit_code == 2
    assert "config section [missing] not found" in result.output


def test_cli_prompt_pass(home, monkeypatch):
    write(Path("icat.cfg"), ROOT)
    asked = prompts(monkeypatch, answer="s3cret")
    result = CliRunner().invoke(tiny, ["-s", "root", "-P"])
    assert result.exit_code == 0, result.output
    assert asked == ["Password: "] and "password-ok=True" in result.output
