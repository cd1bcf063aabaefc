"""``icatdump``: write the content of an ICAT catalogue to a data file."""

from __future__ import annotations

import time

import click

from .. import __version__
from ..config import Setting, connection_options, path_setting, resolve
from ..download import DataSaver
from ..dump import DEFAULT_CHUNK_SIZE, Selection, dump
from ..ids.store import data_dir_of
from ..registry import open_dumpfile
from ..store import EmbeddedClient
from .common import (UsageProblem, debug_option, format_names, format_setting, handle_errors,
                     list_formats_option, open_client, quiet_option)
from .progress import Progress, RecordCounter, per_type_lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.option("-o", "--outputfile", type=click.Path(allow_dash=True),
              help="Output file; '-' for standard output (the default).  A file is written "
                   "under a temporary name and renamed when complete.  Config key: file.")
@click.option("-f", "--format", "fmt", type=click.Choice(format_names(), case_sensitive=False),
              help="Data file format (default: YAML).  Config key: format.")
@click.option("--investigation", "investigations", multiple=True, metavar="[FACILITY/]NAME[:VISITID]",
              help="Dump only this investigation (repeatable), with everything it refers to.")
@click.option("--query", "queries", multiple=True, metavar="JPQL",
              help="Dump only the objects this search finds (repeatable), with everything "
                   "they refer to.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=DEFAULT_CHUNK_SIZE,
              show_default=True, help="Split chunks with more top-level objects than this.")
@click.option("--max-entities", type=click.IntRange(min=1), default=None,
              help="The server's limit on objects per search (default: what the server "
                   "reports, else 10000).")
@click.option("--with-data", "data_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Also save each dumped Datafile's content as DIR/<location> (from the "
                   "embedded catalogue's data directory, or from the server's IDS: needs "
                   "--idsurl), where icatingest --upload-datafiles --datafile-dir DIR finds it.  "
                   "A file in place with the recorded size and checksum is kept.")
@quiet_option
@click.option("-v", "--verbose", is_flag=True, help="Add a line per entity type to the summary.")
@list_formats_option
@debug_option
@click.version_option(__version__, prog_name="icatdump")
@handle_errors
def main(outputfile, fmt, quiet, verbose, investigations, queries, chunk_size,
         max_entities, data_dir, **params):
    """Dump the content of an ICAT catalogue to a data file.

    With no URL configured, the default embedded catalogue is dumped.
    """
    cfg = resolve(dict(params, outputfile=outputfile, fmt=fmt), settings=SETTINGS)
    outputfile, fmt = cfg.settings["file"], cfg.settings["format"]
    selection = None
    if investigations or queries:
        selection = Selection([_investigation_arg(a) for a in investigations], queries)
    progress = Progress(quiet, verbose=verbose)
    start = time.monotonic()
    with open_client(cfg) as client:
        with open_dumpfile(client, outputfile, fmt.upper(), "w") as writer:
            counted = RecordCounter(writer)
            saver = _data_saver(writer, data_dir, client, cfg) if data_dir else None
            n = dump(client, writer, progress=lambda name, count: progress.update(
                "dumped %d objects (%s)" % (count, name), count), chunk_size=chunk_size,
                max_entities=max_entities, selection=selection)
    # Counted as icatingest counts what it creates: embedded objects too.
    embedded = sum(counted.embedded.values())
    files = "" if saver is None else ", %d files (%d bytes) saved to %s%s" % (
        saver.files, saver.bytes, data_dir,
        " (%d in place already)" % saver.kept if saver.kept else "")
    progress.done("icatdump: %d objects (%d top-level) from %s written to %s%s in %.1f s"
                  % (n + embedded, n, client.url, outputfile if outputfile != "-" else "stdout",
                     files, time.monotonic() - start),
                  per_type_lines(written=counted.top, embedded=counted.embedded))


def _data_saver(writer, data_dir, client, cfg) -> DataSaver:
    """Where the content comes from: the embedded catalogue's own data
    directory, else the IDS at ``--idsurl`` of the server."""
    if isinstance(client, EmbeddedClient):
        return DataSaver(writer, data_dir, data_dir_of(client.url))
    if not cfg.idsurl:
        raise UsageProblem("--with-data from a server needs its IDS URL: --idsurl, "
                           "ICAT_DATA_SERVICE or idsurl in the config file")
    from ..ids.client import IdsClient
    from ..soap.client import ssl_context
    ids = IdsClient(cfg.idsurl, lambda: client.session_id, ssl_context(cfg))
    ids.version()
    return DataSaver(writer, data_dir, ids)


#: python-icat's icatdump.py variables besides the connection's.
SETTINGS = (Setting("file", "outputfile", "-", path_setting),
            Setting("format", "fmt", "YAML", format_setting))


def _investigation_arg(text: str) -> tuple:
    """``[FACILITY/]NAME[:VISITID]`` as ``(facility, name, visitId)``, Nones if absent."""
    facility, _, rest = text.rpartition("/")
    name, colon, visit = rest.partition(":")
    if not name:
        raise click.BadParameter("expected [FACILITY/]NAME[:VISITID], got %r" % text,
                                 param_hint="--investigation")
    return facility or None, name, visit if colon else None


if __name__ == "__main__":
    main()
