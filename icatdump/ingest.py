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
  it); its embedded children are matched in turn and created if missing.
* CHECK: like IGNORE, but every attribute given in the file must equal the
  catalogue's value, else it is an error.
* OVERWRITE: like IGNORE, but the file's attributes are written over the
  catalogue's.

An object "exists already" when the catalogue has one with the same
uniqueness constraint.  Types without one (Rule, Job, Publication,
DataCollection, Study) are matched by content: every attribute and
many-to-one relation equal (absent ones absent), and for each relation in
which the file embeds children (a DataCollection's datasets, a Study's
investigations) the same children, compared by their attributes and
references.  Each catalogue object is matched at most once per run, so k
identical objects in a file stand for k objects in the catalogue.  Values
are compared by their schema type (a YAML ``true`` equals a stored
boolean; dates by instant).  Objects are looked up a batch at a time (see
:meth:`Ingester._look_up_many`), and the children of the objects found a
level at a time.

Each chunk is all or nothing in the embedded catalogue (a savepoint; the
commits of several chunks are grouped, see ``commit_objects``); with a
server, each createMany batch stands on its own.  The run stops at
the first error, and the exception carries a ``hint`` saying how much went
in and how to resume.  :meth:`Ingester.request_stop` (Ctrl-C) stops at the
next batch boundary.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import Counter
from dataclasses import dataclass, field

from .client import Client, IcatError
from .dumpfile import DumpFileReader
from .entity import Entity
from .errors import DataFileError
from .paging import batched, too_many_results
from .query import Query, literal
from .schema import MANY, ONE
from .types import ValueProblem, to_python

DUPLICATE_MODES = ("THROW", "IGNORE", "CHECK", "OVERWRITE")

#: "Not looked up yet" (see Ingester._add).
_UNKNOWN = object()


@dataclass
class IngestStats:
    """What an ingest did, for the summary line."""
    chunks: int = 0
    created: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        return sum(self.created.values()) + sum(self.skipped.values()) + sum(self.updated.values())


def _first_keys(keys: list[str], shown: int = 3) -> str:
    more = len(keys) - shown
    return ", ".join(keys[:shown]) + (", and %d more" % more if more > 0 else "")


class IngestInterrupted(KeyboardInterrupt):
    """The run stopped at a batch boundary because :meth:`Ingester.request_stop` was called."""


class Ingester:
    """Ingest everything a :class:`DumpFileReader` reads into ``client``."""

    #: The embedded catalogue commits after about this many objects (whole
    #: chunks; see :meth:`~icatdump.client.Client.commit_every`).  A process
    #: killed outright loses at most these, which running again creates.
    commit_objects = 10000

    def __init__(self, client: Client, reader: DumpFileReader, duplicate: str = "THROW",
                 batch_size: int = 500, progress=None, commit_objects: int | None = None,
                 uploader=None):
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
        if commit_objects is not None:
            self.commit_objects = commit_objects
        self.progress = progress
        #: With an :class:`icatdump.upload.Uploader`, new Datafiles go in
        #: through it (IDS put) instead of createMany.
        self.uploader = uploader
        self.stats = IngestStats()
        self._pending: list[tuple[str | None, Entity]] = []
        self._pending_count = 0
        self._pending_types: Counter = Counter()    # objects of the batch, by type
        # Catalogue objects matched by content in this run: (type, id).
        self._claimed: set[tuple[str, int]] = set()
        self._chunk_batches = 0
        # Keys of the objects a failed batch created before its error.
        self._created_before_error: list[str] = []
        self._stop = False
        # Objects read but not yet known to be new or existing (not THROW).
        self._undecided: list[tuple[str | None, Entity]] = []
        # Objects found in the catalogue whose children are still to match.
        self._found_parents: list[Entity] = []
        # The new objects of the chunk by uniqueness constraint (not THROW).
        self._new_in_chunk: dict[tuple, Entity] = {}

    def request_stop(self):
        """Stop at the next batch boundary (safe to call from a signal handler)."""
        self._stop = True

    def run(self) -> IngestStats:
        start = time.monotonic()
        try:
            self._run()
        except BaseException as exc:
            try:
                exc.hint = self.resume_hint(exc)
            except AttributeError:
                pass
            raise
        finally:
            self.stats.seconds = time.monotonic() - start
        return self.stats

    def _run(self):
        with self.client.commit_every(self.commit_objects), _fewer_collections():
            self._run_chunks()

    def _run_chunks(self):
        reader = self.reader
        for chunk in reader.iter_chunks():
            self._chunk_batches = 0
            # All batches of a chunk commit together (embedded catalogue).
            with self.client.transaction():
                for key, obj in chunk.objects():
                    if self.duplicate == "THROW":
                        self._add(key, obj)
                    else:
                        self._undecided.append((key, obj))
                        if len(self._undecided) >= self.batch_size:
                            self._decide()
                self._decide()
                self._flush()
            self._new_in_chunk.clear()
            reader.remember_created(chunk.index)
            self.stats.chunks += 1
            self._chunk_batches = 0
            if self.progress:
                self.progress(self.stats)
            self._check_stop()

    def _check_stop(self):
        if self._stop:
            raise IngestInterrupted("stopped at a batch boundary")

    def resume_hint(self, exc: BaseException | None = None) -> str:
        """How much went in and how to go on, for the message of a failed run.

        With a server, whatever was created before the error stays: a plain
        re-run would then fail on it, so it is never advised.
        """
        done = self.stats.chunks
        transactional = getattr(self.client, "transactional", False)
        partial = 0 if transactional else self._chunk_batches
        stray = [] if transactional else self._created_before_error
        went_in = []
        if done:
            went_in.append("%d chunk%s ingested" % (done, "" if done == 1 else "s"))
        if partial:
            went_in.append("%d batch%s of chunk %d ingested" % (
                partial, "" if partial == 1 else "es", done + 1))
        if stray:
            went_in.append("%d object%s of the failed batch of chunk %d exist%s (%s)" % (
                len(stray), "" if len(stray) == 1 else "s", done + 1,
                "s" if len(stray) == 1 else "", _first_keys(stray)))
        fix = "" if isinstance(exc, KeyboardInterrupt) else "fix the problem and "
        if getattr(exc, "icat_type", None) == "OBJECT_ALREADY_EXISTS" and self.duplicate == "THROW":
            todo = "to keep the objects that exist, run again with --duplicate IGNORE " \
                   "(or CHECK or OVERWRITE)"
        elif not went_in:
            todo = fix + "run again"
        elif self.duplicate != "THROW":
            todo = fix + "run the same command again to resume"
        else:
            todo = fix + "run again with --duplicate IGNORE to resume"
        return "%s; %s" % ("; ".join(went_in) or "nothing was ingested", todo)

    # -- batching -----------------------------------------------------------
    def _decide(self):
        """Go on with the undecided objects, in file order, each found in the
        catalogue or not; most were looked up together (:meth:`_look_up_many`)."""
        batch, self._undecided = self._undecided, []
        if not batch:
            return
        decided = self._look_up_many([obj for _, obj in batch])
        for key, obj in batch:
            self._add(key, obj, decided.get(id(obj), _UNKNOWN))
        self._descend()

    def _add(self, key, obj: Entity, existing=_UNKNOWN):
        """Queue ``obj`` for creation, or use the catalogue's object it
        duplicates (unless THROW).  ``existing``: that object, or None if it
        is known to be new; by default it is looked up here."""
        if self.duplicate != "THROW":
            if existing is _UNKNOWN or existing.__class__ is _Candidates:
                existing = self._find_existing(obj, existing)
            if existing is None:
                existing = self._defined_before(obj)
            if existing is not None:
                self._flush()
                self._use_existing(key, obj, existing)
                return
        self._pending.append((key, obj))
        uploads = _detach_datafiles(obj) if self.uploader is not None else ()
        self._pending_count += _tally(obj, self._pending_types)
        if self._pending_count >= self.batch_size:
            self._flush()
        for child in uploads:
            self._add(None, child)

    def _defined_before(self, obj: Entity) -> Entity | None:
        """The object of this chunk that ``obj`` defines a second time, if
        one with the same uniqueness constraint went in (or is about to).

        python-icat creates objects one at a time, so with IGNORE a file that
        defines an object twice uses the first for the second; here both
        would be looked up before either is created.  Related objects are
        compared by identity: a key names one object within a chunk.
        """
        etype = obj.type
        if not etype.constraint:
            return None     # matched by content: each counts (see _claimed)
        values, fields = obj.values, etype.fields
        sig = (etype.name,) + tuple(
            id(values.get(n)) if fields[n].kind == ONE else values.get(n)
            for n in etype.constraint)
        first = self._new_in_chunk.get(sig)
        if first is None:
            self._new_in_chunk[sig] = obj
        return first

    def _flush(self):
        if not self._pending:
            return
        batch, types = self._pending, self._pending_types
        self._pending, self._pending_count, self._pending_types = [], 0, Counter()
        objs = [obj for _, obj in batch]
        try:
            if self.uploader is None:
                self.client.create_many(objs)
            else:
                self._create_and_upload(batch)
        except (IcatError, ConnectionError) as exc:
            # A server may have created part of the batch: createMany calls
            # are split where objects refer to each other (SOAP client).
            self._created_before_error = [key or obj.type.name for key, obj in batch
                                          if obj.id is not None]
            if isinstance(exc, IcatError):
                self._raise_for_batch(batch, exc)
            # Say where: with a server, the batches before this one stay.
            raise ConnectionError("%s, chunk %d, batch %d: %s" % (
                self.reader.name, self.reader.chunk_number, self._chunk_batches + 1,
                exc)) from None
        self._chunk_batches += 1
        self.stats.created.update(types)
        self._check_stop()

    def _create_and_upload(self, batch):
        """A batch in file order: Datafiles through the uploader, each run
        of other objects with one createMany."""
        start = 0
        while start < len(batch):
            end = start
            if batch[start][1].type.name == "Datafile":
                self.uploader.upload(*batch[start])
                start += 1
                continue
            while end < len(batch) and batch[end][1].type.name != "Datafile":
                end += 1
            try:
                self.client.create_many([obj for _, obj in batch[start:end]])
            except IcatError as exc:
                if exc.offset is not None:
                    exc.offset += start     # an index into the whole batch
                raise
            start = end

    def _raise_for_batch(self, batch, exc: IcatError):
        offset = exc.offset if exc.offset is not None and 0 <= exc.offset < len(batch) else None
        key = None
        if offset is not None:
            key, obj = batch[offset]
            key = key or obj.type.name
        elif len(batch) == 1:
            key = batch[0][0] or batch[0][1].type.name
        err = DataFileError("%s: %s" % (exc.type, exc.message), self.reader.name,
                            self.reader.chunk_number, None, key)
        err.icat_type = exc.type
        raise err from None

    # -- duplicates ---------------------------------------------------------
    def _look_up_many(self, objs: list[Entity]) -> dict:
        """The catalogue's objects that ``objs`` duplicate, found together.

        Re-running an ingest (to resume it) asks for every object in the file;
        one search per object made a re-run take four times the first run.
        Here they are looked up a batch at a time: grouped by all compared
        fields but one, each group is one search with ``IN`` over that one
        (the datafiles of one dataset, by name).  An object that refers to
        another of the batch waits until that one is decided: if it is new,
        so is this one.  Returns ``id(obj)`` -> the existing object or None
        (new); for a type matched by content, the :class:`_Candidates` that
        :meth:`_find_existing` chooses from in file order.  Objects left out
        (a value a query cannot compare) are looked up one by one.
        """
        decided: dict[int, Entity | None] = {}
        in_batch = {id(o) for o in objs}
        todo = list(objs)
        while todo:
            ready, waiting = [], []
            for obj in todo:
                state = self._references_known(obj, decided, in_batch)
                if state is None:
                    decided[id(obj)] = None     # refers to a new object: new too
                elif state:
                    ready.append(obj)
                else:
                    waiting.append(obj)
            if not ready:
                if len(waiting) == len(todo):
                    break           # waiting for objects decided one by one
                todo = waiting
                continue
            self._search_together(ready, decided)
            todo = [o for o in waiting if id(o) not in decided]
        return decided

    @staticmethod
    def _references_known(obj: Entity, decided, in_batch) -> bool | None:
        """Whether the objects ``obj``'s constraint refers to are in the
        catalogue (True), one is new (None), or one is still undecided."""
        etype = obj.type
        for name in _compared_fields(etype):
            if etype.fields[name].kind != ONE:
                continue
            ref = obj.values.get(name)
            if ref is None or ref.id is not None:
                continue
            key = id(ref)
            if key in decided:
                found = decided[key]
                if found is None:
                    return None
                if found.__class__ is _Candidates:
                    return False    # which one it is is chosen in file order
            elif key in in_batch:
                return False
            else:
                return None     # created in this run, not yet flushed: new
        return True

    def _search_together(self, objs: list[Entity], decided: dict):
        by_type: dict[str, list[Entity]] = {}
        for obj in objs:
            by_type.setdefault(obj.type.name, []).append(obj)
        for group in by_type.values():
            etype = group[0].type
            compared = _compared_fields(etype)
            exact = [etype.fields[n] for n in compared
                     if etype.fields[n].kind != ONE and etype.fields[n].type in ("Date", "Double")]
            others = [n for n in compared if etype.fields[n] not in exact]
            values = {n: [self._constraint_value(o, n, decided) for o in group] for n in others}
            # IN takes the field with the most distinct values among the
            # relations, strings and integers (a boolean or an enum value in
            # an IN list is not plain JPQL everywhere).
            spread = [(len(set(v) - {None}), n) for n, v in values.items()
                      if etype.fields[n].kind == ONE
                      or etype.fields[n].type in ("String", "Long", "Integer")]
            if not spread:
                continue        # nothing to search with IN: one by one
            varying = max(spread)[1]
            is_ref = etype.fields[varying].kind == ONE
            searches: dict[tuple, list[int]] = {}     # fixed conditions -> members
            for i, obj in enumerate(group):
                if values[varying][i] is None:
                    continue    # "IS NULL" cannot go into IN: one by one
                pinned = []
                for n in others:
                    if n == varying:
                        continue
                    v = values[n][i]
                    ref = etype.fields[n].kind == ONE
                    pinned.append((n + ".id" if ref and v is not None else n,
                                   "IS NULL" if v is None else
                                   "= %d" % v if ref else "= " + literal(v)))
                searches.setdefault(tuple(pinned), []).append(i)
            # A search returns an object per member (two with the INCLUDE of
            # a relation): parts stay well under the server's maxEntities,
            # and one refused anyway is tried again in halves.
            size = max(1, min(500, self.client.max_entities // (4 if is_ref else 2)))
            parts = [(fixed, part) for fixed, members in searches.items()
                     for part in batched(members, size)]
            while parts:
                fixed, part = parts.pop()
                wanted = sorted({values[varying][i] for i in part})
                conditions = dict(fixed)
                conditions[varying + ".id" if is_ref else varying] = "IN (%s)" % ", ".join(
                    str(v) if is_ref else literal(v) for v in wanted)
                try:
                    found = self.client.search(Query(etype.name, conditions=conditions,
                                                     includes=[varying] if is_ref else []))
                except IcatError as exc:
                    if len(part) == 1 or not too_many_results(exc):
                        raise
                    half = len(part) // 2
                    parts += [(fixed, part[:half]), (fixed, part[half:])]
                    continue
                # Which result is which object's: by the values the
                # search did not pin down, compared by schema type.
                by_values: dict[tuple, list[Entity]] = {}
                for c in found:
                    v = c.values.get(varying)
                    by_values.setdefault(self._matched(
                        etype, varying, v.id if is_ref and v is not None else v, exact,
                        c.values), []).append(c)
                matches_of = {i: by_values.get(self._matched(
                    etype, varying, values[varying][i], exact, group[i].values), [])
                    for i in part}
                # A result no object took: the server compares otherwise
                # (MySQL's usual collation ignores case and accents).  Its
                # objects without a match are then looked up one by one, as
                # python-icat would, and the server decides.
                taken = {id(c) for matches in matches_of.values() for c in matches}
                unsure = etype.constraint and any(id(c) not in taken for c in found)
                for i, matches in matches_of.items():
                    obj = group[i]
                    if not etype.constraint:
                        decided[id(obj)] = _Candidates(matches)
                        continue
                    if matches or not unsure:
                        decided[id(obj)] = self._the_one(etype, matches)

    @staticmethod
    def _matched(etype, varying, value, exact, values) -> tuple:
        """What tells the results of a search together apart."""
        f = etype.fields[varying]
        return (value if f.kind == ONE else _canonical(f, value),) + tuple(
            _canonical(e, values.get(e.name)) for e in exact)

    @staticmethod
    def _constraint_value(obj: Entity, name: str, decided):
        """A constraint field's value as a search compares it: an attribute's
        value, or the id of the related object (found in the catalogue)."""
        value = obj.values.get(name)
        if obj.type.fields[name].kind != ONE or value is None:
            return value
        if value.id is not None:
            return value.id
        return decided[id(value)].id

    def _find_existing(self, obj: Entity, found=_UNKNOWN) -> Entity | None:
        """The catalogue's object that ``obj`` duplicates, if there is one.

        By the uniqueness constraint, or by content for types without one
        (see the module docstring).  Dates and floats are compared in Python,
        by schema type: a JPQL timestamp literal has no fractional seconds.
        ``found``: the catalogue's objects with the same values, if they
        were searched for already (:meth:`_look_up_many`).
        """
        etype = obj.type
        by_content = not etype.constraint
        if found is _UNKNOWN:
            found = self._search_one(obj)
            if found is None:
                return None     # refers to an object created in this run
        if not by_content:
            return self._the_one(etype, found)
        found = [c for c in found if (etype.name, c.id) not in self._claimed]
        if found and any(obj.values.get(n) for n in etype.manys):
            found = self._same_children(obj, found)
        if not found:
            return None
        self._claimed.add((etype.name, found[0].id))
        return found[0]

    def _the_one(self, etype, found: list[Entity]) -> Entity | None:
        """The catalogue's object with a uniqueness constraint's values, or
        None; more than one means the catalogue breaks its own constraint."""
        if len(found) > 1:
            raise DataFileError("%s: %d objects match in the catalogue"
                                % (etype.name, len(found)), self.reader.name,
                                self.reader.chunk_number)
        return found[0] if found else None

    def _search_one(self, obj: Entity) -> list[Entity] | None:
        """The catalogue's objects with ``obj``'s compared values (one
        search), or None if it refers to an object created in this run."""
        etype = obj.type
        conditions, exact = {}, []
        for name in _compared_fields(etype):
            f = etype.fields[name]
            value = obj.values.get(name)
            if f.kind == ONE:
                if value is None:
                    conditions[name] = "IS NULL"
                elif value.id is None:
                    return None
                else:
                    conditions[name + ".id"] = "= %d" % value.id
            elif value is None:
                conditions[name] = "IS NULL"
            elif f.type in ("Date", "Double"):
                exact.append((f, value))
            else:
                conditions[name] = "= " + literal(value)
        return [c for c in self.client.search(Query(etype.name, conditions=conditions))
                if all(_same(f, v, c.values.get(f.name)) for f, v in exact)]

    def _same_children(self, obj: Entity, candidates: list[Entity]) -> list[Entity]:
        """The candidates whose children equal ``obj``'s in every relation
        in which ``obj`` has embedded children."""
        etype = obj.type
        ids = ", ".join(str(c.id) for c in candidates)
        theirs: dict[int | None, dict[str, list]] = {c.id: {} for c in candidates}
        mine = {}
        for name, f in etype.manys.items():
            kids = obj.values.get(name)
            if not kids:
                continue
            sigs = [_signature(k, f.mapped_by) for k in kids]
            if None in sigs:
                return []   # a child refers to a new object: this one is new too
            mine[name] = sorted(sigs)
            for c in theirs.values():
                c[name] = []
            for kid in self.client.search("SELECT c FROM %s c JOIN c.%s p WHERE p.id IN (%s) "
                                          "INCLUDE 1" % (f.type, f.mapped_by, ids)):
                parent = kid.values.get(f.mapped_by)
                if parent is not None and parent.id in theirs:
                    theirs[parent.id][name].append(_signature(kid, f.mapped_by))
        return [c for c in candidates
                if all(sorted(theirs[c.id][n]) == sigs for n, sigs in mine.items())]

    def _use_existing(self, key, obj: Entity, existing: Entity):
        etype = obj.type
        # An uploaded Datafile's location is the IDS's, not the file's.
        kept = self.uploader.kept_fields(etype.name) if self.uploader is not None else ()
        if self.duplicate == "CHECK":
            for name in etype.attrs:
                value = obj.values.get(name)
                if name in kept:
                    continue
                if value is not None and not _same(etype.fields[name], value,
                                                   existing.values.get(name)):
                    err = DataFileError(
                        "OBJECT_ALREADY_EXISTS: %s differs from the catalogue in %s: %r != %r"
                        % (etype.name, name, value, existing.values.get(name)),
                        self.reader.name, self.reader.chunk_number, None, key)
                    # icat.server's import fails a CHECK the same way (VALIDATION).
                    err.icat_type = "VALIDATION"
                    raise err
            self.stats.skipped[etype.name] += 1
        elif self.duplicate == "OVERWRITE":
            full = self.client.get(etype.name, existing.id, "INCLUDE 1")
            changed = False
            for name in etype.attrs:
                value = obj.values.get(name)
                if name not in kept and value is not None and not _same(
                        etype.fields[name], value, full.values.get(name)):
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
        self._found_parents.append(obj)     # its children: see _descend

    def _descend(self):
        """Match the embedded children of the objects found in the catalogue
        (and create the missing ones), a level at a time: the children of
        all those objects are looked up together."""
        while self._found_parents:
            parents, self._found_parents = self._found_parents, []
            children = []
            for parent in parents:
                manys = parent.type.manys
                for relname, child in parent.children():
                    child.values[manys[relname].mapped_by] = parent
                    children.append(child)
                parent.truncate_relations()
            decided = self._look_up_many(children)
            for child in children:
                self._add(None, child, decided.get(id(child), _UNKNOWN))


@contextlib.contextmanager
def _fewer_collections():
    """Run Python's cycle collector less often inside the ``with`` block.

    A chunk's parsed records and objects stay alive while it is ingested --
    a YAML chunk is one document, composed whole -- so the collector's
    default thresholds promote them and then walk them again and again in
    full collections (doc/performance.md has the figures).  Reference
    cycles are rare here (a found object and its children) and are still
    collected, every 50000 allocations.  The thresholds are put back
    afterwards.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 50000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _detach_datafiles(obj: Entity) -> list[Entity]:
    """Take the Datafiles embedded in ``obj`` out of it (a Dataset's), each
    referring to it instead, so that each is uploaded on its own."""
    detached = []
    for name, f in obj.type.manys.items():
        if f.type == "Datafile" and obj.values.get(name):
            for child in obj.values.pop(name):
                child.values[f.mapped_by] = obj
                detached.append(child)
    return detached


def _tally(obj: Entity, counter: Counter) -> int:
    """Count ``obj`` and its embedded descendants by type; return how many.

    One walk gives both the batch size and the statistics.
    """
    counter[obj.type.name] += 1
    n = 1
    values = obj.values
    for name in obj.type.manys:
        kids = values.get(name)
        if kids:
            for kid in kids:
                n += _tally(kid, counter)
    return n


def _compared_fields(etype) -> tuple:
    """The fields by which a file's object is found in the catalogue: its
    uniqueness constraint, else (matched by content) every attribute and
    many-to-one relation."""
    return etype.constraint or tuple(etype.attrs) + tuple(etype.ones)


class _Candidates(list):
    """Catalogue objects with the same content as a file's object, found by
    :meth:`Ingester._look_up_many`; which one it is is chosen in file order."""


def _canonical(f, value):
    """A value in its schema type's canonical form (stored 1 -> True, any
    offset -> UTC), or the value itself if it does not convert."""
    try:
        return to_python(f, value)
    except ValueProblem:
        return value


def _same(f, a, b) -> bool:
    return _canonical(f, a) == _canonical(f, b)


def _signature(child: Entity, back: str):
    """A child's attributes and references (by id), its parent left out;
    None if it refers to an object not yet created."""
    sig = []
    for name, f in child.type.fields.items():
        if name == back or f.kind == MANY:
            continue
        value = child.values.get(name)
        if f.kind == ONE:
            if value is not None and value.id is None:
                return None
            sig.append((name, value.id if value is not None else None))
        else:
            value = _canonical(f, value)
            sig.append((name, "" if value is None else repr(value)))
    return tuple(sig)


def ingest(client: Client, reader: DumpFileReader, duplicate: str = "THROW",
           **kw) -> IngestStats:
    """Convenience wrapper: ``Ingester(client, reader, ...).run()``."""
    return Ingester(client, reader, duplicate, **kw).run()
