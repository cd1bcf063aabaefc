"""Input streams: gzip-compressed data files, and text over binary input.

Both are written so that an error while reading (a truncated or corrupt
compressed file) never swallows the data read before it: every read
returns what one step of decompression gives, and the parser sees every
complete chunk before the error.  (``io.BufferedReader`` and
``io.TextIOWrapper`` gather several reads into one and drop them all when
a later one fails.)
"""

from __future__ import annotations

import codecs
import gzip
import io
import zlib

from .errors import DataFileError

#: The first bytes of a gzip file.
GZIP_MAGIC = b"\x1f\x8b"

#: How files in encodings other than UTF-8 start: byte order marks (UTF-32
#: first: its little-endian one starts with UTF-16's), then ``<`` or
#: ``<?xm`` in those encodings without a mark.
_OTHER_ENCODINGS = ((codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
                    (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE"),
                    (b"<\x00\x00\x00", "UTF-32LE"), (b"\x00\x00\x00<", "UTF-32BE"),
                    (b"<\x00", "UTF-16LE"), (b"\x00<", "UTF-16BE"),
                    (b"\x4c\x6f\xa7\x94", "EBCDIC"))


def refuse_other_encoding(head: bytes, name=None):
    """Refuse a file that starts as UTF-16, UTF-32 or EBCDIC text does.

    Data files are UTF-8 (python-icat writes nothing else), and the readers'
    input checks (backends/xml.py) count ``<`` bytes as UTF-8 has them.
    """
    for start, encoding in _OTHER_ENCODINGS:
        if head.startswith(start):
            raise DataFileError("%s text: data files are UTF-8; convert it first, e.g. "
                                "iconv -f %s -t UTF-8" % (encoding, encoding), name, line=1)


class GunzipStream(io.RawIOBase):
    """The decompressed content of a gzip stream.

    Every read makes at most one step of decompression (``read1``), so what
    came before a truncation or a corrupt block is always handed out before
    the error: the parser still gets every complete chunk (salvage keeps
    them).  A truncated or corrupt stream is a :class:`DataFileError`
    naming the file, not a zlib traceback.
    """

    def __init__(self, compressed, name: str):
        self._gzip = gzip.GzipFile(fileobj=compressed, mode="rb")
        self._compressed = compressed
        self.name = name

    def readable(self):
        return True

    def _guarded(self, read, size):
        try:
            return read(size)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataFileError("compressed data %s" % (
                "ends too early (truncated file)" if isinstance(exc, EOFError)
                else "is corrupt: %s" % exc), self.name) from None

    def readinto(self, buf):
        data = self._guarded(self._gzip.read1, len(buf))
        buf[:len(data)] = data
        return len(data)

    def peek(self, size=1) -> bytes:
        return self._guarded(self._gzip.peek, size)

    def close(self):
        self._gzip.close()
        self._compressed.close()
        super().close()


class Utf8Text(io.TextIOBase):
    """UTF-8 text over a :class:`GunzipStream`, one underlying read per call.

    Enough of a text file for the parsers, which ``read(size)`` and take
    short reads in their stride, and for a plugin's reader that reads
    lines (``readline``, iteration).
    """

    def __init__(self, raw, name: str):
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._line = ""         # text read by readline beyond its line
        self.name = name

    def readable(self):
        return True

    def read(self, size=-1) -> str:
        if self._line:
            text = self._line if size is None or size < 0 else self._line[:size]
            self._line = self._line[len(text):]
            return text
        if size is None or size < 0:
            return self._decoder.decode(self._raw.read(), final=True)
        while True:
            data = self._raw.read(max(size, 4))
            text = self._decoder.decode(data, final=not data)
            if text or not data:
                return text

    def readline(self, size=-1) -> str:  # type: ignore[override]  # TextIOBase: str
        parts = []
        while True:
            text = self.read(1 << 16)
            end = text.find("\n") + 1
            if not text or end:
                parts.append(text[:end] if end else text)
                self._line = text[end:] if end else ""
                break
            parts.append(text)
        line = "".join(parts)
        if size is not None and 0 <= size < len(line):
            self._line = line[size:] + self._line
            line = line[:size]
        return line

    def close(self):
        self._raw.close()
        super().close()


def text_reader(stream, source=None):
    """A text stream (UTF-8) over a binary input stream.

    ``source`` is the stream underneath ``stream`` when that is a wrapper
    of its own (salvage's); what matters is whether a gzip stream is at the
    bottom.
    """
    if isinstance(source if source is not None else stream, GunzipStream):
        return Utf8Text(stream, getattr(stream, "name", "<stream>"))
    return io.TextIOWrapper(stream, encoding="utf-8")
