"""One ingest at a time per embedded catalogue: a lock file beside it.

SQLite serializes transactions by itself, but an ingest holds one per chunk
for as long as the chunk takes; a second ingest into the same file would sit
on SQLite's busy timeout and then fail with "database is locked" somewhere in
the middle.  Instead the second one refuses at the start, naming the process
that writes.

The lock is an ``flock`` on ``<catalogue>.lock``, so the kernel releases it
when its process dies however it dies; the file holds the owner's PID.  A
file left by a killed process (its PID no longer runs) is reported as a
stale lock and taken over.
"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:     # not POSIX: no locking, SQLite's own busy errors remain
    fcntl = None        # type: ignore[assignment]

from ..errors import CatalogueBusy, CatalogueError
from .catalogue import writable


def still_named(path, fd: int) -> bool:
    """Whether ``path`` names the open file ``fd``: an flock taken after
    an open may be on a file that another process removed in between, a
    lock on a name nobody sees any more."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # it exists, it is just not ours
    return True


def _read_pid(fd) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class WriteLock:
    """``with WriteLock(catalogue_path, warn=print):`` -- exclusive writing.

    ``warn`` receives a one-line message when a stale lock is taken over.
    """

    def __init__(self, catalogue_path, warn=None):
        self.path = os.fspath(catalogue_path) + ".lock"
        self.warn = warn
        self._fd = None

    def acquire(self) -> "WriteLock":
        if fcntl is None:
            return self
        catalogue = self.path[:-5]
        if not writable(catalogue):
            raise CatalogueError("%s is read-only (it can be dumped, not written)" % catalogue)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise CatalogueBusy(
                    "%s is being written by another process%s; wait for it to finish"
                    % (self.path[:-5], " (pid %d)" % pid if pid else "")) from None
            # The previous owner may have removed the file between our open
            # and our lock: then we hold a lock on a name nobody sees.
            if still_named(self.path, fd):
                break
            os.close(fd)
        pid = _read_pid(fd)
        if pid and pid != os.getpid() and self.warn is not None:
            state = "no longer runs" if not _alive(pid) else "did not hold it"
            self.warn("removed a stale lock on %s: process %d %s"
                      % (self.path[:-5], pid, state))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"%d\n" % os.getpid())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)      # closing drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
