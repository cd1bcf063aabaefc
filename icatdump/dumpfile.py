"""Dump files: the format-independent half of reading and writing them.

A dump file is a header followed by *chunks*; each chunk holds object
definitions that refer to each other by key (ICAT-FACTS §4, §5).  The classes
here own everything that does not depend on the format:

* :class:`DumpFileReader` turns the raw records a backend parses into
  :class:`~icatdump.entity.Entity` objects: it checks names against the
  schema, converts values by their schema type and resolves references
  through the chunk's key index, the retained index and the catalogue.
* :class:`DumpFileWriter` runs the queries of a chunk, orders the objects as
  python-icat does, assigns keys (unique or generic numbered ones) and hands
  each object to the backend as a :class:`Record` with its references
  already turned into keys.
* The backend registry: :func:`register_backend`, :data:`Backends`,
  :func:`open_dumpfile`, and discovery of plugin backends through the
  ``icatdump.backends`` entry-point group.

A backend therefore only parses (``getdata`` + ``parse_chunk``) and
serializes (``head`` + ``startdata`` + ``write_record`` + ``finalize``).
The method names of python-icat's ``icat.dumpfile`` are all kept.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import queue
import sys
import tempfile
import threading
from collections import ChainMap, OrderedDict
from dataclasses import dataclass, field
from itertools import chain, islice
from operator import itemgetter
from typing import Any, Iterator

from .client import Client, IcatError, SearchResultError
from .entity import DataConsistencyError, Entity
from .keys import KeyError_, is_generic
from .query import Query, literal
from .schema import ATTRIBUTE, MANY, ONE, EntityType
from .spill import SpilledRuns
from .types import ValueProblem, converter


class DataFileError(ValueError):
    """A problem with the content of a data file, with where it is.

    ``str()`` gives one line: file, chunk, line, key, then the cause.
    """

    def __init__(self, cause, file=None, chunk=None, line=None, key=None):
        super().__init__(cause)
        self.cause, self.file, self.chunk, self.line, self.key = cause, file, chunk, line, key

    def __str__(self):
        where = []
        if self.file:
            where.append(str(self.file))
        if self.chunk:
            where.append("chunk %d" % self.chunk)
        if self.line:
            where.append("line %d" % self.line)
        if self.key:
            where.append(self.key)
        cause = " ".join(str(self.cause).split())      # parsers' messages may span lines
        return "%s: %s" % (", ".join(where), cause) if where else cause


def retained_types(schema) -> frozenset[str]:
    """Entity types whose keys stay valid across chunks.

    They have no uniqueness constraint (so a later chunk cannot find them in
    the catalogue by key) but have one-to-many relations (so they are worth
    referring to): DataCollection and Study.
    """
    return frozenset(et.name for et in schema if et.manys and et.key_fields == ("id",))


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

@dataclass
class RawRef:
    """A many-to-one reference as written in a file: by key or by attributes.

    ``attrs`` (XML only) maps attribute paths to values; a path ending in
    ``.ref`` holds a key (``investigation.ref="inv_1"``).
    """
    key: str | None = None
    attrs: dict | None = None


@dataclass
class RawObject:
    """One object definition as a backend parsed it, not yet checked.

    ``fields`` is a list of ``(name, value)``; a value is a scalar (str, int,
    float, bool, datetime, None), a :class:`RawRef`, a key string (for a
    many-to-one relation), a child :class:`RawObject` or a list of them.
    ``ref_only`` marks an XML ``<xxxRef id=...>`` declaration that names an
    existing object instead of defining a new one.
    """
    tag: str
    key: str | None = None
    fields: list = field(default_factory=list)
    line: int | None = None
    ref_only: bool = False


class DumpFileReader:
    """Base class of the backends that read a data file.

    ``infile`` is a file object opened in :attr:`mode`, a path, or ``"-"``
    for standard input.  Subclasses implement :meth:`getdata` (iterate over
    chunks) and :meth:`parse_chunk` (iterate over a chunk's
    :class:`RawObject` records).
    """

    mode = "r"

    #: How many resolved references are kept across chunks.  The hot ones
    #: (facility, types, parameter types, users) stay in by use; 20000 keys
    #: take a few MiB, so a 10^6-object ingest needs no more memory than a
    #: 10^5-object one (measured: bench/run.py --sizes 100000 1000000).
    cache_size = 20_000

    def __init__(self, client: Client, infile):
        self.client = client
        self.schema = client.schema
        self._closefile = False
        if hasattr(infile, "read"):
            self.infile = infile
            self.name = getattr(infile, "name", "<stream>")
        elif infile == "-":
            self.infile = sys.stdin.buffer if "b" in self.mode else sys.stdin
            self.name = "<stdin>"
        else:
            self.name = os.fspath(infile)
            self.infile = _input_stream(self.name, self.mode)
            self._closefile = True
        self._retain = retained_types(self.schema)
        self.objindex: dict = {}
        self.chunk_number = 0
        # References resolved in the catalogue, kept across chunks: static
        # data (Facility, ParameterType, User...) is searched once per run.
        self._ref_cache = RefCache(self.cache_size)
        self._specs: dict[tuple, dict] = {}     # see field_specs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._closefile:
            self.infile.close()
            self._closefile = False

    # -- backend interface ----------------------------------------------------
    def getdata(self) -> Iterator[Any]:
        """Iterate over the chunks of the file (backend-specific objects)."""
        raise NotImplementedError

    def parse_chunk(self, data) -> Iterator[RawObject]:
        """Iterate over the object definitions of one chunk, in restore order."""
        raise NotImplementedError

    # -- python-icat's API ----------------------------------------------------
    def getobjs_from_data(self, data, objindex) -> Iterator[tuple[str | None, Entity]]:
        """Iterate over ``(key, object)`` for the objects of one chunk.

        Objects are new (not yet created); their references are resolved.
        ``<xxxRef>`` declarations are resolved and indexed, not yielded.
        """
        lines = {}      # key -> line: a key defined twice would shadow the first
        lookup = _index_getter(objindex)
        for raw in self._located(self.parse_chunk(data)):
            key = raw.key
            if key:
                if key in lines:
                    first = lines[key]
                    raise DataFileError("key defined twice in the chunk%s"
                                        % (" (first on line %d)" % first if first else ""),
                                        self.name, self.chunk_number, raw.line, key)
                lines[key] = raw.line
            obj = self.read_object(raw, objindex, lookup)
            if obj is not None:
                yield key, obj

    def read_object(self, raw: RawObject, objindex, lookup=None) -> Entity | None:
        """One record as :meth:`getobjs_from_data` reads it: built, or indexed
        if it is an ``<xxxRef>`` declaration (then None).

        A hook for tools that go on after a bad object (``icatdata check``);
        errors are :class:`DataFileError` naming file, chunk, line and key.
        ``lookup`` is ``objindex.get`` made quick (see :func:`_index_getter`),
        passed by a caller that reads many objects with the same index.
        """
        try:
            if raw.ref_only:
                if raw.key:
                    attrs = dict(raw.fields)
                    ref = RawRef(key=attrs["ref"]) if "ref" in attrs else RawRef(attrs=attrs)
                    objindex[raw.key] = self._resolve_ref(
                        self._entity_type(_ref_tag(raw.tag)).name, ref, objindex)
                return None
            etype = self.schema.by_instance.get(raw.tag) or self._entity_type(raw.tag)
            return self._build(etype, raw, objindex, None, lookup)
        except DataFileError as exc:
            exc.line = exc.line or raw.line
            exc.key = exc.key or raw.key
            exc.chunk = exc.chunk or self.chunk_number
            exc.file = exc.file or self.name
            raise
        except (ValueProblem, KeyError_, SearchResultError, DataConsistencyError) as exc:
            raise DataFileError(str(exc), self.name, self.chunk_number, raw.line, raw.key) from None

    def getobjs(self, objindex=None) -> Iterator[Entity]:
        """Iterate over all objects of the file, as python-icat does.

        Each object is indexed under its key once the caller has processed
        it (created it); its embedded children are then dropped to save
        memory.  Local keys are valid within their chunk only, except for
        the retained types (DataCollection, Study).
        """
        reset = objindex is None
        for chunk in self.chunks():
            self.client.refresh()
            if reset:
                objindex = ChainMap({}, self.objindex)
            for key, obj in self.getobjs_from_data(chunk, objindex):
                yield obj
                obj.truncate_relations()
                if key:
                    if obj.type.name in self._retain:
                        self.objindex[key] = obj
                    else:
                        objindex[key] = obj

    def chunks(self) -> Iterator[Any]:
        """Iterate over the chunks, keeping :attr:`chunk_number` current."""
        self.chunk_number = 0
        chunks = self.getdata()
        while True:
            try:
                data = next(chunks)
            except StopIteration:
                return
            except DataFileError as exc:
                # A backend's syntax error is in the chunk being read.
                self._locate(exc, self.chunk_number + 1)
                raise
            self.chunk_number += 1
            yield data

    def _located(self, records: Iterator[RawObject]) -> Iterator[RawObject]:
        """Pass a backend's records on, naming file and chunk in its errors."""
        while True:
            try:
                raw = next(records)
            except StopIteration:
                return
            except DataFileError as exc:
                self._locate(exc, self.chunk_number)
                raise
            yield raw

    def _locate(self, exc: DataFileError, chunk: int):
        exc.file = exc.file or self.name
        exc.chunk = exc.chunk or chunk or None

    def index_object(self, objindex, key, obj):
        """Register a just-read object under its key (before it is created)."""
        if key:
            if obj.type.name in self._retain:
                self.objindex[key] = obj
            elif type(objindex) is ChainMap:
                objindex.maps[0][key] = obj     # what ChainMap's (Python) __setitem__ does
            else:
                objindex[key] = obj

    def remember_created(self, objindex):
        """Keep the unique keys of a chunk's created objects for later chunks.

        Their keys are valid in the whole catalogue, so a later reference to
        one (a data collection naming a dataset) needs no search.  Local
        names (``id="inv_1"``) and generic keys stay chunk-local, as in
        python-icat.
        """
        local = objindex.maps[0] if isinstance(objindex, ChainMap) else objindex
        created = []
        for key, obj in local.items():
            if obj.id is None:
                continue
            prefix = obj.type.name + "_"
            # A generic key is the prefix and eight digits: longer keys need
            # no regex match.
            if key.startswith(prefix) and (len(key) > len(prefix) + 9 or not is_generic(key)):
                created.append((key, obj))
        self._ref_cache.remember(created)

    # -- building entities ------------------------------------------------------
    def _entity_type(self, tag) -> EntityType:
        try:
            return self.schema.by_instance_name(tag)
        except KeyError:
            raise DataFileError("unknown entity type '%s'" % tag) from None

    def field_specs(self, etype: EntityType, parent_rel: str | None = None) -> dict:
        """How each name a file may use in an ``etype`` object is read.

        Maps field names and their aliases to ``(field name, kind, how)``;
        ``how`` is the value converter of an attribute, the target type name
        of a many-to-one relation, or the child :class:`EntityType` of a
        one-to-many relation.  An embedded child may not name its parent, so
        ``parent_rel`` (the relation to the parent) is left out.  Made once
        per type and reader: deriving these schema facts again for every
        object cost more than the reading.
        """
        specs = self._specs.get((etype.name, parent_rel))
        if specs is None:
            specs = {}
            for fname, f in etype.fields.items():
                if f.kind == ATTRIBUTE:
                    kind, how = ATTRIBUTE, converter(f, etype.name)
                elif f.kind == ONE:
                    kind, how = ONE, f.type
                else:
                    kind, how = MANY, self.schema[f.type]
                specs[fname] = (fname, kind, how)
            for alias, fname in etype.aliases.items():
                if fname in specs:
                    specs[alias] = specs[fname]
            if parent_rel is not None:
                specs = {name: spec for name, spec in specs.items() if spec[0] != parent_rel}
            self._specs[(etype.name, parent_rel)] = specs
        return specs

    def _build(self, etype: EntityType, raw: RawObject, objindex, parent_rel=None,
               lookup=None) -> Entity:
        values = {}
        specs = self._specs.get((etype.name, parent_rel)) or self.field_specs(etype, parent_rel)
        if lookup is None:
            lookup = _index_getter(objindex)
        for name, value in raw.fields:
            spec = specs.get(name)
            if spec is None:
                raise DataFileError("invalid attribute '%s' in %s" % (name, etype.instance_name),
                                    line=raw.line)
            fname, kind, how = spec
            if kind is ATTRIBUTE:
                if value.__class__ is not str and isinstance(value, (RawRef, RawObject)):
                    raise DataFileError("%s.%s: expected a value, got a reference or object"
                                        % (etype.name, fname), line=raw.line)
                values[fname] = how(value)
            elif kind is ONE:
                cls = value.__class__
                if cls is RawRef:
                    key = value.key
                elif cls is str:
                    if not value:
                        continue
                    key = value
                elif value is None:
                    continue
                else:
                    key = getattr(value, "key", None)
                if key is not None:
                    # Most references name an object of the same chunk or
                    # one found before (the order of _resolve_ref).
                    obj = lookup(key)
                    if obj is None:
                        obj = self.objindex.get(key)
                        if obj is None:
                            obj = self._ref_cache.get(key)
                    if obj is not None and obj.type.name == how:
                        values[fname] = obj
                        continue
                    value = RawRef(key=key)
                if not isinstance(value, RawRef):
                    raise DataFileError("%s.%s: expected a reference to a %s"
                                        % (etype.name, fname, how), line=raw.line)
                values[fname] = self._resolve_ref(how, value, objindex, lookup)
            else:
                children = value if isinstance(value, list) else [value]
                built = values.setdefault(fname, [])
                back = etype.fields[fname].mapped_by
                for child in children:
                    if isinstance(child, dict):
                        child = RawObject(how.instance_name, None, list(child.items()), raw.line)
                    if not isinstance(child, RawObject):
                        raise DataFileError("%s.%s: expected embedded %s objects"
                                            % (etype.name, fname, how.instance_name),
                                            line=raw.line)
                    built.append(self._build(how, child, objindex, back, lookup))
        return Entity(etype, values)

    def _resolve_ref(self, target: str, ref: RawRef, objindex, lookup=None) -> Entity:
        """The object a reference names: chunk index, retained index, cache, catalogue."""
        if ref.key is not None:
            key = ref.key
            obj = (lookup or _index_getter(objindex))(key)
            if obj is None:
                obj = self.objindex.get(key)
            if obj is None:
                obj = self._ref_cache.get(key)
            if obj is None:
                if is_generic(key):
                    raise DataFileError("reference '%s' is not defined earlier in the file" % key)
                try:
                    # The cache doubles as the key index of the search, so the
                    # nested parts of a key (its facility, investigation...)
                    # are searched once per run too.
                    obj = self.client.search_unique_key(key, self._ref_cache)
                except SearchResultError:
                    raise DataFileError("reference '%s' not found in the file or the catalogue"
                                        % key) from None
        else:
            cache_key = (target,) + tuple(sorted(ref.attrs.items()))
            obj = self._ref_cache.get(cache_key)
            if obj is None:
                obj = self._search_by_attributes(target, ref.attrs, objindex)
                # References to other local keys make the result chunk-local.
                if not any(k.endswith(".ref") for k in ref.attrs):
                    self._ref_cache[cache_key] = obj
        if obj.type.name != target:
            raise DataFileError("reference '%s' names a %s, expected a %s"
                                % (ref.key or ref.attrs, obj.type.name, target))
        return obj

    def _search_by_attributes(self, target, attrs, objindex) -> Entity:
        conditions = {}
        for path, value in attrs.items():
            if path.endswith(".ref") or path == "ref":
                relpath = path[:-4]
                reltype = self._path_type(target, relpath)
                related = self._resolve_ref(reltype, RawRef(key=value), objindex)
                if related.id is None:
                    raise DataFileError("reference '%s' is to an object not yet created" % value)
                conditions[(relpath + "." if relpath else "") + "id"] = "= %d" % related.id
            else:
                conditions[path] = "= " + literal(value)
        query = Query(target, conditions=conditions)
        try:
            return self.client.assert_one(query)
        except SearchResultError as exc:
            raise DataFileError("reference by attributes %s: %s" % (attrs, exc)) from None

    def _path_type(self, target, path):
        etype = self.schema[target]
        if not path:
            return target
        for part in path.split("."):
            f = etype.fields.get(part)
            if f is None or f.kind != ONE:
                raise DataFileError("invalid reference path '%s' for %s" % (path, target))
            etype = self.schema[f.type]
        return etype.name


def _index_getter(objindex):
    """``objindex.get``, quicker for the usual key index of a chunk.

    That is a ChainMap of two dicts (the chunk's keys, then the retained
    ones), asked once per reference; a ChainMap's ``get`` runs Python code
    for each of its maps.
    """
    if objindex is None:
        return _no_object
    if type(objindex) is ChainMap and len(objindex.maps) == 2 \
            and type(objindex.maps[0]) is dict and type(objindex.maps[1]) is dict:
        first, second = objindex.maps[0].get, objindex.maps[1].get

        def get(key):
            obj = first(key)
            return obj if obj is not None else second(key)
        return get
    return objindex.get


def _no_object(key):
    return None


def _text_args(mode: str) -> dict:
    """Text files are UTF-8 whatever the locale says; binary ones have no encoding."""
    return {} if "b" in mode else {"encoding": "utf-8"}


def _input_stream(path: str, mode: str):
    """Open a data file by path; a gzip-compressed one is read through."""
    from .streams import GZIP_MAGIC, GunzipStream, text_reader
    diskfile = open(path, "rb")
    stream = GunzipStream(diskfile, path) if diskfile.peek(2)[:2] == GZIP_MAGIC else diskfile
    return stream if "b" in mode else text_reader(stream)


class RefCache(OrderedDict):
    """A bounded key → object map, least recently used out first.

    It holds objects found in the catalogue, stripped to their id, so that
    it never pins whole object graphs.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        try:
            self.move_to_end(key)
        except KeyError:
            return default
        return self[key]

    def __setitem__(self, key, obj):
        if obj.id is not None and obj.values:
            obj = Entity(obj.type, {}, obj.id)
        super().__setitem__(key, obj)
        if len(self) > self.size:
            self.popitem(last=False)

    def remember(self, pairs: list):
        """Add a list of ``(key, object)`` pairs (objects with ids), then trim.

        Made for the objects a chunk created: there are many, and most are
        never asked for again, so they go in with as little work each as
        possible (one trim at the end, not one per key).
        """
        put = super().__setitem__
        for key, obj in pairs[-self.size:]:     # the rest would be trimmed
            put(key, Entity(obj.type, {}, obj.id) if obj.values else obj)
        for _ in range(len(self) - self.size):
            self.popitem(last=False)


def _ref_tag(tag: str) -> str:
    return tag[:-3] if tag.endswith("Ref") else tag


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

_output_log = logging.getLogger("icatdump.output")


def _partial_file(path: str) -> tuple[int, str]:
    """Open the temporary file a dump to ``path`` is written into.

    It is ``.NAME.PID.XXXX.part`` beside the final file (so the rename at
    the end stays on one file system).  A dump killed outright (kill -9, a
    crash) cannot remove its partial file; the next dump to the same name
    does, once the process named in it no longer runs.
    """
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


def _output_stream(fd: int, path: str, mode: str):
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

@dataclass
class Record:
    """One object ready to serialize: the backend's whole view of it.

    ``attrs``: ``(name, value)`` sorted by name, None left out, values as
    Python values.  ``refs``: ``(name, key)`` sorted by name.  ``children``:
    ``(relation, [Record, ...])`` sorted by name, items in python-icat's order.
    """
    type: EntityType
    attrs: list
    refs: list
    children: list


class Pager:
    """Keyset paging of a :class:`Query`, each search sized under ``maxEntities``.

    Pages are ``o.id > last ORDER BY o.id LIMIT 0, n``: the server finds the
    next page through its primary key, so the cost of a page does not grow
    with its position (``LIMIT offset`` made python-icat quadratic).  The
    query's own ORDER BY is dropped; the writer orders objects itself.

    ICAT counts every object a search returns, INCLUDEs too, against
    ``maxEntities``.  The page size follows the objects per result seen on
    the previous page (counted as a tree, so shared objects are counted more
    than once: an overestimate, which is the safe side), aiming at
    :attr:`budget` of the limit.  A page refused anyway is tried again with a
    quarter of the size; a single object that is too big with its one-to-many
    INCLUDEs (a grouping with 20000 members) is fetched without them, and
    each such relation is paged separately from the child's side.
    """

    cap = 1000          # objects per page at most, whatever the fan-out
    budget = 0.5        # share of maxEntities a page aims at

    def __init__(self, client: Client, max_entities: int):
        self.client = client
        self.schema = client.schema
        self.limit = max(1, int(max_entities))
        self.size = max(1, min(self.cap, self.limit // 10))

    def results(self, query: Query) -> Iterator[Entity]:
        for page in self.pages(query):
            yield from page

    def pages(self, query: Query) -> Iterator[list]:
        """The results, one search at a time (empty pages left out)."""
        last = None
        while True:
            page, complete = self._page(query, last)
            if page:
                yield page
            if not complete:
                return
            last = page[-1].id

    def _page(self, query: Query, last) -> tuple[list, bool]:
        """The page after id ``last``, and whether it is full (more may follow).

        Adapts :attr:`size` to what it finds."""
        while True:
            size = self.size
            try:
                page = self.client.search(self._paged(query, last, size))
            except IcatError as exc:
                if not too_many_results(exc):
                    raise
                if size > 1:
                    self.size = max(1, size // 4)
                    continue
                page = self._split_includes(query, last)
            full = len(page) >= size
            if full:
                # Only a full page has a next one to size; weighing is not free.
                memo = {}
                per_object = max(_weight(o, memo) for o in page)
                self.size = max(1, min(self.cap, int(self.limit * self.budget) // per_object))
            return page, full

    def _paged(self, query: Query, last, size: int) -> Query:
        conditions = dict(query.conditions)
        if last is not None:
            rhs = conditions.get("id")
            rhs = [] if rhs is None else list(rhs) if isinstance(rhs, (list, tuple)) else [rhs]
            conditions["id"] = rhs + ["> %d" % last]
        return Query(query.entity, conditions=conditions, order=["id"],
                     includes=query.includes, join_specs=query.join_specs, limit=(0, size))

    def _split_includes(self, query: Query, last) -> list:
        """One object, its one-to-many INCLUDEs fetched relation by relation."""
        etype = self.schema[query.entity]
        ones, manys = [], {}
        for path in query.includes:
            head, _, rest = path.partition(".")
            if etype.fields[head].kind == ONE:
                ones.append(path)
            else:
                manys.setdefault(head, []).extend([rest] if rest else [])
        if not manys:
            raise IcatError("one %s with its INCLUDEs is more than maxEntities (%d)"
                            % (query.entity, self.limit), type="VALIDATION")
        parent_query = Query(query.entity, conditions=query.conditions, includes=ones,
                             join_specs=query.join_specs)
        page = self.client.search(self._paged(parent_query, last, 1))
        for obj in page:
            for rel, sub in manys.items():
                f = etype.fields[rel]
                child_query = Query(f.type, conditions={f.mapped_by + ".id": "= %d" % obj.id},
                                    includes=sub)
                obj.values[rel] = list(Pager(self.client, self.limit).results(child_query))
        return page


def too_many_results(exc: IcatError) -> bool:
    """Whether the server refused a search for returning too many objects."""
    return exc.type == "VALIDATION" and "more than" in exc.message


def _weight(obj: Entity, memo: dict) -> int:
    """Objects in ``obj``'s tree of loaded relations, shared ones repeated.

    ``memo`` (by ``id()``, for one page whose objects are held) weighs a
    shared related object -- the dataset of a thousand datafiles -- once.
    """
    n = memo.get(id(obj))
    if n is not None:
        return n
    n = 1
    for v in obj.values.values():
        if v.__class__ is Entity:
            n += _weight(v, memo)
        elif v.__class__ is list:
            for c in v:
                n += _weight(c, memo)
    memo[id(obj)] = n
    return n


def _keyed_alike(objs) -> bool:
    """Whether the objects are of one type whose keys do not depend on
    their order (a uniqueness constraint, not numbered generic keys)."""
    etype = objs[0].type
    return etype.key_fields != ("id",) and all(o.type is etype for o in objs)


def batched(items, n) -> Iterator[list]:
    """Lists of ``n`` items (the last may be shorter), taken as they come."""
    items = iter(items)
    while True:
        batch = list(islice(items, n))
        if not batch:
            return
        yield batch


def _plain(record: Record) -> tuple:
    """A record as plain data (its type by name), for a spilled run."""
    return (record.type.name, record.attrs, record.refs,
            [(rel, [_plain(c) for c in items]) for rel, items in record.children])


def _from_plain(plain: tuple, schema) -> Record:
    name, attrs, refs, children = plain
    return Record(schema[name], attrs, refs,
                  [(rel, [_from_plain(c, schema) for c in items]) for rel, items in children])


class KeyIndex(ChainMap):
    """A chunk's key index in front of the file's (``(BeanName, id)`` → key).

    ``get`` is asked once per reference written; ChainMap's own goes
    through ``__contains__`` and ``__getitem__`` for every map.  Keys are
    never None, so a plain ``get`` on each map says the same.
    """

    def get(self, key, default=None):
        for m in self.maps:
            value = m.get(key)
            if value is not None:
                return value
        return default


class DumpFileWriter:
    """Base class of the backends that write a data file.

    ``outfile`` is a file object opened in :attr:`mode`, a path or ``"-"``.
    A path is written under a temporary name in the same directory and
    renamed when the file is complete; on error the temporary file is
    removed and an existing file of that name is left untouched.
    Subclasses implement :meth:`head`, :meth:`startdata`,
    :meth:`write_record` and :meth:`finalize`.
    """

    mode = "w"

    #: Split chunks with more top-level objects than this (None: never).
    chunk_size: int | None = None
    #: The server's limit on objects per search; None: the client's.
    max_entities: int | None = None
    #: Search for a chunk's next group of objects in a thread while this
    #: group is written (see :meth:`writedata`).
    prefetch: bool = False
    #: Sort keys made during one :meth:`writeobjs` (see Entity.sortkey).
    _sort_memo: dict | None = None

    def __init__(self, client: Client, outfile):
        self.client = client
        self.schema = client.schema
        self._closefile = False
        self._final_name = None
        if hasattr(outfile, "write"):
            self.outfile = outfile
        elif outfile == "-":
            self.outfile = sys.stdout.buffer if "b" in self.mode else sys.stdout
        else:
            path = os.fspath(outfile)
            fd, self._tmp_name = _partial_file(path)
            self._final_name = path
            self._closefile = True
            self.outfile, self._diskfile = _output_stream(fd, path, self.mode)
        self.idcounter: dict[str, int] = {}
        self._retain = retained_types(self.schema)
        self.keyindex: dict = {}
        self.objects_written = 0
        self._chunk_count = 0      # top-level objects in the current chunk

    def __enter__(self):
        self.head()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finalize()
            self.close()
        else:
            self.abort()

    def close(self):
        """Finish writing: flush, close and move the file to its final name."""
        if self._closefile:
            self.outfile.flush()
            if self.outfile is not self._diskfile:
                self.outfile.close()        # the gzip trailer; the disk file stays open
            self._diskfile.flush()
            os.fsync(self._diskfile.fileno())
            self._diskfile.close()
            self._closefile = False
            # mkstemp made the file private; give it the mode a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp_name, 0o666 & ~umask)
            os.replace(self._tmp_name, self._final_name)
        else:
            self.outfile.flush()

    def abort(self):
        """Give up: remove the partial file, leave any existing one alone."""
        if self._closefile:
            self.outfile.close()
            self._diskfile.close()
            self._closefile = False
            try:
                os.unlink(self._tmp_name)
            except FileNotFoundError:
                pass

    # -- backend interface ----------------------------------------------------
    def head(self):
        """Write the file header."""
        raise NotImplementedError

    def startdata(self):
        """Start a new chunk (writing out the previous one, if any)."""
        raise NotImplementedError

    def write_record(self, key: str, record: Record):
        """Add one object to the current chunk."""
        raise NotImplementedError

    def finalize(self):
        """Write out the last chunk and close the file's structure."""
        raise NotImplementedError

    # -- python-icat's API ----------------------------------------------------
    def writeobj(self, key: str, obj: Entity, keyindex):
        """Add an object to the current chunk, its references as keys.

        With :attr:`chunk_size` set, a chunk that has reached it is closed
        first and the object starts a new one (see :meth:`writedata`).
        """
        self._put(key, self.record(obj, keyindex))

    def _put(self, key: str, record: Record):
        if self.chunk_size and self._chunk_count >= self.chunk_size:
            self.startdata()
            self._chunk_count = 0
        self.write_record(key, record)
        self._chunk_count += 1
        self.objects_written += 1

    def writeobjs(self, objs, keyindex, chunksize=100, keep_keys=True):
        """Write the objects a query finds (or an iterable of objects).

        Objects are written in python-icat's order.  Types without a
        uniqueness constraint get generic numbered keys (``Rule_00000001``),
        counted per type over the whole file.

        The order is ``Entity.sortkey``, computed here and not left to the
        server's ORDER BY: sortkey compares ``str()`` of values (numbers as
        text), DataCollection sorts by its children, Rule puts rules without
        a grouping first, and a server's collation may not be code point
        order.  So all objects of one call are sorted together; the dump
        plan keeps each call to the smallest group whose position among the
        others is already fixed (the datafiles of one dataset).  A group of
        more than :attr:`sort_run` objects is sorted in runs spilled to disk
        (see :mod:`icatdump.spill`), so memory is bounded by a run even for
        a dataset of millions of datafiles.  ``keep_keys=False``: nothing
        later in the chunk refers to these objects, so their keys are not
        kept in the chunk's key index (a million datafile keys would be).
        """
        if isinstance(objs, (str, Query)):
            objs = self.iter_search(objs, chunksize)
        objs = iter(objs)
        first = list(islice(objs, self.sort_run + 1))
        if len(first) <= self.sort_run or not _keyed_alike(first):
            first.extend(objs)      # small, or numbered keys: in memory
            self._write_sorted(first, keyindex, keep_keys)
        else:
            self._write_merged(chain(first, objs), keyindex, keep_keys)

    #: Objects of one group sorted in memory at most (see :meth:`writeobjs`).
    sort_run = 20000

    def _write_sorted(self, objs: list, keyindex, keep_keys: bool):
        local = keyindex.maps[0] if isinstance(keyindex, ChainMap) else keyindex
        # Sort keys of shared objects are made once for the whole call
        # (children included, see record); ``objs`` holds every object seen.
        self._sort_memo = memo = {}
        try:
            for obj in sorted(objs, key=lambda o: o.sortkey(memo)):
                name = obj.type.name
                if obj.type.key_fields == ("id",):
                    n = self.idcounter[name] = self.idcounter.get(name, 0) + 1
                    key = "%s_%08d" % (name, n)
                    index = self.keyindex if name in self._retain else keyindex
                    index[(name, obj.id)] = key
                else:
                    key = obj.unique_key(keyindex)
                self.writeobj(key, obj, keyindex)
                if not keep_keys and name not in self._retain:
                    local.pop((name, obj.id), None)
        finally:
            self._sort_memo = None

    def _write_merged(self, objs, keyindex, keep_keys: bool):
        """:meth:`_write_sorted` for a big group of one type with unique keys.

        Each run of :attr:`sort_run` objects is sorted and spilled as
        ``(sort key, key, record)``: keys and records do not depend on the
        order (unique keys, references as unique keys), so they are made
        before the runs are merged, and the objects can go.
        """
        local = keyindex.maps[0] if isinstance(keyindex, ChainMap) else keyindex
        with SpilledRuns() as runs:
            for run in batched(objs, self.sort_run):
                self._sort_memo = memo = {}      # valid while ``run`` is held
                try:
                    entries = []
                    for sortkey, obj in sorted(((o.sortkey(memo), o) for o in run),
                                               key=itemgetter(0)):
                        key = obj.unique_key(keyindex)
                        entries.append((sortkey, key, _plain(self.record(obj, keyindex))))
                        if not keep_keys and obj.type.name not in self._retain:
                            local.pop((obj.type.name, obj.id), None)
                finally:
                    self._sort_memo = None
                runs.add(entries)
                del run, entries
            schema = self.schema
            for _, key, plain in runs.merged():
                self._put(key, _from_plain(plain, schema))

    def writedata(self, objs, keyindex=None, chunksize=100, forget=()):
        """Write one chunk: ``objs`` yields queries or lists of objects.

        ``forget``: entity types whose keys need not stay in the chunk's key
        index once written.  With :attr:`chunk_size` set, a chunk with more
        top-level objects is split into several: every key that crosses a
        split is a unique key (found in the catalogue by any reader) or the
        generic key of a retained type, so each part reads back on its own.
        """
        self.client.refresh()
        if keyindex is None:
            keyindex = KeyIndex({}, self.keyindex)
        self.startdata()
        self._chunk_count = 0
        fetch = self._fetched_ahead if self.prefetch else self._fetched
        for item, found in fetch(objs, chunksize):
            etype = getattr(item, "entity", None)
            self.writeobjs(found, keyindex, chunksize=chunksize, keep_keys=etype not in forget)

    def _fetched(self, items, chunksize) -> Iterator[tuple[Any, Iterator[Entity]]]:
        """Each item of a chunk (a query or a list of objects) with its
        objects, searched for page by page as they are read."""
        for item in items:
            yield item, self._objects(item, chunksize)

    def _objects(self, item, chunksize) -> Iterator[Entity]:
        return chain.from_iterable(self._pages(item, chunksize))

    def _pages(self, item, chunksize) -> Iterator[list]:
        if isinstance(item, (str, Query)):
            return self.iter_pages(item, chunksize)
        return iter([item] if item else [])

    #: Pages the fetching thread may hold ready (see :meth:`_fetched_ahead`).
    prefetch_pages = 4

    def _fetched_ahead(self, items, chunksize) -> Iterator[tuple[Any, Iterator[Entity]]]:
        """As :meth:`_fetched`, the next pages searched for while these are written.

        Over the network a search is mostly waiting for the server, and
        writing objects is mostly computing: the two overlap.  One thread
        iterates over ``items`` and searches (``items`` may search too: one
        query per dataset), so the client is never used from two threads at
        once; it runs at most :attr:`prefetch_pages` pages ahead, so memory
        stays bounded however big a group is.
        """
        pages = queue.Queue(self.prefetch_pages)
        stop = threading.Event()

        def put(message) -> bool:
            while not stop.is_set():
                try:
                    pages.put(message, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def produce():
            try:
                for item in items:
                    if not put(("item", item)):
                        return
                    for page in self._pages(item, chunksize):
                        if not put(("page", page)):
                            return
                    if not put(("end", None)):
                        return
                put(("done", None))
            except BaseException as exc:
                put(("error", exc))

        def objects():
            while True:
                kind, value = pages.get()
                if kind == "page":
                    yield from value
                elif kind == "end":
                    return
                else:
                    raise value

        worker = threading.Thread(target=produce, name="icatdump-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = pages.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise value
                found = objects()
                yield value, found
                # The writer reads every object of an item; if it did not,
                # the rest of the item is skipped here.
                for _ in found:
                    pass
        finally:
            stop.set()
            worker.join()

    def search_all(self, query, chunksize=100):
        """All results of a query (python-icat's API; see :meth:`iter_pages`)."""
        return list(self.iter_search(query, chunksize))

    def iter_search(self, query, chunksize=100) -> Iterator[Entity]:
        """The results of a query, in id order (see :meth:`iter_pages`)."""
        for page in self.iter_pages(query, chunksize):
            yield from page

    def iter_pages(self, query, chunksize=100) -> Iterator[list]:
        """The results of a query, a page (one search) at a time.

        A :class:`Query` is paged by keyset (``o.id > last ORDER BY o.id``),
        so each page costs the same however deep into the results it is;
        its size keeps it under the server's ``maxEntities``, INCLUDEs
        counted (see :class:`Pager`).  A query string is opaque and is paged
        by ``LIMIT offset, chunksize`` as python-icat does.
        """
        if isinstance(query, Query):
            yield from Pager(self.client,
                             self.max_entities or self.client.max_entities).pages(query)
            return
        skip = 0
        while True:
            page = self.client.search("%s LIMIT %d, %d" % (query, skip, chunksize))
            if page:
                yield page
            if len(page) < chunksize:
                return
            skip += chunksize

    # -- serialization helpers --------------------------------------------------
    def record(self, obj: Entity, keyindex, parent_rel: str | None = None) -> Record:
        """The :class:`Record` of an object: what a backend writes of it."""
        memo = self._sort_memo
        if memo is None:
            memo = {}       # called on its own: for this object's tree only
        return self._record(obj, keyindex, parent_rel, memo)

    def _record(self, obj, keyindex, parent_rel, memo) -> Record:
        etype = obj.type
        values = obj.values
        attrs = [(n, v) for n in etype.attrs if (v := values.get(n)) is not None]
        refs = []
        for n in etype.ones:
            if n == parent_rel:
                continue
            related = values.get(n)
            if related is not None:
                key = keyindex.get((related.type.name, related.id)) \
                    if related.id is not None else None
                refs.append((n, key or related.unique_key(keyindex)))
        children = []
        for n, f in etype.manys.items():
            items = values.get(n)
            if items:
                if len(items) > 1:
                    items = sorted(items, key=lambda c: c.sortkey(memo))
                children.append((n, [self._record(c, keyindex, f.mapped_by, memo)
                                     for c in items]))
        return Record(etype, attrs, refs, children)


# ---------------------------------------------------------------------------
# Backend registry
# ---------------------------------------------------------------------------

#: Known backends: format name (as registered) → (reader class, writer class).
Backends: dict[str, tuple[type, type]] = {}

#: Where each backend came from (for ``--list-formats``).
BackendOrigins: dict[str, str] = {}

ENTRY_POINT_GROUP = "icatdump.backends"

_discovered = False
_log = logging.getLogger("icatdump.plugins")


def _find_name(formatname: str) -> str | None:
    """The registered spelling of a format name, matched case-insensitively."""
    if formatname in Backends:
        return formatname
    folded = formatname.casefold()
    return next((n for n in Backends if n.casefold() == folded), None)


def register_backend(formatname: str, reader, writer):
    """Register a backend in code.

    It wins over an entry point of the same name (in any letter case),
    whether discovery has run yet or not: code that registers a format
    explicitly means that one.
    """
    old = _find_name(formatname)
    if old is not None:
        del Backends[old]
        BackendOrigins.pop(old, None)
    Backends[formatname] = (reader, writer)
    BackendOrigins[formatname] = "registered in code by %s" % getattr(reader, "__module__", "?")


def discover_backends(warn: bool = True) -> dict[str, tuple[type, type]]:
    """Load the backends of the ``icatdump.backends`` entry-point group.

    Lazy and once per process: nothing is imported until a format is first
    looked up or listed.  Each entry point names a module (or any object)
    with the attributes ``reader`` and ``writer``.  A plugin that fails to
    load is skipped with a single one-line warning on the
    ``icatdump.plugins`` logger (stderr unless logging is configured; not
    with ``warn=False``), so a broken third-party package never takes the
    other formats down with it.
    """
    global _discovered
    if _discovered:
        return Backends
    _discovered = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _find_name(ep.name) is not None:
            continue        # registered in code (which wins), or a second copy
        dist = getattr(ep, "dist", None)
        source = "%s = %s (%s)" % (ep.name, ep.value, dist.name if dist else "entry point")
        try:
            obj = ep.load()
            reader, writer = obj.reader, obj.writer
        except Exception as exc:  # a broken plugin must not break the others
            cause = " ".join(str(exc).split()) or "-"
            if warn:
                _log.warning("icatdump: format plugin %s skipped: %s: %s",
                             source, type(exc).__name__, cause)
            continue
        if _find_name(ep.name) is not None:
            continue        # the module registered itself in code while loading
        Backends[ep.name] = (reader, writer)
        BackendOrigins[ep.name] = "%s (%s)" % (ep.value, dist.name if dist else "entry point")
    return Backends


def get_backend(formatname: str) -> tuple[type, type]:
    """The (reader, writer) of a format; the name's letter case does not matter."""
    discover_backends()
    name = _find_name(formatname)
    if name is None:
        raise ValueError("unknown data file format '%s' (known: %s)"
                         % (formatname, ", ".join(sorted(Backends))))
    return Backends[name]


def open_dumpfile(client: Client, f, formatname: str, mode: str):
    """Open a data file for reading (``mode="r"``) or writing (``"w"``)."""
    reader, writer = get_backend(formatname)
    if mode == "r":
        return reader(client, f)
    if mode == "w":
        return writer(client, f)
    raise ValueError("invalid file mode '%s'" % mode)
