"""icat.server's export/import file as a data file format (``PORT``).

So that ``icatdata convert`` turns an icat.server export into a python-icat
dump and back, ``icatingest -f PORT`` reads one and ``icatdump -f PORT``
writes one.  The layout and its rules are :mod:`icatdump.port`'s (see
doc/port.md); this module only adapts them to the backend interface.

Reading: :class:`icatdump.port.PortReader` as it is (a chunk per
:data:`~icatdump.port.CHUNK_ROWS` rows of a table).  Writing: records come
in dump order, grouped by investigation; a port file is one table per type
in icat.server's order, so each type's rows go to a temporary file of their
own and the tables are written at :meth:`finalize` (memory stays bounded).
Embedded children become rows of their own type that name their parent.
References are written from the keys of the records: a key carries its
object's uniqueness-constraint values, so the port key columns are read
back out of it; an object of a type without a constraint is named in the
``?`` columns by its key in the dump (unique in the file).
"""

from __future__ import annotations

import tempfile

import icatdump
from icatdump import port
from icatdump.client import parse_unique_key
from icatdump.dumpfile import DumpFileWriter, Record
from icatdump.entity import Entity
from icatdump.keys import unquote
from icatdump.schema import ATTRIBUTE, ONE
from icatdump.types import to_python

#: Referenced objects rebuilt from their keys, kept at most (the hot ones are
#: few: facilities, types, parameter types).
_KEY_CACHE = 20_000


class PortDumpFileReader(port.PortReader):
    """Reads a port file (USER attributes; dates without zone as UTC)."""


class PortDumpFileWriter(DumpFileWriter):
    """Writes a port file of the records it is given (USER attributes)."""

    mode = "w"

    def __init__(self, client, outfile):
        super().__init__(client, outfile)
        self._format = port.PortWriter(self.outfile, self.schema, icatdump.GENERATOR)
        self._rows: dict[str, tempfile.SpooledTemporaryFile] = {}
        self._refs: dict[str, Entity] = {}
        self._unnamed = 0

    def head(self):
        self._format.start()

    def startdata(self):
        pass

    def write_record(self, key: str, record: Record):
        self._write(key, record, None)

    def _write(self, key: str, record: Record, parent) -> None:
        """A record's row, then its children's, each naming ``parent``'s object."""
        obj = self._entity(key, record, parent)
        rows = self._rows.get(record.type.name)
        if rows is None:
            rows = self._rows[record.type.name] = tempfile.SpooledTemporaryFile(
                1 << 20, mode="w+", encoding="utf-8", newline="\n")
        rows.write(self._format.row(obj) + "\n")
        for relation, children in record.children:
            back = (record.type.fields[relation].mapped_by, obj)
            for child in children:
                self._unnamed += 1
                self._write("%s_%d" % (child.type.name, self._unnamed), child, back)

    def finalize(self):
        for name in port.export_order(self.schema):
            self.outfile.write("\n%s\n" % port.heading(self.schema, name))
            rows = self._rows.pop(name, None)
            if rows is None:
                continue
            with rows:
                rows.seek(0)
                while True:
                    block = rows.read(1 << 16)
                    if not block:
                        break
                    self.outfile.write(block)

    def abort(self):
        for rows in self._rows.values():
            rows.close()
        self._rows.clear()
        super().abort()

    # -- records to entities -------------------------------------------------------
    def _entity(self, key: str, record: Record, parent) -> Entity:
        etype = record.type
        values = dict(record.attrs)
        for name, ref in record.refs:
            values[name] = self._referenced(etype.fields[name].type, ref)
        if parent is not None:
            values[parent[0]] = parent[1]
        obj = Entity(etype, values)
        if not etype.constraint:
            obj.id = key        # type: ignore[assignment]  # the "?" name: the dump's key
        return obj

    def _referenced(self, target: str, key: str) -> Entity:
        """The object a dump key names, as far as a port row needs it."""
        obj = self._refs.get(key)
        if obj is None:
            etype = self.schema[target]
            if not etype.constraint:
                obj = Entity(etype, {})
                obj.id = key    # type: ignore[assignment]
            else:
                obj = self._from_key(key)
            if len(self._refs) >= _KEY_CACHE:
                self._refs.clear()
            self._refs[key] = obj
        return obj

    def _from_key(self, key: str) -> Entity:
        etype, parts = parse_unique_key(self.schema, key)
        values: dict = {}
        for name, raw in parts.items():
            f = etype.fields.get(name)
            if f is None:       # "id" of a key naming an object by its id
                continue
            if f.kind == ONE:
                values[name] = self._from_key("%s_%s" % (f.type, raw))
            elif f.kind == ATTRIBUTE:
                values[name] = to_python(f, unquote(raw), etype.name)
        return Entity(etype, values)


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are a port file's: comment lines, then
    the version line ``1.0``."""
    text = head.lstrip(b"\xef\xbb\xbf")
    if text.startswith(b"# ICAT Export file"):
        return True         # whatever its version: the reader says what is wrong with it
    for line in text.split(b"\n")[:50]:
        line = line.strip()
        if line and not line.startswith(b"#"):
            return line == port.VERSION.encode()
    return False


reader = PortDumpFileReader
writer = PortDumpFileWriter
