"""What the commands share: opening a catalogue and input files, errors.

Exit codes, the same for every command (defined in :mod:`icatdump.errors`):
0 success, 1 a data problem (bad file, duplicate, validation),
2 a usage or configuration problem, 3 a connection or server problem,
4 an internal error (a bug; its traceback goes to a log file).
"""

from __future__ import annotations

import datetime
import functools
import os
import sys
import tempfile
import traceback

import click

from .. import __version__
from ..errors import (EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, UsageProblem,
                      classify, one_line)
from ..inputs import FormatMismatch
from ..registry import BackendOrigins, Backends, discover_backends
from ..registry import open_input as open_data


def fail(message: str, code: int, hint: str | None = None):
    click.echo("%s: error: %s" % (_prog(), message), err=True)
    if hint:
        click.echo("%s: %s" % (_prog(), hint), err=True)
    sys.exit(code)


#: Command names of the modules, for ``python -m icatdump.cli.ingest``.
_MODULE_COMMANDS = {"ingest.py": "icatingest", "dump.py": "icatdump", "data.py": "icatdata"}


def _prog():
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "icatdump"
    return _MODULE_COMMANDS.get(name, name)


def handle_errors(func):
    """Turn every failure into one line on stderr and an exit code.

    ``--debug`` (or ICATDUMP_DEBUG=1) shows the traceback as well; so does
    ``-v`` for an internal error, whose traceback always goes to a log file.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.pop("debug", False) or os.environ.get("ICATDUMP_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            if debug:
                traceback.print_exc()
            fail("interrupted", EXIT_INTERRUPTED, getattr(exc, "hint", None))
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, but not with
            # success, as a process killed by SIGPIPE does not; stdout goes
            # to /dev/null so that Python's final flush does not complain.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            code, message = classify(exc)
            if code == EXIT_INTERNAL:
                if kwargs.get("verbose") and not debug:
                    traceback.print_exc()
                fail(_internal_error(exc, message), code)
            # ``hint``: what to do next, e.g. how to resume an ingest.
            fail(message, code, getattr(exc, "hint", None))
    return wrapper


def _internal_error(exc: BaseException, message: str) -> str:
    """The line for an exception nobody expected; its traceback goes to a
    log file (under $ICATDUMP_HOME if set, else the temp directory) which
    the line names, since it is a bug to report."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        home = os.environ.get("ICATDUMP_HOME")
        folder = os.path.join(os.path.expanduser(home), "log") if home else tempfile.gettempdir()
        os.makedirs(folder, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="icatdump-error-", suffix=".log", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            # The command's name only: its arguments may hold a password.
            log.write("%s %s %s\n%s" % (datetime.datetime.now().isoformat(timespec="seconds"),
                                        _prog(), __version__, text))
    except OSError as log_exc:
        sys.stderr.write(text)
        return ("internal error (a bug, please report it): %s; the traceback above "
                "(no log file: %s)" % (message, one_line(log_exc)))
    return ("internal error (a bug, please report it): %s; traceback in %s"
            % (message, path))


def debug_option(f):
    return click.option("--debug", is_flag=True, hidden=False,
                        help="Show a traceback on errors.")(f)


def quiet_option(f):
    return click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")(f)


def list_formats(ctx, param, value):
    """``--list-formats``: every known format and where it comes from."""
    if not value or ctx.resilient_parsing:
        return
    discover_backends()
    for name in sorted(Backends):
        click.echo("%-8s %s" % (name, BackendOrigins.get(name, "")))
    ctx.exit(0)


def list_formats_option(f):
    return click.option("--list-formats", is_flag=True, expose_value=False, is_eager=True,
                        callback=list_formats, help="List the data file formats and exit.")(f)


def format_names() -> list[str]:
    discover_backends()
    return sorted(Backends)


def format_setting(value: str) -> str:
    """A format name from the command line or a config file, upper case."""
    name = str(value).upper()
    if name not in format_names():
        raise ValueError("unknown format %r (known: %s)" % (value, ", ".join(format_names())))
    return name


# -- opening a catalogue -----------------------------------------------------

def open_client(cfg, create_default=True):
    """The client for a resolved configuration: SOAP for http(s) URLs,
    the embedded catalogue for anything else (a path)."""
    from .. import config as config_mod
    url = cfg.url
    if url and config_mod.is_remote(url):
        from ..soap.client import SoapClient
        client = SoapClient(config_mod.complete_url(url), cfg)
        client.login(cfg.auth, cfg.credentials)
        return client
    from ..store import EmbeddedClient, init_catalogue
    path = url
    if not path:
        path = str(config_mod.default_catalogue_path())
        if not os.path.exists(path):
            if not create_default:
                raise UsageProblem("no catalogue configured and none at %s" % path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            init_catalogue(path)
            click.echo("%s: created the default catalogue %s" % (_prog(), path), err=True)
    elif not os.path.exists(path):
        raise UsageProblem("no catalogue at %s (create one with: icatdata init %s)" % (path, path))
    return EmbeddedClient(path)


# -- reading input -----------------------------------------------------------

def open_input(path: str, fmt: str | None):
    """Open an input file (or ``-``): an :class:`~icatdump.inputs.DataInput`.

    The library sniffs compression and format (:func:`icatdump.registry.open_input`);
    a format given with ``-f`` that the content contradicts is a usage
    problem here.
    """
    try:
        return open_data(path, fmt)
    except FormatMismatch as exc:
        raise UsageProblem("%s: -f %s given, but the file looks like %s"
                           % (exc.name, exc.given, exc.sniffed)) from None
