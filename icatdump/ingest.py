"""The ingest engine: create a data file's objects in a catalogue.

python-icat makes one ``create`` call per top-level object.  Here objects are
collected into batches and created with one ``create_many`` call each (one
transaction in the embedded catalogue).  Objects of a batch may refer to
earlier objects of the same batch: file order is dependency order, and every
client's ``create_many`` accepts such references (the SOAP client sends the
referring objects in a later call, since ICAT can only refer by id).

Duplicate handling follows python-icat's ``--duplicate`` options, and goes
further so that an interrupted ingest can simply be run again:

* THROW: an object that exists already is an error.
* IGNORE: the existing object is used instead (later references resolve to
  it); its embedded children are matched one by one and created if missing.
* CHECK: like IGNORE, but every attribute given in the file must equal the
  catalogue's value, else it is an error.
* OVERWRITE: like IGNORE, but the file's attributes are written over the
  catalogue's.
"""

from __future__ import annotations

import time
from collections import ChainMap, Counter
from dataclasses import dataclass, field

from .client import Client, IcatError, ObjectExistsError, SearchResultError
from .dumpfile import DataFileError, DumpFileReader
from .entity import Entity
from .query import Query, literal
from .schema import ONE

DUPLICATE_MODES = ("THROW", "IGNORE", "CHECK", "OVERWRITE")


@dataclass
class IngestStats:
    """What an ingest did, for the summary line."""
    chunks: int = 0
    created: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    batches: int = 0
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        return sum(self.created.values()) + sum(self.skipped.values()) + sum(self.updated.values())


class Ingester:
    """Ingest everything a :class:`DumpFileReader` reads into ``client``."""

    def __init__(self, client: Client, reader: DumpFileReader, duplicate: str = "THROW",
                 batch_size: int = 500, progress=None):
        if duplicate not in DUPLICATE_MODES:
            raise ValueError("invalid duplicate mode %r" % duplicate)
        self.client = client
        self.reader = reader
        # Ingest never refers to an embedded child by id, so a client that
        # must search for those ids after createMany (SOAP) can skip it.
        if hasattr(client, "learn_child_ids"):
            client.learn_child_ids = False
        self.duplicate = duplicate
        self.batch_size = batch_size
        self.progress = progress
        self.stats = IngestStats()
        self._pending: list[tuple[str | None, Entity]] = []
        self._pending_count = 0

    def run(self) -> IngestStats:
        start = time.monotonic()
        reader = self.reader
        for chunk in reader.chunks():
            self.client.refresh()
            objindex = ChainMap({}, reader.objindex)
            for key, obj in reader.getobjs_from_data(chunk, objindex):
                reader.index_object(objindex, key, obj)
                self._add(key, obj)
            self._flush()
            reader.remember_created(objindex)
            self.stats.chunks += 1
            if self.progress:
                self.progress(self.stats)
        self.stats.seconds = time.monotonic() - start
        return self.stats

    # -- batching -----------------------------------------------------------
    def _add(self, key, obj: Entity):
        if self.duplicate != "THROW":
            existing = self._find_existing(obj)
            if existing is not None:
                self._flush()
                self._use_existing(key, obj, existing)
                return
        self._pending.append((key, obj))
        self._pending_count += obj.count()
        if self._pending_count >= self.batch_size:
            self._flush()

    def _flush(self):
        if not self._pending:
            return
        batch = self._pending
        self._pending, self._pending_count = [], 0
        objs = [obj for _, obj in batch]
        try:
            self.client.create_many(objs)
        except IcatError as exc:
            self._raise_for_batch(batch, exc)
        self.stats.batches += 1
        for obj in objs:
            self._count(obj, self.stats.created)

    def _raise_for_batch(self, batch, exc: IcatError):
        offset = exc.offset if exc.offset is not None and 0 <= exc.offset < len(batch) else None
        key = None
        if offset is not None:
            key, obj = batch[offset]
            key = key or obj.type.name
        elif len(batch) == 1:
            key = batch[0][0] or batch[0][1].type.name
        raise DataFileError("%s: %s" % (exc.type, exc.message), self.reader.name,
                            self.reader.chunk_number, None, key) from None

    def _count(self, obj: Entity, counter: Counter):
        counter[obj.type.name] += 1
        for _, child in obj.children():
            self._count(child, counter)

    # -- duplicates ---------------------------------------------------------
    def _find_existing(self, obj: Entity) -> Entity | None:
        """The catalogue's object that ``obj`` duplicates, if there is one."""
        etype = obj.type
        conditions = {}
        fields = etype.constraint or tuple(
            n for n in list(etype.attrs) + list(etype.ones) if obj.values.get(n) is not None)
        if not fields:
            return None
        for name in fields:
            f = etype.fields[name]
            value = obj.values.get(name)
            if f.kind == ONE:
                if value is None:
                    conditions[name] = "IS NULL"
                    continue
                if value.id is None:
                    return None     # refers to an object created in this run
                conditions[name + ".id"] = "= %d" % value.id
            elif value is None:
                conditions[name] = "IS NULL"
            else:
                conditions[name] = "= " + literal(value)
        found = self.client.search(Query(etype.name, conditions=conditions))
        if not found:
            return None
        if len(found) > 1 and etype.constraint:
            raise DataFileError("%s: %d objects match in the catalogue" % (etype.name, len(found)))
        return found[0]

    def _use_existing(self, key, obj: Entity, existing: Entity):
        etype = obj.type
        if self.duplicate == "CHECK":
            for name in etype.attrs:
                value = obj.values.get(name)
                if value is not None and existing.values.get(name) != value:
                    raise DataFileError(
                        "OBJECT_ALREADY_EXISTS: %s differs from the catalogue in %s: %r != %r"
                        % (etype.name, name, value, existing.values.get(name)),
                        self.reader.name, self.reader.chunk_number, None, key)
            self.stats.skipped[etype.name] += 1
        elif self.duplicate == "OVERWRITE":
            full = self.client.get(etype.name, existing.id, "INCLUDE 1")
            changed = False
            for name in etype.attrs:
                value = obj.values.get(name)
                if value is not None and full.values.get(name) != value:
                    full.values[name] = value
                    changed = True
            if changed:
                self.client.update(full)
                self.stats.updated[etype.name] += 1
            else:
                self.stats.skipped[etype.name] += 1
        else:
            self.stats.skipped[etype.name] += 1
        obj.id = existing.id
        # Descend: embedded children are matched (or created) one by one.
        for relname, child in list(obj.children()):
            child.values[etype.manys[relname].mapped_by] = obj
            self._add(None, child)
            self._flush()
        obj.truncate_relations()


def ingest(client: Client, reader: DumpFileReader, duplicate="THROW", **kw) -> IngestStats:
    """Convenience wrapper: ``Ingester(client, reader, ...).run()``."""
    return Ingester(client, reader, duplicate, **kw).run()
