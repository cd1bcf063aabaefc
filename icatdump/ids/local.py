"""IDS ``put`` without HTTP: how a Datafile and its file come to be.

:func:`put_datafile` is the one home of what ids.server's ``put`` does
once it has checked its request: the file is stored under a fresh
location (``<dataset id>/<uuid>``, whole or not at all), then the Datafile
is created with that location and the ``fileSize`` and ``checksum`` of
what was stored, and the file goes again if the catalogue refuses it.  The
local IDS's HTTP ``put`` (:mod:`.server`) and :class:`LocalIds` both call it.

:class:`LocalIds` is what ``icatingest --upload-datafiles`` talks to when
the catalogue is an embedded one and no server is involved: the calls of
:class:`~.client.IdsClient` that the uploader uses, over the catalogue's own
data directory (``<catalogue>.data``, the directory ``icatdata serve`` gives
its IDS) and the ingest's own :class:`~icatdump.store.EmbeddedClient`.  So
the uploader's checks (which file, sizes, checksums, ambiguous names) run
unchanged, and ``icatdata serve`` on that catalogue serves the files after.

One difference from a server: the ingest's Datafiles are rows of its
transaction, committed with their chunk, while a file is on disk as soon as
it is stored.  A failed chunk, or a process killed before its commit,
would leave files that no Datafile names.  Each location is therefore
written to a journal (``.uploads`` in the data directory, fsynced) before
its file is stored; when the uploads end, and when a run starts after a
killed one, the journal's files that no committed Datafile names are
removed.  A Datafile never exists without its file: its row can only be
committed after the file was stored.
"""

from __future__ import annotations

import datetime
import os

from ..errors import ServerError
from ..query import literal
from .store import BLOCK, FileStore, checksum_text

#: Locations looked up in the catalogue per search when the journal is swept.
SWEEP_PAGE = 500


def put_datafile(store: FileStore, client, create, location: str, blocks, name: str,
                 dataset, fmt, description=None, doi=None, times=None) -> tuple[int, int]:
    """Store ``blocks`` at ``location``, then create the Datafile as
    ids.server's put does; returns ``(datafile id, crc32)``.

    ``create(datafile)`` creates it in the catalogue (the server's call runs
    it as the session's user); ``times``: datafileCreateTime and
    datafileModTime in milliseconds since the epoch, as put takes them.
    """
    size, crc = store.put(location, blocks)
    values = dict(name=name, dataset=dataset, datafileFormat=fmt, location=location,
                  fileSize=size, checksum=checksum_text(crc), description=description, doi=doi)
    for key, ms in (times or {}).items():
        if ms is not None:
            values[key] = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    datafile = client.new("Datafile", **{k: v for k, v in values.items() if v is not None})
    try:
        df_id = create(datafile)
    except BaseException:
        store.delete(location)
        raise
    return df_id, crc


class LocalIds:
    """The uploader's IDS for an embedded catalogue: ``put`` and ``delete``
    over ``data_dir`` and ``client``, no HTTP and no session."""

    def __init__(self, client, data_dir):
        self.client = client
        self.store = FileStore(data_dir)
        self.url = str(self.store.root)
        self.journal = self.store.root / ".uploads"
        self._journal = None
        self.sweep()                # what a killed run left

    def put(self, fileobj, size: int, name: str, dataset_id: int, format_id: int,
            **optional) -> tuple[int, int, int]:
        """As :meth:`IdsClient.put <icatdump.ids.client.IdsClient.put>`:
        ``(datafile id, crc32 read, crc32 stored)``, one and the same here."""
        dataset = self.client.get("Dataset", dataset_id)
        fmt = self.client.get("DatafileFormat", format_id)
        location = self.store.new_location(dataset_id)
        self._note(location)
        times = {k: optional.get(k) for k in ("datafileCreateTime", "datafileModTime")}
        df_id, crc = put_datafile(self.store, self.client, self.client.create, location,
                                  _exactly(fileobj, size, name), name, dataset, fmt,
                                  optional.get("description"), optional.get("doi"), times)
        return df_id, crc, crc & 0xFFFFFFFF

    def delete(self, datafile_ids) -> None:
        """The Datafiles first, then their files (as the local IDS deletes)."""
        found = [self.client.get("Datafile", i) for i in datafile_ids]
        self.client.delete_many(found)
        for df in found:
            self.store.delete(df.values["location"])

    def _note(self, location: str) -> None:
        if self._journal is None:
            self._journal = open(self.journal, "a", encoding="utf-8")
        self._journal.write(location + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def close(self) -> None:
        """The uploads are over: remove the files of Datafiles that were
        not committed."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.sweep()

    def sweep(self) -> None:
        """Remove the journal's files that no committed Datafile names,
        then the journal.  Left alone inside an open transaction, whose
        rows may still go either way."""
        if not self.journal.exists() or self.client.conn.in_transaction:
            return
        with open(self.journal, encoding="utf-8") as f:
            page: list[str] = []
            for line in f:
                page.append(line.rstrip("\n"))
                if len(page) >= SWEEP_PAGE:
                    self._remove_unnamed(page)
                    page = []
            self._remove_unnamed(page)
        self.journal.unlink()

    def _remove_unnamed(self, locations) -> None:
        locations = [loc for loc in locations if loc]
        if not locations:
            return
        named = set(self.client.search(
            "SELECT df.location FROM Datafile df WHERE df.location IN (%s)"
            % ", ".join(literal(loc) for loc in locations)))
        for loc in locations:
            if loc not in named:
                self.store.delete(loc)


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
