"""Salvage: the complete, valid chunks of a truncated or partly corrupt file.

A dump cut off by a crash, a full disk or a broken transfer still holds
complete chunks, and each chunk is an ingestable unit.  :func:`salvage`
reads the file with the :class:`~icatdump.check.Checker` and writes every
chunk that

* was read to its end -- in XML a chunk is complete once its ``</data>``
  is read; a YAML document has no end marker, so the last one counts as
  complete only if the file ends with a line break (a cut exactly at a
  line end inside the last document cannot be told from a complete file:
  the result is then the part before the cut, validated like any chunk);
* has no problem by the checker's rules; and
* does not refer to an object of a chunk dropped before it (the checker
  reports such references, so dependants are dropped in turn while
  independent later chunks are kept).

Parsing cannot go on after a syntax error (no ``recover`` mode: guessing
at broken markup could invent data), so the chunks after one are lost and
reported as such.  The output is written as icatdump would write those
chunks, in any format; its header keeps the input's service and version.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from .check import Checker
from .dumporder import type_order
from .offline import output_chunks
from .registry import get_backend
from .schema import Schema
from .streams import text_reader


@dataclass
class SalvageReport:
    kept: list = field(default_factory=list)        # chunk numbers written
    dropped: list = field(default_factory=list)     # (chunk, line, reason)
    objects: int = 0                                # top-level objects written
    expected: dict = field(default_factory=dict)    # as in CheckReport


class _TailStream(io.RawIOBase):
    """A binary stream that remembers the last byte it passed on."""

    def __init__(self, raw, name):
        self._raw = raw
        self.name = name
        self.last = b""

    def readable(self):
        return True

    def readinto(self, buf):
        data = self._raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        if n:
            self.last = data[-1:]
        return n


def salvage(instream, informat: str, outfile, outformat: str, schema: Schema,
            name=None, url="", apiversion="") -> SalvageReport:
    """Copy the complete, valid chunks of ``instream`` (a binary stream) to
    ``outfile`` in ``outformat``; return what was kept and dropped."""
    tail = _TailStream(instream, name or getattr(instream, "name", "<stream>"))
    reader_cls, _ = get_backend(informat)
    # No BufferedReader on top: it gathers several reads into one and drops
    # them all when a later one fails, so the complete chunks just before a
    # truncated gzip block would be lost.  The parsers read in big blocks.
    stream = tail
    if "b" not in reader_cls.mode:
        stream = text_reader(stream, source=instream)
    checker = Checker(stream, informat, schema, url, apiversion, tail.name)
    _, writer_cls = get_backend(outformat)
    order = {n: i for i, n in enumerate(type_order(schema))}
    report = SalvageReport()

    def drop(result, reason=None):
        checker.drop(result)
        first = result.problems[0] if result.problems else None
        reason = reason or (first.cause if first else "incomplete")
        more = len(result.problems) - 1
        if more > 0:
            reason += " (and %d more problem%s)" % (more, "s" if more > 1 else "")
        line = first.line if first else None
        report.dropped.append((result.number, line, str(reason)))

    def write(result, writer):
        objs = [obj for _, obj in result.objects]
        for group in output_chunks(objs, order):
            writer.writedata(group)
        for obj in objs:
            obj.truncate_relations()
        report.kept.append(result.number)

    try:
        with writer_cls(checker.client, outfile) as writer:
            pending = None      # written once the next chunk shows it was complete
            for result in checker.chunks():
                if pending is not None:
                    write(pending, writer)
                    pending = None
                if result.problems or not result.complete:
                    drop(result)
                else:
                    pending = result
            if pending is not None:
                if informat == "YAML" and tail.last not in (b"\n", b""):
                    drop(pending, "the file ends in the middle of a line: cut off")
                else:
                    write(pending, writer)
            report.objects = writer.objects_written
    finally:
        checker.close()
    report.expected = {k: v[0] for k, v in sorted(checker.client.expected.items())}
    return report
