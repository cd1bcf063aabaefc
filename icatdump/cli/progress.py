"""Progress on stderr: a rewritten line on a terminal, nothing otherwise.

At the end a command writes one summary line (unless ``--quiet``); with
``--verbose`` a line per entity type follows it.
"""

from __future__ import annotations

import sys
import time
from collections import Counter


class Progress:
    """Shows progress on a terminal at most a few times a second.

    ``quiet`` silences everything; when stderr is not a terminal only the
    final summary line (and, with ``verbose``, the per-type lines) is written.
    """

    def __init__(self, quiet: bool = False, stream=None, verbose: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.live = not quiet and self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, text: str, objects: int | None = None):
        """Rewrite the progress line: ``text``, the rate when ``objects``
        (done so far) is given, and the elapsed time."""
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        self._last = now
        elapsed = now - self.start
        rate = ""
        if objects is not None and elapsed > 0:
            rate = "  %.0f obj/s" % (objects / elapsed)
        self.stream.write("\r\033[K%s%s  [%.0f s]" % (text, rate, elapsed))
        self.stream.flush()
        self._shown = True

    def done(self, summary: str, details=()):
        """The summary line; ``details`` (per-type lines) only when verbose."""
        if self.quiet:
            return
        if self._shown:
            self.stream.write("\r\033[K")
        self.stream.write(summary + "\n")
        if self.verbose:
            for line in details:
                self.stream.write("  " + line + "\n")
        self.stream.flush()


def per_type_lines(**counters: Counter) -> list[str]:
    """One line per entity type: ``Dataset  12 created, 3 already present``.

    Each keyword names a column (``created=stats.created``); underscores in
    the name become spaces.  Zero counts are left out.
    """
    types = sorted(set().union(*counters.values())) if counters else []
    width = max((len(t) for t in types), default=0)
    lines = []
    for name in types:
        parts = ["%d %s" % (c[name], label.replace("_", " "))
                 for label, c in counters.items() if c.get(name)]
        lines.append("%-*s  %s" % (width, name, ", ".join(parts)))
    return lines


class RecordCounter:
    """Counts what a :class:`~icatdump.dumpfile.DumpFileWriter` writes, by type.

    ``RecordCounter(writer)`` wraps the writer's ``write_record`` on the
    instance; ``top`` counts top-level objects and ``embedded`` their
    embedded children, both by entity type name.
    """

    def __init__(self, writer):
        self.top: Counter = Counter()
        self.embedded: Counter = Counter()
        inner = writer.write_record

        def write_record(key, record):
            self.top[record.type.name] += 1
            self._children(record)
            return inner(key, record)
        writer.write_record = write_record

    def _children(self, record):
        for _, items in record.children:
            for child in items:
                self.embedded[child.type.name] += 1
                self._children(child)
