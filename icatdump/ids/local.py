"""IDS ``put`` without HTTP: how a Datafile and its file come to be.

:func:`put_datafile` is the one home of what ids.server's ``put`` does
once it has checked its request: the file is stored under a fresh
location (``<dataset id>/<uuid>``, whole or not at all), then the Datafile
is created with that location and the ``fileSize`` and ``checksum`` of
what was stored, and the file goes again if the catalogue refuses it.  The
local IDS's HTTP ``put`` (:mod:`.server`) and :class:`LocalIds` both call it.

A file is on disk before any Datafile names it, and a process killed in
between (kill -9, a power cut) could not remove it.  So every location is
first written to an :class:`UploadJournal` (fsynced), and a sweep removes
the files of the journal's locations that no committed Datafile names:
when ``icatdata serve`` starts, before it accepts a request, and when
uploads into an embedded catalogue start and end.  A Datafile never
exists without its file: it is created only after the file was stored.

:class:`LocalIds` is what ``icatingest --upload-datafiles`` talks to when
the catalogue is an embedded one and no server is involved: the calls of
:class:`~.client.IdsClient` that the uploader uses, over the catalogue's own
data directory (``<catalogue>.data``, the directory ``icatdata serve`` gives
its IDS) and the ingest's own :class:`~icatdump.store.EmbeddedClient`.  So
the uploader's checks (which file, sizes, checksums, ambiguous names) run
unchanged, and ``icatdata serve`` on that catalogue serves the files after.
"""

from __future__ import annotations

import datetime
import os
import threading
import uuid
from typing import IO

from ..errors import ServerError
from ..query import literal
from .store import BLOCK, BadLocation, FileStore, abandoned, checksum_text, owned

#: Locations looked up in the catalogue per search when a journal is swept.
SWEEP_PAGE = 500
#: Lines a server's journal may hold before it is written again with only
#: the locations still in flight.
COMPACT = 1000


class UploadJournal:
    """The locations whose file is stored, or about to be, and may not be
    named by a committed Datafile: ``.uploads/<uuid>`` in the data
    directory, one file per process, a location a line.

    ``search(jpql)`` is the catalogue's search, on behalf of no one.
    ``settles`` (a server's catalogue, which commits each create): a
    location leaves the journal as soon as its Datafile is created or its
    file gone again, so the journal holds only what is in flight (it is
    truncated when nothing is, and written again without the settled lines
    past :data:`COMPACT` of them).  Without it (an ingest's transaction,
    whose rows commit with their chunk), the lines stay until a sweep.

    Concurrent puts of a threaded server take turns on the journal.  Its
    file is :func:`~.store.owned`, so a sweep, here or in another process
    on the same data directory, takes only the journals whose process has
    ended: those of a live server or ingest, whose files may be committed
    yet, stay.
    """

    def __init__(self, store: FileStore, search, settles: bool):
        self.store = store
        self.dir = store.root / ".uploads"
        self.settles = settles
        self._search = search
        self._lock = threading.Lock()
        self._path = self.dir / uuid.uuid4().hex
        self._file: IO[bytes] | None = None
        self._pending: set[str] = set()
        self._lines = 0

    def note(self, *locations: str) -> None:
        """Record ``locations`` before their files are stored (or their
        Datafiles deleted); on disk when this returns."""
        if not locations:
            return
        with self._lock:
            if self._file is None:
                self.dir.mkdir(exist_ok=True)
                self._file = owned(self._path)
            f = self._file
            f.write("".join(loc + "\n" for loc in locations).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            if self.settles:
                self._pending.update(locations)
                self._lines += len(locations)

    def settle(self, *locations: str) -> None:
        """``locations`` are named by a committed Datafile or have no file
        any more: the sweep need not look at them (kept in the journal
        without ``settles``)."""
        if not self.settles:
            return
        with self._lock:
            self._pending.difference_update(locations)
            if self._file is None:
                return
            if not self._pending:
                self._file.truncate(0)
                self._file.seek(0)
                self._lines = 0
            elif self._lines > max(COMPACT, 2 * len(self._pending)):
                self._rewrite(self._file)

    def _rewrite(self, old: IO[bytes]) -> None:
        """The journal again with only the pending locations: written
        beside it, then renamed over it, so that a crash leaves one of the
        two whole (and a sweep takes both, being locations of one owner)."""
        new = self._path.with_name(self._path.name + ".new")
        f = owned(new)
        f.write("".join(loc + "\n" for loc in sorted(self._pending)).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
        os.replace(new, self._path)
        old.close()
        self._file = f
        self._lines = len(self._pending)

    def close(self) -> None:
        """Let the journal go: removed if nothing is in flight, otherwise
        left to the next sweep (which it no longer escapes)."""
        with self._lock:
            if self._file is None:
                return
            if self.settles and not self._pending:
                self._path.unlink(missing_ok=True)
            self._file.close()
            self._file = None

    def sweep(self) -> None:
        """Remove the files that the journals of ended processes name and
        no committed Datafile does, then those journals; this process's
        own journal only after :meth:`close`."""
        with self._lock:
            paths = sorted(self.dir.iterdir()) if self.dir.is_dir() else [self.dir]
            for _, f in abandoned(paths):
                page: list[str] = []
                for line in f:
                    page.append(line.decode("utf-8").rstrip("\n"))
                    if len(page) >= SWEEP_PAGE:
                        self._remove_unnamed(page)
                        page = []
                self._remove_unnamed(page)

    def _remove_unnamed(self, locations) -> None:
        locations = [loc for loc in locations if loc]
        if not locations:
            return
        named = set(self._search(
            "SELECT df.location FROM Datafile df WHERE df.location IN (%s)"
            % ", ".join(literal(loc) for loc in locations)))
        for loc in locations:
            if loc not in named:
                try:
                    self.store.delete(loc)
                except BadLocation:
                    pass            # not a location of this store: nothing of ours


def put_datafile(journal: UploadJournal, client, create, location: str, blocks, name: str,
                 dataset, fmt, description=None, doi=None, times=None) -> tuple[int, int]:
    """Store ``blocks`` at ``location`` (in ``journal`` first), then create
    the Datafile as ids.server's put does; returns ``(datafile id, crc32)``.

    ``create(datafile)`` creates it in the catalogue (the server's call runs
    it as the session's user); ``times``: datafileCreateTime and
    datafileModTime in milliseconds since the epoch, as put takes them.
    """
    store = journal.store
    journal.note(location)
    try:
        size, crc = store.put(location, blocks)
    except BaseException:
        journal.settle(location)    # nothing stored (the store removed its temporary)
        raise
    values = dict(name=name, dataset=dataset, datafileFormat=fmt, location=location,
                  fileSize=size, checksum=checksum_text(crc), description=description, doi=doi)
    for key, ms in (times or {}).items():
        if ms is not None:
            values[key] = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    try:
        datafile = client.new("Datafile", **{k: v for k, v in values.items() if v is not None})
        df_id = create(datafile)
    except BaseException:
        store.delete(location)
        journal.settle(location)
        raise
    journal.settle(location)
    return df_id, crc


class LocalIds:
    """The uploader's IDS for an embedded catalogue: ``put`` and ``delete``
    over ``data_dir`` and ``client``, no HTTP and no session.  Its Datafiles
    are rows of the ingest's transaction, so its journal keeps every
    location until :meth:`close`, which sweeps it once the rows are
    committed or rolled back."""

    def __init__(self, client, data_dir):
        self.client = client
        self.store = FileStore(data_dir)
        self.url = str(self.store.root)
        self.journal = UploadJournal(self.store, client.search, settles=False)
        self.sweep()                # what a killed run left

    def put(self, fileobj, size: int, name: str, dataset_id: int, format_id: int,
            **optional) -> tuple[int, int, int]:
        """As :meth:`IdsClient.put <icatdump.ids.client.IdsClient.put>`:
        ``(datafile id, crc32 read, crc32 stored)``, one and the same here."""
        dataset = self.client.get("Dataset", dataset_id)
        fmt = self.client.get("DatafileFormat", format_id)
        times = {k: optional.get(k) for k in ("datafileCreateTime", "datafileModTime")}
        df_id, crc = put_datafile(self.journal, self.client, self.client.create,
                                  self.store.new_location(dataset_id),
                                  _exactly(fileobj, size, name), name, dataset, fmt,
                                  optional.get("description"), optional.get("doi"), times)
        return df_id, crc, crc & 0xFFFFFFFF

    def delete(self, datafile_ids) -> None:
        """The Datafiles first, then their files (as the local IDS deletes)."""
        found = [self.client.get("Datafile", i) for i in datafile_ids]
        self.client.delete_many(found)
        for df in found:
            self.store.delete(df.values["location"])

    def close(self) -> None:
        """The uploads are over: remove the files of Datafiles that were
        not committed."""
        self.journal.close()
        self.sweep()

    def sweep(self) -> None:
        """The journal's sweep, left alone inside an open transaction,
        whose rows may still go either way."""
        if not self.client.conn.in_transaction:
            self.journal.sweep()


def _exactly(fileobj, size: int, name: str):
    """``size`` bytes of ``fileobj`` a block at a time; a file that has
    fewer or more is an error (it changed while it was uploaded), as the
    HTTP client's Content-Length makes it one."""
    left = size
    while left > 0:
        block = fileobj.read(min(BLOCK, left))
        if not block:
            break
        left -= len(block)
        yield block
    if left or fileobj.read(1):
        raise ServerError("%s changed size while it was uploaded" % name)
