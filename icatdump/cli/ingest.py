"""``icatingest``: create the objects of a data file in an ICAT catalogue."""

from __future__ import annotations

import contextlib
import signal
import threading

import click

from .. import __version__
from ..config import Setting, boolean_setting, connection_options, path_setting, resolve
from ..ingest import DUPLICATE_MODES, Ingester
from ..store import EmbeddedClient
from ..store.lock import WriteLock
from ..upload import open_uploader
from .common import (UsageProblem, debug_option, format_names, format_setting, handle_errors,
                     list_formats_option, open_client, open_input, quiet_option)
from .progress import Progress, per_type_lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.option("-i", "--inputfile", type=click.Path(allow_dash=True),
              help="Input file; '-' for standard input (the default).  Config key: file.")
@click.option("-f", "--format", "fmt", type=click.Choice(format_names(), case_sensitive=False),
              help="Data file format (default: detected from the content).  "
                   "Config key: format.")
@click.option("--duplicate", type=click.Choice(DUPLICATE_MODES, case_sensitive=False),
              help="What to do with objects that exist already: THROW (the default), "
                   "IGNORE, CHECK or OVERWRITE; the last three make an interrupted ingest "
                   "safe to run again.  Config key: duplicate.")
@click.option("--upload-datafiles/--no-upload-datafiles", default=None,
              help="Create each new Datafile with its file's content: through the IDS "
                   "at --idsurl for a server, into the data directory CATALOGUE.data for "
                   "an embedded catalogue.  The file is DIR/<location> if that exists, else "
                   "DIR/<name>.  Config key: uploadDatafiles.")
@click.option("--datafile-dir", type=click.Path(file_okay=False),
              help="Directory with the files to upload (default: the current one).  "
                   "Config key: dataDir.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1),
              help="Objects per createMany call.")
@click.option("--commit-size", default=Ingester.commit_objects, show_default=True,
              type=click.IntRange(1),
              help="Embedded catalogue: commit after about this many objects (whole "
                   "chunks; a killed run loses at most these, which running again creates).")
@quiet_option
@click.option("-v", "--verbose", is_flag=True, help="Add a line per entity type to the summary.")
@list_formats_option
@debug_option
@click.version_option(__version__, prog_name="icatingest")
@handle_errors
def main(inputfile, fmt, duplicate, upload_datafiles, datafile_dir, batch_size, commit_size,
         quiet, verbose, **params):
    """Ingest a data file into an ICAT catalogue.

    With no URL configured, the default embedded catalogue is used.
    """
    cfg = resolve(dict(params, inputfile=inputfile, fmt=fmt, duplicate=duplicate,
                       upload_datafiles=upload_datafiles, datafile_dir=datafile_dir),
                  settings=SETTINGS)
    inputfile, fmt, duplicate = (cfg.settings[k] for k in ("file", "format", "duplicate"))
    upload = cfg.settings["uploadDatafiles"]
    if upload:
        _check_upload(cfg)
    data = open_input(inputfile, fmt)
    progress = Progress(quiet, verbose=verbose)
    with data, open_client(cfg) as client, _write_lock(client), contextlib.ExitStack() as stack:
        with data.reader(client) as reader:
            uploader = None
            if upload:
                uploader = stack.enter_context(open_uploader(
                    client, cfg.idsurl, cfg.settings["dataDir"], cfg,
                    lambda: (reader.name, reader.chunk_number)))
            ingester = Ingester(client, reader, duplicate, batch_size=batch_size,
                                commit_objects=commit_size, progress=lambda s: progress.update(
                                    "chunk %d, %d objects" % (s.chunks, s.objects),
                                    s.objects), uploader=uploader)
            with _stop_on_sigint(ingester):
                stats = ingester.run()
    parts = ["%d created" % sum(stats.created.values())]
    if stats.skipped:
        parts.append("%d already present" % sum(stats.skipped.values()))
    if stats.updated:
        parts.append("%d updated" % sum(stats.updated.values()))
    if uploader is not None:
        parts.append("%d bytes uploaded to %s" % (uploader.bytes, uploader.ids.url))
    progress.done("icatingest: %d chunks into %s, %s, in %.1f s"
                  % (stats.chunks, client.url, ", ".join(parts), stats.seconds),
                  per_type_lines(created=stats.created, already_present=stats.skipped,
                                 updated=stats.updated))


def _check_upload(cfg):
    """python-icat's condition for an upload to a server: an IDS URL.  An
    embedded catalogue keeps the files in its own data directory, so an IDS
    URL there names another catalogue's IDS: refused, not ignored."""
    from ..config import is_remote
    origin = cfg.origins.get("uploadDatafiles")
    remote = bool(cfg.url and is_remote(cfg.url))
    if remote and not cfg.idsurl:
        raise UsageProblem("uploading datafiles (set by %s) to a server needs the IDS URL: "
                           "--idsurl, ICAT_DATA_SERVICE or idsurl in the config file" % origin)
    if not remote and cfg.idsurl:
        raise UsageProblem("uploading datafiles (set by %s) into an embedded catalogue puts "
                           "the files in its own data directory; the IDS at %s (set by %s) "
                           "belongs to a server (-w URL)"
                           % (origin, cfg.idsurl, cfg.origins.get("idsurl")))


def _duplicate_setting(value) -> str:
    mode = str(value).upper()
    if mode not in DUPLICATE_MODES:
        raise ValueError("must be one of %s, not %r" % (", ".join(DUPLICATE_MODES), value))
    return mode


#: python-icat's icatingest.py variables besides the connection's.
SETTINGS = (Setting("file", "inputfile", "-", path_setting),
            Setting("format", "fmt", None, format_setting),
            Setting("uploadDatafiles", "upload_datafiles", False, boolean_setting),
            Setting("dataDir", "datafile_dir", ".", path_setting),
            Setting("duplicate", "duplicate", "THROW", _duplicate_setting))


def _warn(message):
    click.echo("icatingest: warning: %s" % message, err=True)


def _write_lock(client):
    """The embedded catalogue's write lock: one ingest at a time per file."""
    if isinstance(client, EmbeddedClient):
        return WriteLock(client.url, warn=_warn)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _stop_on_sigint(ingester):
    """Ctrl-C asks the ingest to stop at the next batch boundary, so that
    nothing is left half-sent; a second Ctrl-C aborts at once."""
    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _warn("stopping after the current batch (Ctrl-C again to abort now)")
        ingester.request_stop()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    main()
