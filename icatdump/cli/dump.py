"""``icatdump``: write the content of an ICAT catalogue to a data file."""

from __future__ import annotations

import sys
import time

import click

from .. import __version__
from ..config import connection_options, resolve
from ..dump import dump
from ..dumpfile import open_dumpfile
from .common import (debug_option, format_names, handle_errors, list_formats_option,
                     open_client, quiet_option)
from .progress import Progress, RecordCounter, per_type_lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@connection_options
@click.option("-o", "--outputfile", default="-", show_default=True,
              help="Output file; '-' for standard output.  A file is written under a "
                   "temporary name and renamed when complete.")
@click.option("-f", "--format", "fmt", default="YAML", show_default=True,
              type=click.Choice(format_names(), case_sensitive=False),
              help="Data file format.")
@quiet_option
@click.option("-v", "--verbose", is_flag=True, help="Add a line per entity type to the summary.")
@list_formats_option
@debug_option
@click.version_option(__version__, prog_name="icatdump")
@handle_errors
def main(outputfile, fmt, quiet, verbose, **params):
    """Dump the content of an ICAT catalogue to a data file.

    With no URL configured, the default embedded catalogue is dumped.
    """
    cfg = resolve(params)
    progress = Progress(quiet, verbose=verbose)
    start = time.monotonic()
    with open_client(cfg) as client:
        with open_dumpfile(client, outputfile, fmt.upper(), "w") as writer:
            counted = RecordCounter(writer)
            n = dump(client, writer, progress=lambda name, count: progress.update(
                "dumped %d objects (%s)" % (count, name)))
    progress.done("icatdump: %d objects written to %s in %.1f s"
                  % (n, outputfile if outputfile != "-" else "stdout",
                     time.monotonic() - start),
                  per_type_lines(written=counted.top, embedded=counted.embedded))


if __name__ == "__main__":
    main()
