"""Dump files: python-icat's reader and writer base classes.

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

A backend therefore only parses (``getdata`` + ``parse_chunk``) and
serializes (``head`` + ``startdata`` + ``write_record`` + ``finalize``).
The method names of python-icat's ``icat.dumpfile`` are all kept, and so
are its public names here: the backend registry (:mod:`icatdump.registry`)
and what a backend needs (:class:`DataFileError`, :class:`Record`) are
re-exported.  The writer's helpers live in modules of their own: output
under a temporary name (:mod:`icatdump.atomic`), search paging
(:mod:`icatdump.paging`), searching ahead (:mod:`icatdump.prefetch`),
sorting a big group on disk (:mod:`icatdump.spill`) and the key indexes
(:mod:`icatdump.keyindex`).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections import ChainMap
from dataclasses import dataclass, field
from itertools import chain, islice
from operator import itemgetter
from typing import Any, Iterator

from . import atomic
from .client import Client, SearchResultError
from .entity import DataConsistencyError, Entity
from .errors import DataFileError
from .inputs import open_binary
from .keyindex import KeyIndex, RefCache, retained_types
from .keys import KeyError_, is_generic
from .paging import batched, pages
from .prefetch import fetched_ahead
from .query import Query, literal
from .records import Record
from .registry import (BackendOrigins, Backends, discover_backends, get_backend,
                       open_dumpfile, register_backend)
from .rules import field_rule
from .schema import ATTRIBUTE, MANY, ONE, EntityType
from .spill import SpilledRuns, entity_from_plain, plain_entity, plain_record, record_from_plain
from .streams import text_reader
from .types import ValueProblem

__all__ = ["DumpFileReader", "DumpFileWriter", "Backends", "register_backend", "open_dumpfile",
           "BackendOrigins", "discover_backends", "get_backend",
           "DataFileError", "RawObject", "RawRef", "Record"]


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

    #: Ceilings on one value and one chunk of the input, which the backends
    #: measure before their parser sees it (bytes; YAML: characters).  None:
    #: ICATDUMP_MAX_VALUE_SIZE / ICATDUMP_MAX_CHUNK_SIZE, else the defaults
    #: (icatdump/limits.py).
    max_value_size: int | None = None
    max_chunk_size: int | None = None

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
        The objects are not indexed under their keys (the caller does, as
        in python-icat; :meth:`Chunk.objects` does it itself).
        """
        return self._objects(data, objindex, False)

    def _objects(self, data, objindex, index: bool) -> Iterator[tuple[str | None, Entity]]:
        """The one loop over a chunk's objects (see :meth:`Chunk.objects`)."""
        lines: dict[str, int] = {}      # key -> line: a key defined twice would shadow the first
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
                if index and key:
                    self.index_object(objindex, key, obj)
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

        Each object is indexed under its key as it is read; once the caller
        has processed it (created it), its embedded children are dropped to
        save memory.  Local keys are valid within their chunk only, except
        for the retained types (DataCollection, Study).  An ``objindex``
        given is used for every chunk instead of a fresh one per chunk.
        """
        for chunk in self.iter_chunks(objindex):
            for _, obj in chunk.objects():
                obj.client = self.client        # for python-icat's obj.create()
                yield obj
                obj.truncate_relations()

    def iter_chunks(self, objindex=None) -> Iterator["Chunk"]:
        """The one loop over the chunks of the file: a :class:`Chunk` each.

        Every tool that reads a file (ingest, ``getobjs``, convert, check,
        info) goes through here, so chunks are numbered, the client's
        session kept alive and errors located the same way for all: a
        backend's syntax error names the file and the chunk being read.
        Each chunk gets a key index of its own in front of the retained
        one, unless ``objindex`` is given (then that one, for every chunk).
        """
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
            self.client.refresh()
            yield Chunk(self, self.chunk_number, data,
                        ChainMap({}, self.objindex) if objindex is None else objindex)

    def chunks(self) -> Iterator[Any]:
        """Iterate over the backend's chunks (see :meth:`iter_chunks`)."""
        for chunk in self.iter_chunks():
            yield chunk.data

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
        ``how`` is the value conversion of an attribute (its field rule,
        :mod:`icatdump.rules`), the target type name of a many-to-one
        relation, or the child :class:`EntityType` of a one-to-many
        relation.  An embedded child may not name its parent, so
        ``parent_rel`` (the relation to the parent) is left out.  Made once
        per type and reader: deriving these schema facts again for every
        object cost more than the reading.
        """
        specs = self._specs.get((etype.name, parent_rel))
        if specs is None:
            specs = {}
            for fname, f in etype.fields.items():
                if f.kind == ATTRIBUTE:
                    kind, how = ATTRIBUTE, field_rule(etype.name, f).convert
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


class Chunk:
    """One chunk of a file as :meth:`DumpFileReader.iter_chunks` yields it.

    ``number`` counts from 1; ``data`` is the backend's chunk; ``index`` is
    the chunk's key index (its own keys in front of the retained ones).
    Read it either as objects (:meth:`objects`: built, references
    resolved, indexed) or record by record (:meth:`records`, then
    :meth:`read` and :meth:`add`, for a tool that goes on after a bad
    object or only counts).  Errors name the file, chunk, line and key.
    """
    __slots__ = ("reader", "number", "data", "index")

    def __init__(self, reader: DumpFileReader, number: int, data, index):
        self.reader, self.number, self.data, self.index = reader, number, data, index

    def objects(self) -> Iterator[tuple[str | None, Entity]]:
        """``(key, object)`` for each new object, in file order, each
        indexed under its key as it is read; a key defined twice in the
        chunk is an error."""
        return self.reader._objects(self.data, self.index, True)

    def records(self) -> Iterator[RawObject]:
        """The backend's records, not yet checked against the schema."""
        return self.reader._located(self.reader.parse_chunk(self.data))

    def read(self, raw: RawObject) -> Entity | None:
        """One record built with this chunk's index (see
        :meth:`DumpFileReader.read_object`)."""
        return self.reader.read_object(raw, self.index)

    def add(self, key, obj: Entity):
        """Index an object under its key (see :meth:`DumpFileReader.index_object`)."""
        self.reader.index_object(self.index, key, obj)


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


def _input_stream(path: str, mode: str):
    """Open a data file by path; a gzip-compressed one is read through."""
    stream = open_binary(path)[0]
    return stream if "b" in mode else text_reader(stream)


def _ref_tag(tag: str) -> str:
    return tag[:-3] if tag.endswith("Ref") else tag


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _keyed_alike(objs) -> bool:
    """Whether the objects are of one type whose keys do not depend on
    their order (a uniqueness constraint, not numbered generic keys)."""
    etype = objs[0].type
    return etype.key_fields != ("id",) and all(o.type is etype for o in objs)


#: errno values of a failed write to the output file (full disk, quota...).
_WRITE_ERRORS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO))


def _completing(finalize):
    @functools.wraps(finalize)
    def finalize_and_complete(self, *args, **kwargs):
        self._finalizing = getattr(self, "_finalizing", 0) + 1
        try:
            result = finalize(self, *args, **kwargs)
        finally:
            self._finalizing -= 1
        if not self._finalizing:
            self.close()
        return result
    return finalize_and_complete


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
            fd, self._tmp_name = atomic.partial_file(path)
            self._final_name = path
            self._closefile = True
            self.outfile, self._diskfile = atomic.output_stream(fd, path, self.mode)
        self.idcounter: dict[str, int] = {}
        self._retain = retained_types(self.schema)
        self.keyindex: dict = {}
        self.objects_written = 0
        self._chunk_count = 0      # top-level objects in the current chunk

    def __enter__(self):
        try:
            self.head()
        except BaseException:
            self.abort()        # __exit__ is not called when __enter__ fails
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finalize()
            self.close()
            return None
        self.abort()
        if isinstance(exc, OSError) and self._final_name and exc.errno in _WRITE_ERRORS:
            raise atomic.named(exc, self._final_name) from None
        return None

    def __init_subclass__(cls, **kwargs):
        """python-icat's writers end with :meth:`finalize`: its users call
        ``head()``, ``writedata()``... ``finalize()`` without ``with`` or
        ``close()``.  So a subclass's ``finalize`` also completes the file
        (renames it to its name) once the outermost call returns."""
        super().__init_subclass__(**kwargs)
        if "finalize" in cls.__dict__:
            cls.finalize = _completing(cls.__dict__["finalize"])

    def close(self):
        """Finish writing: flush, close and move the file to its final name."""
        if self._closefile:
            self._closefile = False
            atomic.commit(self.outfile, self._diskfile, self._tmp_name, self._final_name)
        elif not self.outfile.closed:
            self.outfile.flush()

    def abort(self):
        """Give up: remove the partial file, leave any existing one alone."""
        if self._closefile:
            self._closefile = False
            atomic.discard(self.outfile, self._diskfile, self._tmp_name)

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
        memo: dict = {}
        self._sort_memo = memo
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
        before the runs are merged, and the objects can go.  A subclass
        that overrides :meth:`writeobj` (python-icat's per-object hook)
        gets it called as in memory, with each object rebuilt from the run:
        the runs then hold the objects instead of their records.
        """
        local = keyindex.maps[0] if isinstance(keyindex, ChainMap) else keyindex
        own_writeobj = type(self).writeobj is not DumpFileWriter.writeobj
        with SpilledRuns() as runs:
            for run in batched(objs, self.sort_run):
                memo: dict = {}
                self._sort_memo = memo          # valid while ``run`` is held
                try:
                    entries = []
                    for sortkey, obj in sorted(((o.sortkey(memo), o) for o in run),
                                               key=itemgetter(0)):
                        key = obj.unique_key(keyindex)
                        plain = plain_entity(obj) if own_writeobj \
                            else plain_record(self.record(obj, keyindex))
                        entries.append((sortkey, key, plain))
                        if not keep_keys and obj.type.name not in self._retain:
                            local.pop((obj.type.name, obj.id), None)
                finally:
                    self._sort_memo = None
                runs.add(entries)
                del run, entries
            schema = self.schema
            if own_writeobj:
                for _, key, plain in runs.merged():
                    self.writeobj(key, entity_from_plain(plain, schema), keyindex)
            else:
                for _, key, plain in runs.merged():
                    # What writeobj does, its record made before the merge.
                    self._put(key, record_from_plain(plain, schema))

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
        """As :meth:`_fetched`, the next pages searched for in a thread while
        these are written (see :func:`icatdump.prefetch.fetched_ahead`)."""
        return fetched_ahead(items, lambda item: self._pages(item, chunksize),
                             self.prefetch_pages)

    def search_all(self, query, chunksize=100):
        """All results of a query (python-icat's API; see :meth:`iter_pages`)."""
        return list(self.iter_search(query, chunksize))

    def iter_search(self, query, chunksize=100) -> Iterator[Entity]:
        """The results of a query, in id order (see :meth:`iter_pages`)."""
        for page in self.iter_pages(query, chunksize):
            yield from page

    def iter_pages(self, query, chunksize=100) -> Iterator[list]:
        """The results of a query, a page (one search) at a time (see
        :func:`icatdump.paging.pages`: a :class:`Query` by keyset, sized
        under the client's ``max_entities``, a string by ``LIMIT``)."""
        return pages(self.client, query, chunksize)

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
        return Record(etype, attrs, refs, children, obj.id)
