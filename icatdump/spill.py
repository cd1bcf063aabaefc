"""Sorting more than fits in memory: sorted runs on disk, merged back.

A dump writes each group of objects (the datafiles of one dataset) in
python-icat's order, which only a sort in Python gives (see
``DumpFileWriter.writeobjs``).  A group too big to hold is sorted a run at a
time; each run goes to an anonymous temporary file as pickled entries, and
the runs are merged lazily.  Memory is then one run while sorting and one
entry per run while merging, whatever the size of the group.

An entry's payload is plain data (types by name, so a pickle does not drag
the schema along): a :class:`~icatdump.records.Record`, or, for a writer
that serializes objects itself (python-icat's ``writeobj``), the object's
tree as loaded.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from operator import itemgetter
from typing import Iterator

from .entity import Entity
from .records import Record
from .schema import MANY, ONE

_first = itemgetter(0)


class SpilledRuns:
    """Sorted runs of ``(sort key, payload...)`` tuples kept in temporary files.

    Use as a context manager, so that the files go away whatever happens.
    """

    def __init__(self):
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, entries):
        """Write one run; ``entries`` must already be sorted by their first item.

        A full disk is reported as the place the runs go to (``TMPDIR``),
        which an operator can change.
        """
        try:
            f = tempfile.TemporaryFile(prefix="icatdump-sort-")
            self._files.append(f)
            # One pickle per entry, each with its own memo: a pickler and an
            # unpickler kept for the whole run would each hold every entry.
            for entry in entries:
                pickle.dump(entry, f, pickle.HIGHEST_PROTOCOL)
            f.flush()
        except OSError as exc:
            raise OSError(exc.errno, "cannot keep the sorted runs of a big group of objects "
                          "there: %s (set TMPDIR to a roomier place)" % exc.strerror,
                          tempfile.gettempdir()) from None

    def merged(self) -> Iterator[tuple]:
        """All entries of all runs in order; ties keep the order of the runs
        (so the result is that of one stable sort)."""
        for f in self._files:
            f.seek(0)
        return heapq.merge(*(_entries(f) for f in self._files), key=_first)

    def close(self):
        for f in self._files:
            f.close()
        self._files = []


def _entries(f) -> Iterator[tuple]:
    while True:
        try:
            yield pickle.load(f)
        except EOFError:
            return


def plain_record(record: Record) -> tuple:
    """A record as plain data (its type by name), for a spilled run."""
    return (record.type.name, record.attrs, record.refs,
            [(rel, [plain_record(c) for c in items]) for rel, items in record.children],
            record.id)


def record_from_plain(plain: tuple, schema) -> Record:
    name, attrs, refs, children, id = plain
    return Record(schema[name], attrs, refs,
                  [(rel, [record_from_plain(c, schema) for c in items])
                   for rel, items in children], id)


def plain_entity(obj: Entity) -> tuple:
    """An object with the related objects it holds as plain data, for a
    spilled run (a related object shared by several is repeated in each)."""
    fields = obj.type.fields
    values = {}
    for name, value in obj.values.items():
        kind = fields[name].kind
        if kind == ONE:
            value = plain_entity(value) if value is not None else None
        elif kind == MANY:
            value = [plain_entity(c) for c in value] if value is not None else None
        values[name] = value
    return obj.type.name, obj.id, values


def entity_from_plain(plain: tuple, schema) -> Entity:
    name, id_, values = plain
    etype = schema[name]
    fields = etype.fields
    for fname, value in values.items():
        if value is None:
            continue
        kind = fields[fname].kind
        if kind == ONE:
            values[fname] = entity_from_plain(value, schema)
        elif kind == MANY:
            values[fname] = [entity_from_plain(c, schema) for c in value]
    return Entity(etype, values, id_)
