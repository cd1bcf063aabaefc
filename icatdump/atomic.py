"""Atomic output: a data file is written under a temporary name beside it
and renamed when complete.

So a dump that fails or is killed never leaves a half-written file under
the name asked for, and an existing file of that name stays as it was
until the new one is whole.
"""

from __future__ import annotations

import errno
import gzip
import io
import logging
import os
import tempfile

_output_log = logging.getLogger("icatdump.output")


def partial_file(path: str) -> tuple[int, str]:
    """Open the temporary file a dump to ``path`` is written into.

    It is ``.NAME.PID.XXXX.part`` beside the final file (so the rename at
    the end stays on one file system).  A dump killed outright (kill -9, a
    crash) cannot remove its partial file; the next dump to the same name
    does, once the process named in it no longer runs.
    """
    refuse_directory(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = ".%s." % os.path.basename(path)
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    for name in names:
        pid = name[len(prefix):].split(".", 1)[0]
        if name.startswith(prefix) and name.endswith(".part") and pid.isdigit() \
                and not _process_runs(int(pid)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                continue
            _output_log.warning("removed %s, the partial file of a dump that did not finish "
                                "(process %s)", os.path.join(directory, name), pid)
    try:
        return tempfile.mkstemp(prefix="%s%d." % (prefix, os.getpid()), suffix=".part",
                                dir=directory)
    except OSError as exc:
        # Name the file asked for, not the temporary name nobody knows.
        raise OSError(exc.errno, exc.strerror, path) from None


def output_stream(fd: int, path: str, mode: str):
    """The stream a writer writes to, and the file on disk beneath it.

    A path ending in ``.gz`` is written gzip-compressed (read back as it is
    by icatingest and icatdata, which sniff the compression).  The two are
    closed separately: the gzip trailer goes out first, then the file on
    disk is synced and closed before the rename.
    """
    if not path.endswith(".gz"):
        stream = os.fdopen(fd, mode, **_text_args(mode))
        return stream, stream
    diskfile = os.fdopen(fd, "wb")
    compressed = gzip.GzipFile(filename=os.path.basename(path[:-3]), mode="wb",
                               fileobj=diskfile)
    stream = compressed if "b" in mode else io.TextIOWrapper(compressed, encoding="utf-8")
    return stream, diskfile


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def refuse_directory(path: str) -> None:
    """An output name that is a directory (``-o .``, ``-o dir/``) is refused
    before any work, not after the whole dump."""
    if path.endswith(os.sep) or os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", path)


def commit(stream, diskfile, tmp_name: str, final_name: str):
    """Finish a partial file: flush, sync, close and rename it to ``final_name``.

    If that fails (a full disk takes the last buffered bytes), the partial
    file is removed, and the error names ``final_name``.
    """
    try:
        stream.flush()
        if stream is not diskfile:
            stream.close()        # the gzip trailer; the disk file stays open
        diskfile.flush()
        os.fsync(diskfile.fileno())
        diskfile.close()
        # mkstemp made the file private; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, final_name)
    except OSError as exc:
        discard(stream, diskfile, tmp_name)
        raise named(exc, final_name) from None


def discard(stream, diskfile, tmp_name: str):
    """Give a partial file up: close and remove it.  Closing may fail (a full
    disk cannot take what is still buffered); the file goes all the same."""
    for f in (stream, diskfile):
        try:
            f.close()
        except (OSError, ValueError):
            pass
    try:
        os.unlink(tmp_name)
    except FileNotFoundError:
        pass


def named(exc: OSError, path: str) -> OSError:
    """The error of a write to the output, naming the file asked for rather
    than nothing (a write has no file name) or the temporary name."""
    if exc.filename is None or os.path.basename(str(exc.filename)).endswith(".part"):
        return OSError(exc.errno, exc.strerror, path)
    return exc


def _text_args(mode: str) -> dict:
    """Text files are UTF-8 whatever the locale says; binary ones have no encoding."""
    return {} if "b" in mode else {"encoding": "utf-8"}
