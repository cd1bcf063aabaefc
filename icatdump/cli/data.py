"""``icatdata``: catalogues and data files without a server.

    icatdata init PATH          create an embedded catalogue
    icatdata info FILE          what a data file holds
    icatdata check FILE         would it ingest? every problem, offline
    icatdata convert IN OUT     XML <-> YAML <-> plugin formats, offline
    icatdata salvage IN OUT     the complete, valid chunks of a broken file
    icatdata serve PATH         the catalogue as an ICAT SOAP service, with an IDS
"""

from __future__ import annotations

import json
import os
import ssl
from collections import Counter

import click

from .. import __version__
from ..check import format_problem
from ..dumpfile import RawObject
from ..schema import DEFAULT_VERSION, VERSIONS, Schema
from ..soap.limits import MIB, Limits
from .common import (UsageProblem, debug_option, format_names, handle_errors,
                     open_input, quiet_option)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="icatdata")
def main():
    """Work with ICAT catalogues and data files without a server."""


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--schema-version", type=click.Choice(VERSIONS), default=DEFAULT_VERSION,
              show_default=True, help="ICAT schema version of the new catalogue.")
@debug_option
@handle_errors
def init(path, schema_version):
    """Create an empty embedded ICAT catalogue (an SQLite file) at PATH."""
    from ..store import init_catalogue
    if os.path.exists(path):
        raise UsageProblem("%s exists already" % path)
    init_catalogue(path, schema_version)
    click.echo("created ICAT %s catalogue %s" % (schema_version, path), err=True)


class _NoClient:
    """Just enough of a client for a reader that is only parsed, not resolved."""

    def __init__(self, schema):
        self.schema = schema

    def refresh(self):
        pass


def _count(raw: RawObject, top: Counter, embedded: Counter, schema: Schema, tag=None):
    """Count the embedded objects of ``raw``, recursively, by type.

    Names the schema does not know are skipped: info describes a file,
    ``check`` judges it.
    """
    etype = schema.by_instance.get(raw.tag) if tag is None else tag
    if etype is None:
        return
    for name, value in raw.fields:
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, (RawObject, dict)):
                f = etype.fields.get(etype.aliases.get(name, name))
                if f is None:
                    continue
                ctype = schema[f.type]
                embedded[ctype.instance_name] += 1
                if isinstance(child, dict):
                    child = RawObject(ctype.instance_name, None, list(child.items()))
                _count(child, top, embedded, schema, ctype)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-f", "--format", "fmt", type=click.Choice(format_names(), case_sensitive=False),
              help="Data file format (default: detected).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@handle_errors
def info(file, fmt, as_json):
    """What a data file holds: header, chunks, objects per entity type."""
    data, schema = _open_data(file, fmt, None)
    header = data.header
    top, embedded, chunks = Counter(), Counter(), 0
    with data.reader(_NoClient(schema)) as reader:
        for chunk in reader.iter_chunks():
            chunks += 1
            for raw in chunk.records():
                if raw.ref_only:
                    continue
                top[raw.tag] += 1
                _count(raw, top, embedded, schema)
    fmt, name = data.format, data.name
    result = {
        "file": name, "format": fmt, "size": os.path.getsize(file) if file != "-" else None,
        "header": header, "chunks": chunks,
        "objects": sum(top.values()) + sum(embedded.values()),
        "top_level": dict(sorted(top.items())), "embedded": dict(sorted(embedded.items())),
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo("file:       %s (%s%s)" % (name, fmt, ", %d bytes" % result["size"]
                                           if result["size"] is not None else ""))
    for k in ("date", "service", "apiversion", "generator"):
        if k in header:
            click.echo("%-11s %s" % (k + ":", header[k]))
    click.echo("chunks:     %d" % chunks)
    click.echo("objects:    %d" % result["objects"])
    for tag in sorted(set(top) | set(embedded)):
        click.echo("  %-30s %8d top-level %8d embedded" % (tag, top[tag], embedded[tag]))


def _format_from_name(path: str) -> str | None:
    """The format a file name suggests (``dump.xml``, ``dump.yaml.gz``)."""
    path = path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return {"xml": "XML", "yaml": "YAML", "yml": "YAML", "export": "PORT"}.get(ext) or \
        next((n for n in format_names() if n.lower() == ext), None)


def _file_to_file(default_output_format: str):
    """The arguments and options of a command that reads one data file and
    writes another (convert, salvage)."""
    options = [
        click.argument("infile", type=click.Path(dir_okay=False, allow_dash=True)),
        click.argument("outfile", type=click.Path(dir_okay=False, allow_dash=True)),
        click.option("-f", "--from", "informat",
                     type=click.Choice(format_names(), case_sensitive=False),
                     help="Input format (default: detected from the content)."),
        click.option("-t", "--to", "outformat",
                     type=click.Choice(format_names(), case_sensitive=False),
                     help="Output format (default: %s)." % default_output_format),
        click.option("--schema-version", type=click.Choice(VERSIONS), default=None,
                     help="ICAT schema of the content (default: from the file's header)."),
        quiet_option,
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


@main.command()
@_file_to_file("from OUTFILE's extension")
@debug_option
@handle_errors
def convert(infile, outfile, informat, outformat, schema_version, quiet):
    """Convert a data file to another format, offline and streaming.

    The output is what icatdump would write for the same content.
    """
    from ..offline import convert as convert_file
    data, schema = _open_data(infile, informat, schema_version)
    with data:
        outformat = (outformat or "").upper() or _format_from_name(outfile)
        if not outformat:
            raise UsageProblem("cannot tell the output format from %s: give -t FORMAT"
                               % outfile)
        n = convert_file(data.reader_stream(), data.format, outfile, outformat, schema,
                         url=data.header.get("service", ""),
                         apiversion=data.header.get("apiversion", ""))
    if not quiet:
        click.echo("icatdata: %d top-level objects written to %s (%s)"
                   % (n, outfile, outformat), err=True)


def _open_data(file, fmt, schema_version):
    """Open an input data file: its :class:`~icatdump.inputs.DataInput` and
    the schema to read it with.

    The schema is the one of the header's apiversion unless given, so an
    ICAT 4.4 file is judged by the 4.4 schema.
    """
    data = open_input(file, fmt.upper() if fmt else None)
    version = schema_version or data.header.get("apiversion") or DEFAULT_VERSION
    try:
        schema = Schema.for_version(version)
    except BaseException:
        data.close()
        raise
    return data, schema


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-f", "--format", "fmt", type=click.Choice(format_names(), case_sensitive=False),
              help="Data file format (default: detected).")
@click.option("--schema-version", type=click.Choice(VERSIONS), default=None,
              help="Check against this ICAT schema (default: the file header's apiversion).")
@click.option("--max-problems", default=50, show_default=True, type=click.IntRange(1),
              help="List at most this many problems.")
@quiet_option
@debug_option
@handle_errors
def check(file, fmt, schema_version, max_problems, quiet):
    """Check a data file offline: would it ingest into a catalogue?

    Exit 0 when clean, 1 with one line per problem on stdout.  References
    the file does not resolve itself are listed as expected in the target
    catalogue; they are not problems.
    """
    from ..check import check as check_file
    data, schema = _open_data(file, fmt, schema_version)
    name = data.name
    with data:
        report = check_file(data.reader_stream(), data.format, schema, name=name,
                            limit=max_problems)
    if report.expected and not quiet:
        click.echo("%s: %d reference%s expected in the target catalogue:" % (
            name, len(report.expected), "s" if len(report.expected) != 1 else ""), err=True)
        for key, uses in report.expected.items():
            click.echo("  %s (%d use%s)" % (key, uses, "s" if uses != 1 else ""), err=True)
    for problem in report.problems:
        click.echo(format_problem(problem))
    if report.problem_count > len(report.problems):
        click.echo("... and %d more problems" % (report.problem_count - len(report.problems)))
    if not quiet:
        click.echo("%s: ICAT %s schema, %d chunks, %d objects, %s" % (
            name, schema.version, report.chunks, report.objects,
            "%d problem%s" % (report.problem_count, "s" if report.problem_count != 1 else "")
            if report.problem_count else "no problems"), err=True)
    if not report.ok:
        raise SystemExit(1)


@main.command()
@_file_to_file("the input's")
@debug_option
@handle_errors
def salvage(infile, outfile, informat, outformat, schema_version, quiet):
    """Write the complete, valid chunks of a truncated or damaged file.

    Every dropped chunk is named on stderr with its line and why.  Exit 0
    when every chunk was kept, 1 when some were dropped (OUTFILE is
    written either way).
    """
    from ..salvage import salvage as salvage_file
    data, schema = _open_data(infile, informat, schema_version)
    name, header = data.name, data.header
    outformat = (outformat or "").upper() or data.format
    with data:
        report = salvage_file(data.stream, data.format, outfile, outformat, schema, name=name,
                              url=header.get("service", ""),
                              apiversion=header.get("apiversion", ""))
    for number, line, reason in report.dropped:
        click.echo("icatdata: %s: chunk %d%s dropped: %s" % (
            name, number, ", line %d," % line if line else "", reason), err=True)
    if not quiet:
        click.echo("icatdata: %d chunks (%d top-level objects) written to %s (%s), %d dropped" % (
            len(report.kept), report.objects, outfile, outformat, len(report.dropped)),
            err=True)
    if report.dropped:
        raise SystemExit(1)


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is announced with a warning.")
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="Port (default: a free one, printed at start).")
@click.option("--account", "accounts", multiple=True, metavar="[AUTH/]NAME:PASSWORD",
              help="An account (repeatable; default root:secret): of authenticator AUTH "
                   "only, or without AUTH/ of every one (simple, db).")
@click.option("--root-user", "root_users", multiple=True, metavar="AUTH/NAME",
              help="A user who may do everything, ICAT's rootUserNames (repeatable; "
                   "default simple/root and db/root); the catalogue's rules apply to "
                   "everyone else.")
@click.option("--timezone", "tzname", default="local", show_default=True, metavar="ZONE",
              help="The zone in which dates without offset sent by clients (values and query "
                   "literals) are read, as "
                   "ICAT reads them in its server's zone: 'local' (this machine's), 'UTC' "
                   "or a name such as Europe/Berlin.")
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True),
              help="Serve HTTPS with this certificate (PEM; may hold the key too).")
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True),
              help="The certificate's private key (PEM), if not in --certfile.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where the IDS at /ids keeps the datafiles' content "
                   "(default: PATH.data beside the catalogue).")
@click.option("--read-timeout", type=click.FloatRange(0, min_open=True),
              default=Limits.read_timeout, show_default=True, metavar="SECONDS",
              help="Time for a request to arrive in full (and for an idle connection "
                   "to be closed).")
@click.option("--max-connections", type=click.IntRange(1),
              default=Limits.max_connections, show_default=True,
              help="Connections served at once; more are answered 503.")
@click.option("--max-request-mib", type=click.IntRange(1), default=Limits.max_request // MIB,
              show_default=True, metavar="MIB",
              help="Largest SOAP request body; larger ones are answered 413 unread.")
@click.option("--max-pending-mib", type=click.IntRange(1), default=Limits.max_pending // MIB,
              show_default=True, metavar="MIB",
              help="Request bodies held at once over all connections; more wait, then 503.")
@click.option("--backlog", type=click.IntRange(1), default=Limits.backlog, show_default=True,
              help="Connections queued by the kernel before they are accepted.")
@quiet_option
@debug_option
@handle_errors
def serve(path, host, port, accounts, root_users, tzname, certfile, keyfile, data_dir,
          read_timeout, max_connections, max_request_mib, max_pending_mib, backlog, quiet):
    """Serve the embedded catalogue PATH as an ICAT SOAP service, with an
    ICAT Data Service (IDS) for the datafiles' content at /ids."""
    from ..soap.server import run_server
    if keyfile and not certfile:
        raise UsageProblem("--keyfile needs --certfile")
    from ..store.authz import ROOT_USERS
    parsed = {}
    for acc in accounts:
        name, sep, password = acc.partition(":")
        auth, slash, user = name.rpartition("/")
        if not sep or not user or (slash and not auth):
            raise UsageProblem("--account wants [AUTH/]NAME:PASSWORD, got %r" % acc)
        parsed[name] = password
    for root in root_users:
        auth, _, user = root.partition("/")
        if not auth or not user:
            raise UsageProblem("--root-user wants AUTH/NAME (as ICAT names users, "
                               "e.g. simple/root), got %r" % root)
    timezone = None
    if tzname != "local":
        import zoneinfo
        try:
            timezone = zoneinfo.ZoneInfo(tzname)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise UsageProblem("--timezone: unknown time zone %r (use 'local', 'UTC' or "
                               "a name such as Europe/Berlin)" % tzname) from None
    try:
        run_server(path, host, port, parsed or None, quiet, certfile, keyfile, data_dir,
                   Limits(read_timeout=read_timeout, max_connections=max_connections,
                          max_request=max_request_mib * MIB, max_pending=max_pending_mib * MIB,
                          backlog=backlog),
                   root_users=frozenset(root_users) if root_users else ROOT_USERS,
                   timezone=timezone)
    except ssl.SSLError as exc:
        raise UsageProblem("cannot use the certificate %s: %s" % (certfile, exc)) from None


if __name__ == "__main__":
    main()
