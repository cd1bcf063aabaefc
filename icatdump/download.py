"""``icatdump --with-data DIR``: the content of every dumped Datafile beside the dump.

Each Datafile written to the dump that has a location gets its content at
``DIR/<location>``: exactly where ``icatingest --upload-datafiles
--datafile-dir DIR`` looks first, so a dump and its files move to another
catalogue and IDS together, and two datafiles of one name never collide.

The content comes from the embedded catalogue's own data directory
(``<catalogue>.data``, the local IDS's files) or from the server's IDS
(``--idsurl``; by the Datafile's id, which the dump read with it).
A file is written under a temporary name and renamed when complete, and
its size and CRC32 checksum are compared with what the catalogue records
(a checksum only when it is a CRC32 as IDS writes it): a mismatch is an
error.  A file already at its place with the recorded size and, when the
catalogue records a CRC32, that checksum is kept (its content read once,
a block at a time), so a dump run again fetches only what is missing or
wrong; a file with nothing recorded to compare is fetched again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .errors import DataFileError
from .ids.store import (BadLocation, blocks_of, checksum_text, copy_counted, counted,
                        location_path, recorded_crc)


class DataSaver:
    """Wraps a writer's ``write_record``: each Datafile's content goes to ``out_dir``.

    ``source``: a directory (an embedded catalogue's data directory, read
    only) or the :class:`~icatdump.ids.client.IdsClient` of the dumped
    catalogue's IDS.
    """

    def __init__(self, writer, out_dir, source):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.files = self.bytes = 0
        #: Files found in place already, right by size and checksum.
        self.kept = 0
        inner = writer.write_record

        def write_record(key, record):
            self._record(key, record)
            return inner(key, record)
        writer.write_record = write_record

    def _record(self, key, record):
        if record.type.name == "Datafile":
            self._save(key, dict(record.attrs), record.id)
        for _, items in record.children:
            for child in items:
                self._record(key, child)

    def _save(self, key, attrs, id: int | None):
        location = attrs.get("location")
        if not location:
            return
        try:
            target = location_path(self.dir, location.lstrip("/"))
        except BadLocation as exc:
            raise DataFileError("cannot save the file: %s" % exc, key=key) from None
        size = attrs.get("fileSize")
        crc = recorded_crc(attrs.get("checksum"))
        if _in_place(target, None if size is None else int(size), crc):
            self.kept += 1
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".%s.%s.part" % (target.name, uuid.uuid4().hex[:8]))
        try:
            with open(tmp, "wb") as out:
                got, got_crc = self._fetch(key, location, id, out)
                out.flush()
                os.fsync(out.fileno())
            problems = []
            if size is not None and got != int(size):
                problems.append("%d bytes, the catalogue says fileSize %s" % (got, size))
            if crc is not None and crc != got_crc & 0xFFFFFFFF:
                problems.append("checksum %s, the catalogue says %s"
                                % (checksum_text(got_crc), attrs["checksum"]))
            if problems:
                raise DataFileError("the file at %s has %s" % (location, "; ".join(problems)),
                                    key=key)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.files += 1
        self.bytes += got

    def _fetch(self, key, location, id: int | None, out) -> tuple[int, int]:
        """The content into ``out``: from the data directory by location, or
        from the IDS by the Datafile's id, as the dump read it."""
        if isinstance(self.source, Path):
            try:
                src = open(location_path(self.source, location), "rb")
            except (OSError, BadLocation):
                raise DataFileError("no file at %s in %s" % (location, self.source),
                                    key=key) from None
            with src:
                return copy_counted(blocks_of(src), out)
        return self.source.get_data(id, out)



def _in_place(target: Path, size: int | None, crc: int | None) -> bool:
    """Is ``target`` already the file the catalogue describes?  Its size
    first (no read), then its CRC32 when one is recorded; with neither
    recorded nothing says it is, and it is fetched again."""
    if (size is None and crc is None) or not target.is_file():
        return False
    if size is not None and target.stat().st_size != size:
        return False
    return crc is None or counted(target)[1] & 0xFFFFFFFF == crc
