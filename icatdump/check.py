"""Checking a data file offline: would it ingest into a catalogue?

:class:`Checker` reads a file chunk by chunk with the ordinary reader (so
names, values and references are read exactly as an ingest reads them: the
reader base's ``read_object`` converts values by schema type and resolves
references through the chunk index and the retained index) and adds what
only the catalogue would otherwise notice: required attributes, string
lengths, keys that are malformed, do not match their object or are defined
twice, and references to objects of dropped chunks.

Unlike an ingest it goes on after a bad object, so one run lists every
problem (an object that cannot be read at all is reported once, with its
first problem).  References that the file cannot resolve itself but a
catalogue could (``Facility_name-ESNF`` when the file does not define it)
are not problems: they are collected as *expected in the target
catalogue*, with how often each is used.

Memory: one chunk, plus the set of unique keys the file defines (needed to
find duplicates and keys used before their definition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from .dumpfile import RawObject
from .entity import DataConsistencyError, Entity
from .errors import DataFileError, IcatError
from .keyindex import RefCache
from .keys import KeyError_, is_generic, parse_attr_values, split_key
from .offline import OfflineClient
from .registry import get_backend
from .rules import rules_of
from .schema import MANY, ONE, Schema


def format_problem(exc: DataFileError) -> str:
    """``file: chunk N, line L, KEY: problem`` -- one line, for listings."""
    place = exc.place()
    return "%s: %s%s" % (exc.file or "<stream>", place + ": " if place else "",
                         exc.one_line_cause())


class Dropped(Entity):
    """Stands in for an object of a dropped (or unreadable) chunk or object,
    so that what refers to it is found and reported, once, without the
    follow-on "not defined" errors."""
    __slots__ = ("chunk", "unreadable")

    def __init__(self, etype, chunk, unreadable=False):
        super().__init__(etype, {})
        self.chunk = chunk
        self.unreadable = unreadable


class CheckClient(OfflineClient):
    """The offline client, counting what the file expects of the catalogue.

    Every lookup of a key the file did not define earlier reaches
    :meth:`search_unique_key` (the checking reader keeps no cache of its
    own), so each is counted; keys of dropped chunks answer with a
    :class:`Dropped` object.
    """

    def __init__(self, schema, url="", apiversion=""):
        super().__init__(schema, url, apiversion)
        self.defined: dict[str, int] = {}      # unique key → chunk defining it
        self.dropped: dict[str, int] = {}      # key → dropped chunk that defined it
        self.expected: dict[str, list] = {}    # key → [uses, first chunk]
        self.chunk = 0
        self._cache = RefCache(10_000)

    def search_unique_key(self, key, objindex=None):
        name = split_key(key)[0]
        if name not in self.schema:
            raise KeyError_("reference '%s' is not defined in this chunk (a local key is "
                            "valid only in its own chunk, after its definition)" % key)
        if key in self.dropped:
            return Dropped(self.schema[name], self.dropped[key])
        obj = self._cache.get(key)
        if obj is None:
            obj = self._cache[key] = self._placeholder(key)
        if key not in self.defined:
            self._expect(key)
        return obj

    searchUniqueKey = search_unique_key

    def assert_one(self, query):
        """A reference by attributes: only a catalogue can tell, so expect it."""
        conds = ", ".join("%s %s" % kv for kv in sorted(query.conditions.items()))
        self._expect("%s [%s]" % (query.entity, conds))
        return Entity(self.schema[query.entity], {}, next(self._ids))

    def _expect(self, what):
        entry = self.expected.get(what)
        if entry is None:
            self.expected[what] = [1, self.chunk]
        else:
            entry[0] += 1


@dataclass
class ChunkResult:
    """One chunk as checked: its objects (key, Entity) and its problems.

    ``complete`` is False when the chunk could not be read to its end
    (a syntax error, a truncated file).
    """
    number: int
    objects: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    complete: bool = True


@dataclass
class CheckReport:
    """What :func:`check` found in a whole file."""
    file: str
    format: str
    schema_version: str
    chunks: int = 0
    objects: int = 0
    problems: list = field(default_factory=list)    # DataFileError, first ``limit``
    problem_count: int = 0
    expected: dict = field(default_factory=dict)    # key → number of uses

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


class Checker:
    """Check a data file chunk by chunk: iterate :meth:`chunks`.

    ``drop(result)`` forgets a chunk's definitions, so that later chunks
    referring to them get a problem (salvage uses this).
    """

    def __init__(self, infile, fmt: str, schema: Schema, url="", apiversion="", name=None):
        # The catalogue's own object checks (a Rule's what and crudFlags),
        # imported here: the store's query parser is not needed before.
        from .store.authz import OBJECT_CHECKS
        self.object_checks = OBJECT_CHECKS
        self.schema = schema
        self.client = CheckClient(schema, url, apiversion)
        reader_cls, _ = get_backend(fmt)
        # No reference cache: every catalogue lookup must reach the client.
        uncached = type(reader_cls.__name__, (reader_cls,), {"cache_size": 0})
        self.reader = uncached(self.client, infile)
        if name:
            self.reader.name = name
        self.name = self.reader.name

    def close(self):
        self.reader.close()

    def chunks(self):
        """Yield a :class:`ChunkResult` per chunk; the last one is incomplete
        if the file breaks off or cannot be parsed any further."""
        it = self.reader.iter_chunks()
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except DataFileError as exc:
                yield ChunkResult(exc.chunk or self.reader.chunk_number + 1, [], [exc], False)
                return
            yield self._check_chunk(chunk)

    def drop(self, result: ChunkResult):
        """Treat a chunk as absent: its keys now name dropped objects."""
        n = result.number
        for key, obj in result.objects:
            if not key:
                continue
            if key in self.reader.objindex:
                self.reader.objindex[key] = Dropped(obj.type, n)
            if self.client.defined.get(key) == n:
                del self.client.defined[key]
                self.client.dropped[key] = n

    # -- one chunk --------------------------------------------------------------
    def _check_chunk(self, chunk) -> ChunkResult:
        n = self.client.chunk = chunk.number
        result = ChunkResult(n)
        local: dict[str, int | None] = {}      # keys defined in this chunk → line
        records = chunk.records()
        while True:
            try:
                raw = next(records)
            except StopIteration:
                break
            except DataFileError as exc:
                self._problem(result, exc)
                result.complete = False     # the backend cannot go on in this chunk
                break
            try:
                obj = chunk.read(raw)
            except DataFileError as exc:
                self._problem(result, exc)
                etype = self.schema.by_instance.get(raw.tag)
                if raw.key and etype is not None and not raw.ref_only:
                    obj = Dropped(etype, n, unreadable=True)
                    result.objects.append((raw.key, obj))
                    self._check_key(result, raw, obj, local, compare=False)
                    chunk.add(raw.key, obj)
                continue
            if obj is None:
                continue
            self.client.create_many([obj])      # ids, for references by attributes
            result.objects.append((raw.key, obj))
            self._check_values(result, raw, raw, obj)
            if raw.key:
                self._check_key(result, raw, obj, local)
            chunk.add(raw.key, obj)
        return result

    def _problem(self, result, exc_or_text, raw=None, line=None):
        if isinstance(exc_or_text, DataFileError):
            exc = exc_or_text
            exc.file = exc.file or self.name
            exc.chunk = exc.chunk or result.number
        else:
            exc = DataFileError(exc_or_text, self.name, result.number,
                                line or (raw.line if raw else None), raw.key if raw else None)
        result.problems.append(exc)

    def _check_values(self, result, top: RawObject, raw, obj: Entity, parent_rel=None, path=""):
        """Required fields, string lengths, references to dropped objects;
        then the same for each embedded child (its parent link is implied)."""
        etype = obj.type
        values = obj.values
        what = path or etype.name
        line = getattr(raw, "line", None) or top.line
        found = len(result.problems)
        for name, rule in _rules(self.schema, etype.name):
            if name == parent_rel:
                continue
            v = values.get(name)
            if v is None:
                if rule.required:
                    self._problem(result, "%s.%s is required" % (what, name), top, line)
            elif rule.length is not None:
                problem = rule.length_problem(v)
                if problem:
                    self._problem(result, "%s.%s %s" % (what, name, problem), top, line)
            elif isinstance(v, Dropped):
                self._problem(result, "%s.%s refers to %s" % (
                    what, name, "an object that could not be read" if v.unreadable
                    else "an object of dropped chunk %d" % v.chunk), top, line)
        object_check = self.object_checks.get(etype.name)
        if object_check is not None and len(result.problems) == found:
            try:
                object_check(values, self.schema)
            except (IcatError, ValueError) as exc:
                self._problem(result, "%s: %s" % (what, getattr(exc, "message", exc)), top, line)
        if not etype.manys:
            return
        raw_children: dict[str, list] = {}
        for name, value in getattr(raw, "fields", ()):
            fname = etype.aliases.get(name, name)
            if fname in etype.manys:
                raw_children.setdefault(fname, []).extend(
                    value if isinstance(value, list) else [value])
        for name, f in etype.manys.items():
            children = values.get(name) or ()
            raws = raw_children.get(name, [])
            for i, child in enumerate(children):
                child_raw = raws[i] if i < len(raws) else None
                self._check_values(result, top, child_raw, child, f.mapped_by,
                                   "%s.%s[%d]" % (what, name, i + 1))

    def _check_key(self, result, raw, obj, local, compare=True):
        """A key must be unique in its scope; one that looks like a unique
        key (``Facility_...``) must parse and name this very object."""
        key = raw.key
        if key in local or key in self.reader.objindex:
            first = local.get(key)
            self._problem(result, "duplicate key%s" % (
                " (first defined at line %d)" % first if first else ""), raw)
            return
        local[key] = raw.line
        name, _, rest = key.partition("_")
        if name not in self.schema or is_generic(key):
            return      # a local name (chunk-local) or a generic key
        if name != obj.type.name:
            self._problem(result, "key names a %s, but the object is a %s"
                          % (name, obj.type.name), raw)
            return
        try:
            parse_attr_values(rest)
        except KeyError_ as exc:
            self._problem(result, "malformed key: %s" % exc, raw)
            return
        if compare and _comparable(self.schema, obj.type.name):
            try:
                actual = obj.unique_key()
            except (DataConsistencyError, KeyError_):
                actual = None   # reported as a missing required field already
            if actual is not None and actual != key:
                self._problem(result, "key does not match the object, whose key is %s"
                              % actual, raw)
        first = self.client.defined.get(key)
        if first is not None:
            self._problem(result, "duplicate key (first defined in chunk %d)" % first, raw)
            return
        used = self.client.expected.pop(key, None)
        if used is not None:
            self._problem(result, "used (chunk %d) before it is defined here: an ingest "
                          "would look for it in the catalogue" % used[1], raw)
        self.client.defined[key] = result.number


@lru_cache(maxsize=256)
def _rules(schema: Schema, name: str) -> tuple:
    """``(field name, FieldRule)`` of a type's attributes and many-to-one
    relations (icatdump.rules: the rules an ingest applies)."""
    return tuple(rules_of(schema[name]).items())


@lru_cache(maxsize=None)
def _comparable(schema: Schema, name: str) -> bool:
    """Whether a type's unique key can be recomputed from file content alone:
    not for keys holding ids (no constraint) or date-times (python-icat
    writes those in the server's time zone)."""
    etype = schema[name]
    if etype.key_fields == ("id",):
        return False
    for c in etype.key_fields:
        f = etype.fields[c]
        if f.kind == ONE and not _comparable(schema, f.type):
            return False
        if f.kind not in (ONE, MANY) and f.type == "Date":
            return False
    return True


def check(infile, fmt: str, schema: Schema, name=None, limit: int | None = None,
          url="", apiversion="") -> CheckReport:
    """Check a whole data file; keep the first ``limit`` problems (all if None)."""
    checker = Checker(infile, fmt, schema, url, apiversion, name)
    report = CheckReport(checker.name, fmt, schema.version)
    try:
        for result in checker.chunks():
            report.chunks += 1
            report.objects += len(result.objects)
            report.problem_count += len(result.problems)
            room = None if limit is None else max(0, limit - len(report.problems))
            report.problems.extend(result.problems[:room])
    finally:
        checker.close()
    report.expected = {k: v[0] for k, v in sorted(checker.client.expected.items())}
    return report
