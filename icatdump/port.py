"""icat.server's own import/export file (its REST ``port`` resource).

icat.server exports a catalogue, or what a query selects, as a text file of
tables, and imports such a file; ``doc/port.md`` gives the layout with the
places in icat.server's source it was read from.  In short::

    # ICAT Export file written by simple/root
    1.0

    Facility(daysUntilRelease:0,description:1,fullName:2,name:3,url:4)
    90,"A facility",NULL,"ESNF",NULL

Each table starts with a heading that names its entity type and, for each
column, the field it fills: ``name:N`` for an attribute, ``rel(name:N,...)``
for a many-to-one relation named by the key fields of its target (nested
for keys that hold relations), ``rel(?:N)`` for a target without a
uniqueness constraint, which the file names by the ``?`` column (``?:0``)
of the row that defined it.

This module has the format only: :class:`PortWriter` writes tables of
entities (their key relations included), :class:`PortReader` reads a file
into the ingest engine as any backend does (one chunk per
:data:`CHUNK_ROWS` rows of a table, references resolved by the base
class's search by attributes), and :func:`export` pages a catalogue through
the writer.  Serving it (``/icat/port``) is :mod:`icatdump.soap.rest`'s.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

from .dumpfile import DumpFileReader, RawObject, RawRef
from .entity import Entity
from .errors import DataFileError, SearchResultError
from .query import Query, literal
from .schema import ATTRIBUTE, META_ATTRS, ONE, EntityType, Schema
from .types import UTC, parse_datetime

#: The one version of the file layout icat.server writes and reads.
VERSION = "1.0"

#: icat.server's export order (``EntityInfoHandler.ENTITIES``); types of a
#: schema not named here follow in name order.
EXPORT_ORDER = (
    "User", "Grouping", "UserGroup", "Rule", "PublicStep", "Facility", "DatafileFormat",
    "Application", "Instrument", "InvestigationType", "DatasetType", "ParameterType",
    "SampleType", "Investigation", "Sample", "Dataset", "Datafile", "FacilityCycle",
    "DataCollection", "DataCollectionDatafile", "DataCollectionDataset",
    "DataCollectionInvestigation", "DataCollectionParameter", "DatafileParameter",
    "DatasetParameter", "InvestigationParameter", "Job", "Keyword", "Technique",
    "DatasetTechnique", "PermissibleStringValue", "Publication", "RelatedDatafile",
    "SampleParameter", "Shift", "Study", "DataPublicationType", "DataPublication", "Subject",
    "DataPublicationDate", "DataPublicationUser", "Affiliation", "RelatedItem",
    "FundingReference", "DataPublicationFunding", "InvestigationFunding", "InvestigationUser",
    "InvestigationGroup", "StudyInvestigation", "InvestigationInstrument",
    "InstrumentScientist", "DatasetInstrument", "InvestigationFacilityCycle")

#: Rows of one table read as one chunk of the ingest engine.
CHUNK_ROWS = 1000


class PortError(DataFileError):
    """A problem with a port file, with icat.server's error type."""

    def __init__(self, cause, icat_type="BAD_PARAMETER", line=None, table=None):
        super().__init__(cause, line=line, key=table)
        self.icat_type = icat_type


def export_order(schema: Schema) -> list[str]:
    """The types of ``schema`` in the order their tables are written."""
    known = [name for name in EXPORT_ORDER if name in schema]
    return known + sorted(e.name for e in schema if e.name not in EXPORT_ORDER)


def _columns(etype: EntityType) -> list[str]:
    """The attributes and many-to-one relations, by name as icat.server sorts them."""
    return sorted(list(etype.attrs) + list(etype.ones))


def _key_fields(etype: EntityType) -> list[str]:
    return sorted(etype.constraint)


def _ref_heading(schema: Schema, target: str, n: int) -> tuple[str, int]:
    """The heading of a reference to a ``target`` from column ``n`` on."""
    etype = schema[target]
    if not etype.constraint:
        return "?:%d" % n, n + 1
    parts, n = _field_headings(schema, etype, _key_fields(etype), n)
    return ",".join(parts), n


def _field_headings(schema: Schema, etype, names, n: int) -> tuple[list[str], int]:
    """The heading entries of the fields ``names`` of ``etype`` from column
    ``n`` on (an attribute ``name:N``, a reference ``name(<its key>)``) and
    the column after them."""
    parts = []
    for name in names:
        f = etype.fields[name]
        if f.kind == ATTRIBUTE:
            parts.append("%s:%d" % (name, n))
            n += 1
        else:
            inner, n = _ref_heading(schema, f.type, n)
            parts.append("%s(%s)" % (name, inner))
    return parts, n


def heading(schema: Schema, name: str, all_attributes: bool = False) -> str:
    """A table's heading line, as icat.server writes it (no line end)."""
    etype = schema[name]
    parts, n = [], 0
    if not etype.constraint:
        parts.append("?:0")
        n = 1
    if all_attributes:
        for meta in META_ATTRS:
            parts.append("%s:%d" % (meta, n))
            n += 1
    fields, _ = _field_headings(schema, etype, _columns(etype), n)
    return "%s(%s)" % (name, ",".join(parts + fields))


def key_includes(schema: Schema, name: str) -> list[str]:
    """The INCLUDE paths a search needs for :meth:`PortWriter.row` of a
    ``name`` object: each relation, and within it what its key names."""
    def paths(etype, prefix):
        for col in _key_fields(etype):
            f = etype.fields[col]
            if f.kind == ONE:
                here = prefix + col
                deeper = list(paths(schema[f.type], here + "."))
                yield from deeper or [here]
    out = []
    etype = schema[name]
    for col in etype.ones:
        deeper = list(paths(schema[etype.ones[col].type], col + "."))
        out += deeper or [col]
    return out


# -- values as text ------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\r": "\\r", "\n": "\\n",
            "\f": "\\f", "\b": "\\b"}
_TO_ESCAPE = re.compile(r'[\\"\t\r\n\f\b]')


def quote(text: str) -> str:
    """A string as icat.server writes it: in double quotes, with backslash
    escapes for ``\\ " \\t \\r \\n \\f \\b`` (other characters as they are)."""
    return '"%s"' % _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


def java_double(x: float) -> str:
    """``x`` as Java's ``Double.toString`` writes it: ``73.0``, ``0.001``,
    ``1.0E7``, ``1.234E-5`` (shortest digits that read back as ``x``)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if str(x).startswith("-") else "0.0"
    sign, digits, exp = decimal.Decimal(repr(x)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exp)         # digits before the decimal point
    minus = "-" if sign else ""
    if 1e-3 <= abs(x) < 1e7:
        if point <= 0:
            return "%s0.%s%s" % (minus, "0" * -point, text)
        whole, frac = text[:point].ljust(point, "0"), text[point:]
        return "%s%s.%s" % (minus, whole, frac or "0")
    return "%s%s.%sE%d" % (minus, text[0], text[1:] or "0", point - 1)


def java_date(value: _dt.datetime, zone=UTC) -> str:
    """A date as icat.server writes it (``yyyy-MM-dd'T'HH:mm:ss.SSSXXX`` in
    its JVM's zone; here ``zone``, None for the machine's)."""
    local = value.astimezone(zone) if zone is not None else value.astimezone()
    offset = local.utcoffset() or _dt.timedelta(0)
    if offset:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        suffix = "%s%02d:%02d" % (sign, abs(minutes) // 60, abs(minutes) % 60)
    else:
        suffix = "Z"
    return "%s.%03d%s" % (local.strftime("%Y-%m-%dT%H:%M:%S"), local.microsecond // 1000,
                          suffix)


def value_text(ftype: str, value, zone=UTC) -> str:
    """An attribute value as a port file writes it (None: ``NULL``)."""
    if value is None:
        return "NULL"
    if ftype == "String":
        return quote(value)
    if ftype == "boolean":
        return "true" if value else "false"
    if ftype == "Double":
        return java_double(float(value))
    if ftype == "Date":
        return java_date(value, zone)
    return str(value)       # Integer, Long, enums by name


# -- writing -------------------------------------------------------------------

class PortWriter:
    """Writes a port file to a text stream: :meth:`start`, then a
    :meth:`table` per type, in :func:`export_order`.

    Objects must carry their audit fields for ``all_attributes`` and have
    the relations of :func:`key_includes` included.
    """

    def __init__(self, out: TextIO, schema: Schema, written_by: str,
                 all_attributes: bool = False, zone=UTC):
        self.out = out
        self.schema = schema
        self.written_by = written_by
        self.all = all_attributes
        self.zone = zone
        self._nulls: dict[str, str] = {}

    def start(self) -> None:
        self.out.write("# ICAT Export file written by %s\n%s\n" % (self.written_by, VERSION))

    def table(self, name: str, pages) -> None:
        """A blank line, the heading, then a row for each object of ``pages``
        (lists of entities, or entities)."""
        self.out.write("\n%s\n" % heading(self.schema, name, self.all))
        for page in pages:
            if isinstance(page, Entity):
                page = [page]
            self.out.write("".join(self.row(obj) + "\n" for obj in page))

    def row(self, obj: Entity) -> str:
        etype = obj.type
        values = obj.values
        parts = []
        if not etype.constraint:
            parts.append(quote(str(obj.id)))
        if self.all:
            parts += [quote(str(values.get("createId"))),
                      java_date(values["createTime"], self.zone),
                      quote(str(values.get("modId"))),
                      java_date(values["modTime"], self.zone)]
        parts += self._fields(etype, _columns(etype), values)
        return ",".join(parts)

    def key(self, obj: Entity) -> str:
        """How a reference to ``obj`` is written: its key fields' values in
        name order (nested for relations), or its id quoted when its type
        has no uniqueness constraint."""
        etype = obj.type
        if not etype.constraint:
            return quote(str(obj.id))
        return ",".join(self._fields(etype, _key_fields(etype), obj.values))

    def _fields(self, etype, names, values) -> list[str]:
        """The texts of the fields ``names`` of an object of ``etype``: an
        attribute's value, a reference's key (or its null)."""
        parts = []
        for name in names:
            f = etype.fields[name]
            value = values.get(name)
            if f.kind == ATTRIBUTE:
                parts.append(value_text(f.type, value, self.zone))
            elif value is None:
                parts.append(self._null(f.type))
            else:
                parts.append(self.key(value))
        return parts

    def _null(self, target: str) -> str:
        """A null reference: ``NULL`` then ``NA`` for each further key column."""
        text = self._nulls.get(target)
        if text is None:
            columns = _ref_heading(self.schema, target, 0)[1]
            text = self._nulls[target] = ",".join(["NULL"] + ["NA"] * (columns - 1))
        return text


def _weight(schema: Schema, name: str) -> int:
    """Objects a search returns per ``name`` object with its key includes."""
    prefixes: set[str] = set()
    for path in key_includes(schema, name):
        parts = path.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return 1 + len(prefixes)


def export(out: TextIO, schema: Schema, written_by: str,
           readable_ids: Callable[[str], Iterator[list[int]]],
           fetch: Callable[[Query], list], max_entities: int,
           all_attributes: bool = False, zone=UTC, only: dict | None = None) -> None:
    """Write a port file of the objects ``readable_ids(type)`` yields (pages
    of ids in id order, as the exporting user may read them), each fetched
    with ``fetch`` (by id, with its key relations, as no one in particular:
    icat.server names a related object by its key whether or not the user
    may read it).  ``only`` (type → set of ids) exports those instead,
    tables without objects left out, as icat.server's query export."""
    writer = PortWriter(out, schema, written_by, all_attributes, zone)
    writer.start()
    for name in export_order(schema):
        if only is not None:
            ids = sorted(only.get(name, ()))
            if not ids:
                continue
            id_pages: Iterator[list[int]] = iter([ids])
        else:
            id_pages = readable_ids(name)
        includes = key_includes(schema, name)
        size = max(1, min(1000, max_entities // _weight(schema, name)))

        def pages(id_pages=id_pages, name=name, includes=includes, size=size):
            for ids in id_pages:
                for start in range(0, len(ids), size):
                    part = ids[start:start + size]
                    found = fetch(Query(name, conditions={"id": "IN (%s)" % ", ".join(
                        str(i) for i in part)}, includes=includes))
                    yield sorted(found, key=lambda o: o.id)
        writer.table(name, pages())


def collect_ids(results) -> dict:
    """Type → ids of the entities of a query's results and of everything
    included with them (what icat.server's query export writes)."""
    ids: dict[str, set] = {}
    stack = [r for r in results if isinstance(r, Entity)]
    while stack:
        obj = stack.pop()
        seen = ids.setdefault(obj.type.name, set())
        if obj.id in seen:
            continue
        seen.add(obj.id)
        for value in obj.values.values():
            if isinstance(value, Entity):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, Entity))
    return ids


# -- reading -------------------------------------------------------------------

_TOKEN = re.compile(r"""[ \t]*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<timestamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)(?![\w:.+-])
  | (?P<number>-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)(?![\w.])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[(),:?])
)""", re.X)
_UNESCAPE = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "b": "\b", '"': '"', "'": "'",
             "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)")


@dataclass
class Token:
    kind: str           # string, timestamp, integer, real, name, null, boolean, or the punctuation
    value: object


def tokens(line: str) -> list[Token]:
    """The tokens of a heading or a row, as icat.server's tokenizer sees them."""
    out: list[Token] = []
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos >= end:
            return out
        m = _TOKEN.match(line, pos)
        if m is None:
            raise PortError("Unexpected character %r near %r" % (line[pos], line[pos:pos + 9]))
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "string":
            body = text[1:-1]

            def unescape(e):
                ch = e.group(1)
                if ch not in _UNESCAPE:
                    raise PortError("Unexpected escape \\%s in %s" % (ch, text))
                return _UNESCAPE[ch]
            out.append(Token("string", _ESCAPE.sub(unescape, body)))
        elif kind == "number":
            real = any(c in text for c in ".eE")
            out.append(Token("real" if real else "integer", text))
        elif kind == "name":
            upper = text.upper()
            if upper == "NULL":
                out.append(Token("null", None))
            elif upper in ("TRUE", "FALSE"):
                out.append(Token("boolean", upper == "TRUE"))
            else:
                out.append(Token("name", text))
        elif kind == "punct":
            out.append(Token(text, text))
        else:
            out.append(Token(kind, text))


@dataclass
class Column:
    """What one heading entry fills: an attribute, an audit field, the
    row's own ``?``, a relation by ``?`` or by key attributes."""
    name: str               # the field ("" for the row's own "?")
    kind: str               # attr, meta, self, qref, ref
    offset: int = -1        # its column (ref: see paths)
    target: str = ""        # qref, ref: the related type
    paths: list = field(default_factory=list)      # ref: (attribute path, offset)


@dataclass
class Table:
    name: str
    columns: list[Column]
    line: int


class _Headings:
    """Parses a heading line (icat.server's grammar; commas between entries
    may be left out, as its parser allows)."""

    def __init__(self, schema: Schema, line: str):
        self.schema = schema
        self.toks = tokens(line)
        self.pos = 0

    def next(self, *kinds) -> Token:
        if self.pos >= len(self.toks):
            raise PortError("unexpected end of the heading, expected %s" % " or ".join(kinds))
        tok = self.toks[self.pos]
        if kinds and tok.kind not in kinds:
            raise PortError("unexpected %s %r in the heading, expected %s"
                            % (tok.kind, tok.value, " or ".join(kinds)))
        self.pos += 1
        return tok

    def peek(self) -> str | None:
        return self.toks[self.pos].kind if self.pos < len(self.toks) else None

    def offset(self) -> int:
        self.next(":")
        return int(str(self.next("integer").value))

    def table(self, lineno: int) -> Table:
        name = str(self.next("name").value)
        if name not in self.schema:
            raise PortError("%s is not an ICAT entity" % name)
        etype = self.schema[name]
        self.next("(")
        columns = []
        while self.peek() != ")":
            columns.append(self.column(etype))
            if self.peek() == ",":
                self.pos += 1
        self.next(")")
        if self.peek() is not None:
            raise PortError("unexpected %r after the heading" % self.toks[self.pos].value)
        return Table(name, columns, lineno)

    def column(self, etype: EntityType) -> Column:
        tok = self.next("name", "?")
        if tok.kind == "?":
            return Column("", "self", self.offset())
        fname = str(tok.value)
        if fname in META_ATTRS:
            return Column(fname, "meta", self.offset())
        f = etype.fields.get(fname)
        if f is None or f.kind not in (ATTRIBUTE, ONE):
            raise PortError("%s is not a field of %s" % (fname, etype.name))
        if f.kind == ATTRIBUTE:
            return Column(fname, "attr", self.offset())
        self.next("(")
        if self.peek() == "?":
            self.pos += 1
            col = Column(fname, "qref", self.offset(), f.type)
            self.next(")")
            return col
        col = Column(fname, "ref", -1, f.type)
        self.attributes(self.schema[f.type], "", col.paths)
        return col

    def attributes(self, etype: EntityType, prefix: str, paths: list) -> None:
        """``(name:N, rel(...), ...)`` after the opening parenthesis."""
        while True:
            fname = str(self.next("name").value)
            f = etype.fields.get(fname)
            if f is None or f.kind not in (ATTRIBUTE, ONE):
                raise PortError("%s is not a field of %s" % (fname, etype.name))
            if self.peek() == "(":
                self.pos += 1
                if f.kind != ONE:
                    raise PortError("%s of %s is not a relation" % (fname, etype.name))
                self.attributes(self.schema[f.type], prefix + fname + ".", paths)
            else:
                paths.append((prefix + fname, f.type, self.offset()))
            if self.next(",", ")").kind == ")":
                return


class PortReader(DumpFileReader):
    """Reads a port file for the ingest engine: a chunk per :data:`CHUNK_ROWS`
    rows of a table; ``all_attributes`` keeps the audit fields of the file
    on the entities (the catalogue decides whether to store them)."""

    mode = "r"

    def __init__(self, client, infile, all_attributes: bool = False, zone=UTC):
        super().__init__(client, infile)
        self.all_attributes = all_attributes
        self.zone = zone
        self.lineno = 0
        #: Key of each object of the chunk being read → its line.
        self.lines: dict[str, int] = {}
        self._saved: set[str] = set()       # "?" keys defined so far
        self.table: Table | None = None

    # -- lines ------------------------------------------------------------------
    def _lines(self) -> Iterator[tuple[int, str]]:
        for raw in self.infile:
            self.lineno += 1
            yield self.lineno, raw.strip()

    def getdata(self):
        lines = self._lines()
        for lineno, text in lines:
            if text and not text.startswith("#"):
                if text != VERSION:
                    raise PortError("Version of file must be %s" % VERSION, "VALIDATION", lineno)
                break
        else:
            raise PortError("No version of file encountered", "VALIDATION", self.lineno)
        pending: list = []
        for lineno, text in lines:
            if text.startswith("#"):
                continue
            if not text:
                if pending:
                    yield pending
                    pending = []
                self.table = None
                continue
            if self.table is None:
                try:
                    self.table = _Headings(self.schema, text).table(lineno)
                except PortError as exc:
                    exc.line = lineno
                    raise
                continue
            pending.append((lineno, text))
            if len(pending) >= CHUNK_ROWS:
                yield pending
                pending = []
        if pending:
            yield pending

    def parse_chunk(self, data) -> Iterator[RawObject]:
        self.lines.clear()
        table = self.table
        assert table is not None
        tag = self.schema[table.name].instance_name
        for lineno, text in data:
            try:
                raw = self._row(table, tag, lineno, text)
            except PortError as exc:
                exc.line, exc.key = lineno, table.name
                raise
            self.lines[raw.key or ""] = lineno
            yield raw

    def _row(self, table: Table, tag: str, lineno: int, text: str) -> RawObject:
        values = self._values(text)

        def at(offset):
            if offset >= len(values):
                raise PortError("Data column %d does not exist" % offset)
            return values[offset]
        etype = self.schema[table.name]
        key = "%s@%d" % (table.name, lineno)
        fields: list = []
        for col in table.columns:
            if col.kind == "self":
                tok = at(col.offset)
                if tok.kind != "string":
                    raise PortError("Expected a String value for column %d" % col.offset)
                key = "?%s.%s" % (table.name, tok.value)
                self._saved.add(key)
            elif col.kind in ("attr", "meta"):
                ftype = "Date" if col.name in ("createTime", "modTime") else \
                    "String" if col.kind == "meta" else etype.fields[col.name].type
                value = self._value(ftype, at(col.offset), col.offset)
                if col.kind == "attr":
                    fields.append((col.name, value))
                elif self.all_attributes and value is not None:
                    fields.append((col.name, value))
            elif col.kind == "qref":
                tok = at(col.offset)
                if tok.kind == "null":
                    continue
                ref = "?%s.%s" % (col.target, tok.value)
                if ref not in self._saved:
                    raise PortError("? field '%s' not defined yet" % tok.value)
                fields.append((col.name, RawRef(key=ref)))
            else:
                attrs: dict = {}
                for n, (path, ftype, offset) in enumerate(col.paths):
                    tok = at(offset)
                    if tok.kind == "null":
                        if n == 0:
                            attrs = {}
                            break
                        raise PortError("NULL in column %d of a reference whose first "
                                        "column is not NULL" % offset)
                    attrs[path] = self._value(ftype, tok, offset)
                if attrs:
                    fields.append((col.name, RawRef(attrs=attrs)))
        return RawObject(tag, key, fields, lineno)

    @staticmethod
    def _values(text: str) -> list[Token]:
        toks = tokens(text)
        values = toks[0::2]
        for sep in toks[1::2]:
            if sep.kind != ",":
                raise PortError("unexpected %r between values, expected ','" % sep.value)
        if toks and toks[-1].kind == ",":
            raise PortError("a row may not end with ','")
        for tok in values:
            if tok.kind in "(),:?":
                raise PortError("unexpected %r where a value was expected" % tok.value)
        return values

    def _value(self, ftype: str, tok: Token, offset: int):
        """A token as the Python value of a field of type ``ftype``, checked
        as icat.server checks it (a string for a String, and so on)."""
        kind, value = tok.kind, tok.value
        if kind == "null":
            return None
        if ftype == "String":
            if kind == "string":
                return value
            raise PortError("Expected a string value for column %d" % offset)
        if ftype in ("Integer", "Long"):
            if kind == "integer":
                return int(str(value))
            raise PortError("Expected an integer value for column %d" % offset)
        if ftype == "Double":
            if kind in ("integer", "real"):
                return float(str(value))
            raise PortError("Expected a real or integer value for column %d" % offset)
        if ftype == "boolean":
            if kind == "boolean":
                return value
            raise PortError("Expected a boolean value for column %d" % offset)
        if ftype == "Date":
            if kind == "timestamp":
                return parse_datetime(str(value), naive=self.zone)
            raise PortError("Expected a date value for column %d" % offset)
        if kind == "name":         # an enum, by name
            return str(value).upper()
        raise PortError("Expected a %s value for column %d" % (ftype, offset))

    # -- objects ----------------------------------------------------------------
    def read_object(self, raw: RawObject, objindex, lookup=None):
        meta = [(n, v) for n, v in raw.fields if n in META_ATTRS]
        if meta:
            raw.fields = [(n, v) for n, v in raw.fields if n not in META_ATTRS]
        obj = super().read_object(raw, objindex, lookup)
        if obj is not None:
            obj.values.update(meta)
        return obj

    def index_object(self, objindex, key, obj):
        # A "?" row may be named by any later table: kept for the run, as
        # icat.server keeps its "?" ids.
        if key and key.startswith("?"):
            self.objindex[key] = obj
        elif key:
            super().index_object(objindex, key, obj)

    def _search_by_attributes(self, target, attrs, objindex) -> Entity:
        """The object a reference's columns name.  When they are its key (as
        in every file icat.server writes) it is found by its python-icat
        key, which a catalogue searches for and a file tool without one
        (``icatdata convert``) builds the object from; else by a search."""
        names = ", ".join("%s = %s" % (p, literal(v)) for p, v in attrs.items())
        keyed = _keyed(self.schema, target, attrs)
        if keyed is not None:
            try:
                return self.client.search_unique_key(keyed.unique_key(), self._ref_cache)
            except SearchResultError as exc:
                many = "not unique" in str(exc)
        else:
            conditions = {path: "= " + literal(value) for path, value in attrs.items()}
            found = self.client.search(Query(target, conditions=conditions))
            if len(found) == 1:
                return found[0]
            many = bool(found)
        if not many:
            raise PortError("Import failed when looking up existing %s (%s)" % (target, names),
                            "NO_SUCH_OBJECT_FOUND")
        raise PortError("Import failed with multiple results when looking up existing %s (%s)"
                        % (target, names))


def _keyed(schema: Schema, target: str, attrs: dict) -> Entity | None:
    """An object of ``target`` with the values of ``attrs`` (attribute
    path → value), if they are exactly its uniqueness constraint (nested
    for relations); else None."""
    used = [0]

    def build(name, prefix):
        etype = schema[name]
        if not etype.constraint:
            return None
        values: dict = {}
        for col in etype.constraint:
            f = etype.fields[col]
            if f.kind == ATTRIBUTE:
                if prefix + col not in attrs:
                    return None
                values[col] = attrs[prefix + col]
                used[0] += 1
            else:
                inner = build(f.type, prefix + col + ".")
                if inner is None:
                    return None
                values[col] = inner
        return Entity(etype, values)
    obj = build(target, "")
    return obj if obj is not None and used[0] == len(attrs) else None
