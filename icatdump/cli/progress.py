"""Progress on stderr: a rewritten line on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """Shows progress on a terminal at most a few times a second.

    ``quiet`` silences everything; when stderr is not a terminal only the
    final summary line is written.
    """

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, text: str):
        if not self.live:
            return
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        self._last = now
        self.stream.write("\r\033[K%s  [%.0f s]" % (text, now - self.start))
        self.stream.flush()
        self._shown = True

    def done(self, summary: str):
        if self.quiet:
            return
        if self._shown:
            self.stream.write("\r\033[K")
        self.stream.write(summary + "\n")
        self.stream.flush()
