"""Connection configuration, compatible with python-icat's conventions.

Users of python-icat already have ``icat.cfg`` files, ``ICAT_*`` environment
variables and muscle memory for ``-w``/``-a``/``-u``/``-s``.  This module
reads exactly those, so the same section works for python-icat's scripts and
for ours:

* **Sources**, first found wins: command line, environment, the selected
  section of the config file(s), default.
* **Config files**: with ``-c``/``ICAT_CFG`` only that file, and it must be
  readable.  Otherwise every existing file of :func:`config_search_path` is
  read, in order, later ones overriding single options of earlier ones.
* **Section**: values come from the file only if a section is selected with
  ``-s``/``ICAT_CFG_SECTION``; a selected section that no file has is an
  error.  ``[DEFAULT]`` entries apply to every section (configparser).
* **File keys** are python-icat's variable names: ``url``, ``idsurl``,
  ``auth``, ``username``, ``password``, ``cred_<key>``, ``promptPass``,
  ``checkCert``, ``http_proxy``, ``https_proxy``, ``no_proxy``; plus our own
  ``cacert`` (python-icat has no CA file setting; it ignores unknown keys,
  so a shared section stays valid), ``timeout`` and ``maxReplySize``.  Keys are case-insensitive.

What we cannot copy: python-icat asks the server which credentials the
chosen authenticator wants before it resolves them.  We resolve without a
server, so ``username`` and ``password`` are the credentials (``password``
the only hidden one, as python-icat assumes for servers that cannot tell)
plus whatever ``--cred_<key>``/``cred_<key>`` values are given.
"""

from __future__ import annotations

import configparser
import dataclasses
import getpass
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping

import click

from .errors import ConfigError

__all__ = ["ConfigError", "Config", "connection_options", "resolve", "complete_url",
           "is_remote", "default_catalogue_path", "config_search_path", "WSDL_PATH",
           "IDS_PATH"]

WSDL_PATH = "/ICATService/ICAT?wsdl"
#: Seconds one server request may take, from connecting to the last byte of
#: the reply (``--timeout``, config key ``timeout``).  ICAT answers a search
#: of maxEntities (10000) objects in seconds; a minute leaves room for a
#: loaded server without letting a hung one stall a dump for long.
DEFAULT_TIMEOUT = 60.0
#: The largest server reply read, in MiB after decompression
#: (``--max-reply-size``, config key ``maxReplySize``).  ICAT caps a search at
#: maxEntities (10000) objects, includes counted: tens of MiB at most.
DEFAULT_MAX_REPLY_MB = 256
IDS_PATH = "/ids"
CFG_NAME = "icat.cfg"


# -- URLs ---------------------------------------------------------------------

def is_remote(url: str | None) -> bool:
    """True for an http(s) URL (an ICAT server spoken to over SOAP).

    Anything else is taken as the path of an embedded SQLite catalogue, so a
    plain file name never has to be dressed up as a URL.
    """
    if not url:
        return False
    return urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")


def complete_url(url: str | None, default_path: str = WSDL_PATH) -> str | None:
    """Add the service path to an http(s) URL that has neither path nor query.

    Users (and python-icat's docs) write ``https://icat.example.org:8181``;
    the WSDL lives at ``/ICATService/ICAT?wsdl`` below that.  As in
    python-icat, a URL with any path at all, even ``/``, is left alone, and so
    is everything that is not http(s) (a catalogue path).  For an IDS URL pass
    ``default_path=IDS_PATH``.
    """
    if not is_remote(url):
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.path or parts.query:
        return url
    return "%s://%s%s" % (parts.scheme, parts.netloc, default_path)


def default_catalogue_path(env: Mapping[str, str] = os.environ) -> Path:
    """Where the embedded catalogue lives when no URL is configured anywhere.

    ``$ICATDUMP_HOME/catalogue.sqlite`` if ``ICATDUMP_HOME`` is set (one knob
    to point every command at another catalogue), otherwise
    ``$XDG_DATA_HOME/icatdump/catalogue.sqlite``, with ``XDG_DATA_HOME``
    defaulting to ``~/.local/share`` as the XDG base directory spec says
    (which also says to ignore it when it is not an absolute path).
    """
    home = env.get("ICATDUMP_HOME")
    if home:
        return Path(home).expanduser() / "catalogue.sqlite"
    xdg = env.get("XDG_DATA_HOME")
    data = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "share"
    return data / "icatdump" / "catalogue.sqlite"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def config_search_path(env: Mapping[str, str] = os.environ) -> list[Path]:
    """python-icat's config files, in reading order (later ones win).

    System-wide first, then per user, then the current directory, so the
    most specific file overrides single options of the more general ones.
    """
    if sys.platform.startswith("win"):
        dirs = [Path(env.get(v, "")) / "ICAT" for v in ("ProgramData", "AppData", "LocalAppData")]
    else:
        home = _home(env)
        dirs = [Path("/etc/icat"), home / ".config" / "icat", home / ".icat"]
    return [d / CFG_NAME for d in dirs] + [Path(CFG_NAME)]


# -- the resolved configuration ----------------------------------------------

@dataclasses.dataclass(repr=False)
class Config:
    """The resolved connection settings.

    ``url`` is None when nothing configured one (the commands then use
    :func:`default_catalogue_path`); an http(s) ``url`` or ``idsurl`` is
    already completed by :func:`complete_url` (``/ids`` for the IDS, as
    python-icat's client does).  ``credentials`` is what ``login`` gets: username,
    password and every ``cred_<key>``.  ``proxies`` maps ``http``/``https`` to
    a proxy URL, the form urllib's ``ProxyHandler`` and python-icat take; an
    empty dict means no proxy.  ``origins`` says where each value came from,
    for messages.  The repr hides secrets, so a Config can be logged.
    """
    url: str | None = None
    idsurl: str | None = None
    auth: str | None = None
    username: str | None = None
    password: str | None = None
    credentials: dict[str, str] = dataclasses.field(default_factory=dict)
    check_cert: bool = True
    cacert: str | None = None
    proxies: dict[str, str] = dataclasses.field(default_factory=dict)
    no_proxy: str | None = None
    timeout: float | None = None
    max_reply_mb: int | None = None
    configfiles: list[Path] = dataclasses.field(default_factory=list)
    section: str | None = None
    origins: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The command's own :class:`Setting` values, by name.
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __repr__(self):
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "password" and value is not None:
                value = "***"
            elif f.name == "credentials":
                value = {k: (v if k == "username" else "***") for k, v in value.items()}
            elif f.name == "proxies":
                value = {k: _hide_userinfo(v) for k, v in value.items()}
            shown.append("%s=%r" % (f.name, value))
        return "Config(%s)" % ", ".join(shown)

    __str__ = __repr__


def _hide_userinfo(url: str) -> str:
    """A proxy URL may carry ``user:secret@``; keep the secret out of logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = "%s:***@%s" % (parts.username, parts.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -- reading config files ----------------------------------------------------

class _Files:
    """The merged content of the config files, remembering who said what."""

    def __init__(self):
        self.merged = configparser.RawConfigParser()   # no %-interpolation in passwords
        self.each: list[tuple[Path, configparser.RawConfigParser]] = []

    def add(self, path: Path, text: str):
        alone = configparser.RawConfigParser()
        try:
            alone.read_string(text, source=str(path))
            self.merged.read_string(text, source=str(path))
        except configparser.Error as exc:
            raise ConfigError("%s: invalid config file: %s"
                              % (path, " ".join(str(exc).split()))) from None
        self.each.append((path, alone))

    def where(self, section: str, option: str) -> str:
        """The file a merged value came from (the last one defining it)."""
        for path, parser in reversed(self.each):
            if option in (parser[section] if parser.has_section(section) else parser.defaults()):
                return "%s [%s]" % (path, section)
        return "[%s]" % section


def _read_file(path: Path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _load_files(configfile: str | None, search: list[Path]) -> _Files:
    files = _Files()
    if configfile is not None:
        path = Path(configfile).expanduser()
        try:
            files.add(path, _read_file(path))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise ConfigError("cannot read config file %s: %s" % (path, reason)) from None
        return files
    for path in search:
        try:
            text = _read_file(path)
        except OSError:
            continue        # absent or unreadable search-path files are skipped, as in python-icat
        except UnicodeDecodeError:
            raise ConfigError("cannot read config file %s: not UTF-8" % path) from None
        files.add(path, text)
    return files


# -- resolving ---------------------------------------------------------------

_TRUE = {"1", "yes", "y", "true", "t", "on"}
_FALSE = {"0", "no", "n", "false", "f", "off"}


def _boolean(name: str, value, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError("%s: invalid boolean value %r (%s)" % (name, value, origin))


@dataclasses.dataclass(frozen=True)
class Setting:
    """A command's own setting, as python-icat's scripts add them with
    ``config.add_variable``: the command line first, then the key ``name`` of
    the selected config section (these have no environment variable), then
    ``default``.  ``convert`` turns a value (text from a file, or what click
    parsed) into the setting; it raises ValueError for a bad one.
    """
    name: str
    param: str
    default: Any = None
    convert: Callable[[Any], Any] | None = None


def boolean_setting(value) -> bool:
    """A flag's value: click gives a bool, a config file ``yes``/``no``..."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError("not a boolean: %r" % value)


def positive_number(value) -> float:
    """A finite number above zero (seconds, for ``timeout``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if not 0 < number < float("inf"):
        raise ValueError("not a positive number: %r" % (value,))
    return number


def positive_whole_number(value) -> int:
    """A whole number above zero (MiB, for ``maxReplySize``)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ValueError("not a positive whole number: %r" % (value,))
    return number


def path_setting(value) -> str:
    """A file name with ``~`` expanded, as python-icat does; ``-`` stays."""
    return value if value == "-" else os.path.expanduser(value)


class _Lookup:
    """First-found-wins over command line, environment, file section."""

    def __init__(self, params, env, files, section):
        self.params, self.env, self.files, self.section = params, env, files, section
        self.origins: dict[str, str] = {}

    def get(self, name, param=None, envvar=None, key=None, sources=("cmd", "env", "file")):
        if "cmd" in sources and param and self.params.get(param) is not None:
            return self._found(name, self.params[param], "command line")
        if "env" in sources and envvar and self.env.get(envvar) is not None:
            return self._found(name, self.env[envvar], "environment %s" % envvar)
        if "file" in sources and key and self.section:
            value = self.files.merged.get(self.section, key, fallback=None)
            if value is not None:
                return self._found(name, value, self.files.where(self.section, key.lower()))
        return None

    def _found(self, name, value, origin):
        self.origins[name] = origin
        return value


def resolve(params: Mapping, env: MutableMapping[str, str] = os.environ, *,
            search_path: list[Path] | None = None, need_login: bool = True,
            export_proxy_env: bool = True, settings: tuple = ()) -> Config:
    """Resolve the options of :func:`connection_options` into a :class:`Config`.

    ``params`` are the command's click parameters (other keys are ignored);
    ``env`` the environment.  ``search_path`` overrides
    :func:`config_search_path` (for tests).  With ``need_login``, a remote
    URL without an authenticator is an error, as python-icat makes ``auth``
    mandatory.  With ``export_proxy_env``, configured proxies are also put
    into ``env`` as ``http_proxy``/``https_proxy``/``no_proxy``, as python-icat
    does: urllib reads the ``no_proxy`` exclusions only from there.

    The password is prompted for (via :func:`getpass.getpass`) when
    ``-P``/``promptPass`` is set, or for a remote URL with a username but no
    password when a terminal is available.  python-icat would also try to
    read it from standard input; we don't, because icatingest reads its data
    from there.  As in python-icat, a username or ``--cred_<key>`` given on
    the command line makes the config file's password not apply.
    """
    configfile = params.get("configfile")
    if configfile is None:
        configfile = env.get("ICAT_CFG")
    search = config_search_path(env) if search_path is None else list(search_path)
    files = _load_files(configfile, search)

    section = params.get("configsection")
    if section is None:
        section = env.get("ICAT_CFG_SECTION")
    if section and not files.merged.has_section(section):
        where = (", ".join(str(p) for p, _ in files.each) if files.each
                 else "no config file found in " + ", ".join(str(p) for p in search))
        raise ConfigError("config section [%s] not found (%s)" % (section, where))

    look = _Lookup(params, env, files, section or None)
    cfg = Config(configfiles=[p for p, _ in files.each], section=section or None,
                 origins=look.origins)

    url = look.get("url", "url", "ICAT_SERVICE", "url")
    if url and not is_remote(url):
        url = str(Path(url).expanduser())
    cfg.url = complete_url(url) or None
    cfg.idsurl = complete_url(look.get("idsurl", "idsurl", "ICAT_DATA_SERVICE", "idsurl"),
                              IDS_PATH) or None

    check = look.get("check_cert", "check_cert", None, "checkCert")
    if check is not None:
        cfg.check_cert = _boolean("checkCert", check, look.origins["check_cert"])
    cacert = look.get("cacert", "cacert", None, "cacert")
    if cacert:
        cacert = str(Path(cacert).expanduser())
        if not os.path.isfile(cacert):
            raise ConfigError("cacert: no such file %s (%s)" % (cacert, look.origins["cacert"]))
        cfg.cacert = cacert

    for scheme in ("http", "https"):
        proxy = look.get(scheme + "_proxy", scheme + "_proxy", scheme + "_proxy", scheme + "_proxy")
        if proxy:
            cfg.proxies[scheme] = proxy
    cfg.no_proxy = look.get("no_proxy", "no_proxy", "no_proxy", "no_proxy") or None
    if export_proxy_env:
        for var, value in (("http_proxy", cfg.proxies.get("http")),
                           ("https_proxy", cfg.proxies.get("https")), ("no_proxy", cfg.no_proxy)):
            if value:
                env[var] = value

    cfg.timeout = _setting(Setting("timeout", "timeout", None, positive_number), look)
    cfg.max_reply_mb = _setting(Setting("maxReplySize", "max_reply_size", None,
                                        positive_whole_number), look)

    cfg.auth = look.get("auth", "auth", "ICAT_AUTH", "auth") or None
    if need_login and is_remote(cfg.url) and not cfg.auth:
        raise ConfigError("no authenticator for %s: give -a/--auth, ICAT_AUTH or 'auth' "
                          "in the config section" % cfg.url)
    cfg.username = look.get("username", "user", "ICAT_USER", "username")

    cfg.credentials = _credentials(params, files, section, look)
    _resolve_password(cfg, params, look)
    if cfg.username is not None:
        cfg.credentials["username"] = cfg.username
    if cfg.password is not None:
        cfg.credentials["password"] = cfg.password
    for setting in settings:
        cfg.settings[setting.name] = _setting(setting, look)
    return cfg


def _setting(setting: Setting, look: _Lookup):
    value = look.get(setting.name, setting.param, None, setting.name)
    if value is None:
        return setting.default
    if setting.convert is None:
        return value
    try:
        return setting.convert(value)
    except ValueError as exc:
        raise ConfigError("%s: %s (%s)" % (setting.name, exc, look.origins[setting.name])) \
            from None


def _credentials(params, files, section, look) -> dict[str, str]:
    """``cred_<key>`` values: command line over the file (no environment)."""
    creds = {}
    if section:
        for option, value in files.merged.items(section):
            if option.startswith("cred_") and len(option) > 5:
                creds[option[5:]] = value
                look.origins["cred_" + option[5:]] = files.where(section, option)
    for key, value in params.get("cred") or ():
        if not key:
            raise ConfigError("--cred_: a credential key is missing (write --cred_<key> VALUE)")
        if key in ("username", "password"):
            raise ConfigError("--cred_%s: use %s" % (key, "-u/--user" if key == "username"
                                                     else "-p/--pass or -P/--prompt-pass"))
        creds[key] = value
        look.origins["cred_" + key] = "command line"
    return creds


def _resolve_password(cfg: Config, params, look: _Lookup):
    """The one hidden credential, with python-icat's prompting rules."""
    prompt = look.get("prompt_pass", "prompt_pass", None, "promptPass")
    if prompt is not None and _boolean("promptPass", prompt, look.origins["prompt_pass"]):
        cfg.password = _prompt(look)
        return
    named_on_cmdline = prompt is None and (params.get("user") is not None
                                           or bool(params.get("cred")))
    # A user named on the command line is probably not the one whose password
    # sits in the config file, so (like python-icat) only -p counts then.
    sources = ("cmd",) if named_on_cmdline else ("cmd", "file")
    cfg.password = look.get("password", "password", None, "password", sources=sources)
    if cfg.password is None and is_remote(cfg.url) and cfg.username is not None:
        if _terminal_available():
            cfg.password = _prompt(look)
        elif named_on_cmdline:
            raise ConfigError("no password for user %r and no terminal to ask: give -p/--pass "
                              "(the config file's password does not apply to a user given "
                              "on the command line)" % cfg.username)


def _prompt(look: _Lookup) -> str:
    """Ask on the terminal, never on standard input: that may be the data
    (``cat d.yaml | icatingest -P -i -``)."""
    if not _terminal_available():
        raise ConfigError("no terminal to ask for the password on (-P/promptPass): "
                          "give -p/--pass or a password in the config section")
    look.origins["password"] = "prompt"
    return getpass.getpass("Password: ")


def _terminal_available() -> bool:
    """Whether getpass can ask someone (it reads /dev/tty, not stdin)."""
    if os.name != "posix":
        return sys.stdin is not None and sys.stdin.isatty()
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


# -- click options ------------------------------------------------------------

class _CredentialOption(click.Option):
    """``--cred_<key> VALUE`` for any key, as python-icat offers.

    click only knows options declared in advance, and the keys are up to the
    server's authenticator.  So this option is registered as ``--cred_`` with
    two values, and just before click parses, each ``--cred_<key>`` token is
    split into ``--cred_ <key>`` (``--cred_<key>=VALUE`` into three tokens).
    Everything else, such as the value following or ``--`` ending the
    options, is left to click.  Limitation: a value of another option that
    starts with ``--cred_`` must be attached with ``=`` (``--pass=--cred_x``).
    """

    PREFIX = "--cred_"

    def __init__(self, param_decls=None, **attrs):
        super().__init__([self.PREFIX, "cred"], nargs=2, multiple=True, **attrs)

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        parse = parser.parse_args

        def parse_args(args):
            return parse(self._split(args, ctx))
        parser.parse_args = parse_args

    @classmethod
    def _split(cls, args, ctx=None):
        args = list(args)
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                return out + args[i:]
            if arg.startswith(cls.PREFIX) and arg != cls.PREFIX:
                key, eq, value = arg[len(cls.PREFIX):].partition("=")
                if not key:
                    raise click.BadOptionUsage(arg, "Option %r needs a key: --cred_<key> "
                                               "VALUE." % arg, ctx)
                if not eq and i + 1 == len(args):
                    raise click.BadOptionUsage(arg, "Option %r requires a value." % arg, ctx)
                out += [cls.PREFIX, key] + ([value] if eq else [])
            else:
                out.append(arg)
        return out

    def get_help_record(self, ctx):
        return ("--cred_<key> VALUE",
                "Credential <key> for the authenticator (e.g. --cred_token T); repeatable. "
                "Config key: cred_<key>.")


def connection_options(f):
    """Add python-icat's connection options to a click command.

    Each option only collects what the user typed (None when absent), so
    :func:`resolve` can apply environment, config file and default in
    python-icat's order; that is why no option has a click default or envvar.
    """
    options = [
        click.option("-c", "--configfile", metavar="FILE", type=click.Path(),
                     help="Config file, instead of searching the default ones. [env: ICAT_CFG]"),
        click.option("-s", "--configsection", metavar="SECTION",
                     help="Section of the config file to take values from. "
                          "[env: ICAT_CFG_SECTION]"),
        click.option("-w", "--url", metavar="URL", type=click.Path(),
                     help="ICAT service URL (" + WSDL_PATH + " is added to a bare "
                          "http(s)://host:port), or the path of an embedded catalogue; "
                          "default: the default catalogue. [env: ICAT_SERVICE]"),
        click.option("--idsurl", metavar="URL",
                     help="ICAT Data Service URL. [env: ICAT_DATA_SERVICE]"),
        click.option("--check-certificate/--no-check-certificate", "check_cert", default=None,
                     help="Verify the server's TLS certificate (the default). "
                          "Config key: checkCert."),
        click.option("--cacert", metavar="FILE",
                     help="File of trusted CA certificates for the server's TLS "
                          "certificate (default: the system's). Config key: cacert."),
        click.option("--http-proxy", metavar="URL",
                     help="Proxy for http requests. [env: http_proxy]"),
        click.option("--https-proxy", metavar="URL",
                     help="Proxy for https requests. [env: https_proxy]"),
        click.option("--no-proxy", metavar="HOSTS",
                     help="Comma separated hosts to reach without proxy. [env: no_proxy]"),
        click.option("--timeout", type=float, metavar="SECONDS",
                     help="Give up on a server request not answered completely within "
                          "this time (default: %g). Config key: timeout." % DEFAULT_TIMEOUT),
        click.option("--max-reply-size", "max_reply_size", type=int, metavar="MIB",
                     help="Refuse server replies larger than this (default: %d). "
                          "Config key: maxReplySize." % DEFAULT_MAX_REPLY_MB),
        click.option("-a", "--auth", metavar="AUTH",
                     help="Authentication plugin to log in with. [env: ICAT_AUTH]"),
        click.option("-u", "--user", metavar="USERNAME",
                     help="ICAT user name. [env: ICAT_USER]"),
        click.option("-p", "--pass", "password", metavar="PASSWORD",
                     help="Password; prompted for if a user is given without one."),
        click.option("-P", "--prompt-pass", is_flag=True, default=None,
                     help="Prompt for the password, even if one is configured."),
        click.option(cls=_CredentialOption),
    ]
    for option in reversed(options):
        f = option(f)
    return f
