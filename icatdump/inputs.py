"""Opening a data file for reading: compression, first bytes, header.

The one home of what a reader's input needs before it is read:

* gzip: a compressed file (``icatdump -o x.xml.gz``, ``icatdump | gzip``)
  is read through, whatever its format (:func:`open_binary`);
* its first bytes (:data:`HEAD_SIZE`), which the backends' optional hooks
  judge: ``sniff(head) -> bool`` (is this one of my files?) and
  ``read_header(stream)`` (date, service, apiversion, generator), found
  on a backend's reader class or in its module (:func:`format_hook`);
* :class:`DataInput`: the file opened, its format settled, ready to hand
  to a reader.

Which format a file is -- asking the registered backends in turn -- is
the registry's job (:func:`icatdump.registry.open_input`), so that the
library (:func:`~icatdump.registry.open_dumpfile`, a reader given a path)
and the commands sniff the same way, and plugin formats get the same
sniffing, gzip and ``icatdata info``/``check`` headers as XML and YAML.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field

from .streams import GZIP_MAGIC, GunzipStream, text_reader

#: How many (decompressed) bytes ``sniff`` and ``read_header`` are given:
#: the start of the file, or all of it if it is shorter.
HEAD_SIZE = 8192


class FormatMismatch(ValueError):
    """A format was named, but the content is plainly another format's."""

    def __init__(self, name: str, given: str, sniffed: str):
        super().__init__("%s: read as %s, but the file looks like %s" % (name, given, sniffed))
        self.name, self.given, self.sniffed = name, given, sniffed


class ReplayStream(io.RawIOBase):
    """A binary stream that first replays bytes already read from another."""

    def __init__(self, head: bytes, rest, name: str):
        self._head = head
        self._rest = rest
        self.name = name

    def readable(self):
        return True

    def readinto(self, buf):
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        n = len(data)
        buf[:n] = data
        return n

    def close(self):
        self._rest.close()
        super().close()


def open_binary(f, name: str | None = None) -> tuple:
    """A binary input, unread, decompressed if it is gzip.

    ``f`` is a path, ``"-"`` (standard input) or a binary stream.  Returns
    ``(stream, name, head)``: ``head`` is its first :data:`HEAD_SIZE`
    decompressed bytes.  A stream given is the caller's to close.  A seekable plain file is handed on as it is, at
    its start, so a reader that wants the file on disk (SQLite) finds it.
    """
    if hasattr(f, "read"):
        raw = f
        name = name or getattr(f, "name", None) or "<stream>"
    elif f == "-":
        raw = sys.stdin.buffer
        name = name or "<stdin>"
    else:
        name = name or os.fspath(f)
        raw = open(f, "rb")
    try:
        seekable = raw.seekable()
        if seekable:
            start = raw.tell()
            first = raw.read(HEAD_SIZE)
            raw.seek(start)
            stream = raw
        else:
            first = _read_fully(raw, HEAD_SIZE)
            stream = io.BufferedReader(ReplayStream(first, raw, name), 1 << 16)
        if not first.startswith(GZIP_MAGIC):
            return stream, name, first
        stream = GunzipStream(stream, name)
        return stream, name, stream.peek(HEAD_SIZE)[:HEAD_SIZE]
    except BaseException:
        if raw is not f:
            raw.close()
        raise


def _read_fully(raw, size: int) -> bytes:
    """Up to ``size`` bytes: a pipe may hand out less in one read."""
    parts, n = [], 0
    while n < size:
        data = raw.read(size - n)
        if not data:
            break
        parts.append(data)
        n += len(data)
    return b"".join(parts)


def format_hook(reader_cls, name: str):
    """A backend's optional ``sniff`` or ``read_header``: on its reader
    class, else in the module that defines the class (where an entry point
    names ``reader`` and ``writer``); None if it offers none."""
    hook = getattr(reader_cls, name, None)
    if hook is None:
        hook = getattr(sys.modules.get(reader_cls.__module__), name, None)
    return hook if callable(hook) else None


def read_header(reader_cls, head: bytes) -> dict:
    """The header fields of a file (date, service, apiversion, generator),
    as far as its backend's ``read_header`` tells from the first bytes;
    ``{}`` for a backend without one."""
    hook = format_hook(reader_cls, "read_header")
    return dict(hook(io.BytesIO(head)) or {}) if hook is not None else {}


@dataclass
class DataInput:
    """An input data file, opened and its format settled, not yet read.

    ``stream`` is binary (decompressed); :meth:`reader` hands it to a
    reader, which then closes it with itself -- if ``owned``: a file
    opened here, not a stream the caller gave.  Use as a context manager,
    or close it.
    """
    format: str
    reader_class: type
    stream: object
    name: str
    head: bytes
    owned: bool = True
    _header: dict | None = field(default=None, repr=False)

    @property
    def header(self) -> dict:
        """What the backend reads of the header (see :func:`read_header`)."""
        if self._header is None:
            self._header = read_header(self.reader_class, self.head)
        return self._header

    def reader_stream(self):
        """The stream in the reader's mode: UTF-8 text for a text format."""
        if "b" in self.reader_class.mode:
            return self.stream
        return text_reader(self.stream)

    def reader(self, client, reader_cls=None):
        """A reader of this file (``reader_cls``: a subclass of the
        format's), which closes the file when it is closed."""
        reader = (reader_cls or self.reader_class)(client, self.reader_stream())
        reader.name = self.name
        reader._closefile = self.owned
        return reader

    def close(self):
        if self.owned:
            self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
