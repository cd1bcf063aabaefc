"""The files of the local IDS: one file per Datafile, named by its location.

Why a module of its own: the rules for where a file lives and how it gets
there (a location never escapes the data directory; a file appears whole
or not at all) are the store's alone, whatever the HTTP side does.

A file is written under a temporary name in ``.tmp/`` of the data directory,
flushed to disk and renamed into place, so a crash leaves either nothing or
the whole file.  A temporary is :func:`owned`: its writer holds an
``flock`` on it, which the kernel drops however the writer ends, so when
a store is opened the temporaries that no live process holds, those of a
killed server or ingest, are removed (:func:`abandoned`) and those another
process is still writing stay.  Size and checksum are computed while the bytes go by:
``crc32`` as ids.server computes it (``java.util.zip.CRC32``, reported as
``Long.toHexString``: lower-case hex without leading zeros).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import uuid
import zlib
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:     # not POSIX: no owners known, every file counts as abandoned
    fcntl = None        # type: ignore[assignment]

from ..store.lock import still_named

#: Bytes read or written at a time: memory per transfer is about this much.
BLOCK = 64 * 1024
_CRC32 = re.compile(r"^[0-9a-fA-F]{1,8}$")


def blocks_of(stream):
    """The content of a binary stream, a block of at most BLOCK bytes at a time."""
    return iter(lambda: stream.read(BLOCK), b"")


def copy_counted(blocks, out) -> tuple[int, int]:
    """Write ``blocks`` to ``out``; the size and crc32 of what was written,
    counted as the IDS counts a file, so that every copy is checked alike."""
    size = crc = 0
    for block in blocks:
        out.write(block)
        size += len(block)
        crc = zlib.crc32(block, crc)
    return size, crc


def counted(path) -> tuple[int, int]:
    """The size and crc32 of the file at ``path``, read a block at a time."""
    with open(path, "rb") as f:
        return copy_counted(blocks_of(f), _Discard())


class _Discard:
    def write(self, block):
        return len(block)


def recorded_crc(checksum) -> int | None:
    """A Datafile's ``checksum`` as a CRC32 value, if it is one as IDS
    writes it (hex, at most 8 digits); None for anything else (another
    algorithm's digest, or none): only a CRC32 can be compared."""
    if checksum and _CRC32.match(checksum):
        return int(checksum, 16)
    return None


def data_dir_of(catalogue) -> Path:
    """The data directory of an embedded catalogue: ``<catalogue>.data``."""
    return Path(str(catalogue) + ".data")


def checksum_text(crc: int) -> str:
    """A CRC32 value as ids.server stores it in ``Datafile.checksum``."""
    return "%x" % (crc & 0xFFFFFFFF)


class BadLocation(ValueError):
    """A location that does not name a file inside the data directory."""


def location_path(root, location: str) -> Path:
    """The file of ``location`` under ``root``; BadLocation for anything
    that could leave ``root`` or name a hidden file (the store's ``.tmp``)."""
    parts = location.split("/") if location else []
    if (not parts or "\\" in location or "\0" in location
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise BadLocation("location %r is not a relative path of plain names" % location)
    return Path(root).joinpath(*parts)


def owned(path) -> IO[bytes]:
    """Create the file ``path`` (it must not exist) for reading and writing,
    binary, and hold an ``flock`` on it for as long as it is open, so that
    :func:`abandoned` leaves it alone.  Should a sweep take the new file
    before its lock (it then removes it), it is created again."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        if fcntl is None:
            return os.fdopen(fd, "r+b")
        fcntl.flock(fd, fcntl.LOCK_EX)      # waits only for a sweep that removes it
        if still_named(path, fd):
            return os.fdopen(fd, "r+b")
        os.close(fd)


def abandoned(paths):
    """The files among ``paths`` that no process holds (see :func:`owned`),
    each as ``(path, file open for reading)`` under a lock of its own;
    a file is removed once the caller has asked for the next one (or the
    loop has ended), so one that a failure interrupted stays for a next
    sweep.  Absent files and directories are passed over."""
    for path in paths:
        try:
            f = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue        # its writer is alive
                if not still_named(path, f.fileno()):
                    continue        # replaced or removed by its owner meanwhile
            yield Path(path), f
            Path(path).unlink(missing_ok=True)
        finally:
            f.close()


class FileStore:
    """Files under ``root``, addressed by a relative location ``a/b/c``."""

    def __init__(self, root):
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for _ in abandoned(sorted(self.tmp.iterdir())):
            pass                    # an interrupted write's: removed

    def path(self, location: str) -> Path:
        """The file of ``location`` (see :func:`location_path`)."""
        return location_path(self.root, location)

    @staticmethod
    def new_location(dataset_id: int) -> str:
        """A fresh location for a file of a dataset (never reused)."""
        return "%d/%s" % (dataset_id, uuid.uuid4())

    def put(self, location: str, blocks) -> tuple[int, int]:
        """Store the bytes of the iterable ``blocks`` at ``location``;
        returns ``(size, crc32)``.  An existing file there is an error."""
        target = self.path(location)
        if target.exists():
            raise FileExistsError("a file is stored at %s already" % location)
        with self.temporary() as (tmp, out):
            size, crc = copy_counted(blocks, out)
            out.flush()
            os.fsync(out.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        return size, crc

    @contextlib.contextmanager
    def temporary(self):
        """``(path, binary file)``: a new :func:`owned` file in ``.tmp/``
        to rename into place before the block ends; removed if it is
        still there when the block ends (an error, or not renamed)."""
        tmp = self.tmp / uuid.uuid4().hex
        out = owned(tmp)
        try:
            with out:
                yield tmp, out
        finally:
            tmp.unlink(missing_ok=True)

    def open(self, location: str):
        """The stored file, opened for reading (FileNotFoundError if absent)."""
        return open(self.path(location), "rb")

    def exists(self, location: str) -> bool:
        try:
            return self.path(location).is_file()
        except BadLocation:
            return False

    def delete(self, location: str) -> None:
        """Remove a file (absent is fine) and the directories it leaves empty."""
        path = self.path(location)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def copy_to(self, location: str, out, offset: int = 0) -> None:
        """Write the stored file to ``out`` from ``offset``: to a socket by
        ``sendfile`` (on a plain socket the kernel copies, no block passes
        through Python), to a stream a block at a time."""
        with self.open(location) as f:
            if isinstance(out, socket.socket):
                out.sendfile(f, offset)
                return
            f.seek(offset)
            shutil.copyfileobj(f, out, BLOCK)
