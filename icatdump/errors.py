"""The error of a data file's content: one home, imported by every module
that reads a data file (the reader, the backends, the input streams), so
none of them has to import another to report a bad file."""

from __future__ import annotations


class DataFileError(ValueError):
    """A problem with the content of a data file, with where it is.

    ``str()`` gives one line: file, chunk, line, key, then the cause.
    """

    def __init__(self, cause, file=None, chunk=None, line=None, key=None):
        super().__init__(cause)
        self.cause, self.file, self.chunk, self.line, self.key = cause, file, chunk, line, key

    def __str__(self):
        where = []
        if self.file:
            where.append(str(self.file))
        if self.chunk:
            where.append("chunk %d" % self.chunk)
        if self.line:
            where.append("line %d" % self.line)
        if self.key:
            where.append(self.key)
        cause = " ".join(str(self.cause).split())      # parsers' messages may span lines
        return "%s: %s" % (", ".join(where), cause) if where else cause
