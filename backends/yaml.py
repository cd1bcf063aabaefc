"""YAML data files, read and written as python-icat 1.7.0 does (ICAT-FACTS §5.3).

Reading composes one YAML document (= one chunk) at a time into a node
tree and builds values from it with PyYAML's *safe* constructor only: a
``!!python/...`` tag is an error, never executed.  Working from nodes
rather than loaded dicts gives every object its line number and lets
duplicate keys be caught instead of silently overwritten.  libyaml
(``CSafeLoader``) is used when PyYAML was built with it.

Writing gives python-icat's bytes: ``yaml.dump(chunk,
default_flow_style=False, explicit_start=True)``.  Most objects are
written as text directly (see "Writing objects directly" below): even with
libyaml, PyYAML's representer costs more than the rest of a dump.  For
the others, libyaml's emitter (``CSafeDumper``, ~6x faster than PyYAML's
own) writes the same bytes except in two cases,
found by comparing both on the example files and on random data:
double-quoted scalars (a character outside printable ASCII, a blank at
either end or next to a line break) long enough to wrap are folded at
other places, and keys of 123-128 characters are written plainly where
PyYAML switches to the explicit ``? key`` form.  Objects that contain such a string are
written with the pure-Python emitter; the rest of the chunk with libyaml.
A block mapping's entries are emitted independently of each other, so the
pieces concatenate to exactly what one ``yaml.dump`` of the chunk gives.
"""

from __future__ import annotations

import codecs
import datetime
import re

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

import icatdump
from icatdump import limits
from icatdump.dumpfile import DataFileError, DumpFileReader, DumpFileWriter, RawObject, Record
from icatdump.dumporder import restore_order
from icatdump.schema import MANY
from icatdump.streams import refuse_other_encoding
from icatdump.types import ValueProblem, refuse_finer_than_microseconds, to_yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PureDumper = yaml.SafeDumper

class _Loader(SafeLoader):
    """PyYAML's safe loader, remembering the implicit tags of plain scalars.

    The composer asks :meth:`resolve` for every scalar, keys included, and
    PyYAML's answer is a run of regular expressions chosen by the first
    character.  A data file repeats the same few dozen keys (``name``,
    ``fileSize``, ``dataset``...) on every object, so remembering the
    answer per value (it depends on nothing else while no path resolvers
    are registered) saves most of that work.  The memory is bounded.  A
    value that misses (a name, a location) and whose first character starts
    no implicit type (no regular expression is registered for it) is a plain
    string without asking: PyYAML would try no expression on it either.
    """

    memo_size = 4096

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict[str, str] = {}
        resolvers = self.yaml_implicit_resolvers
        # None: expressions tried on every value (none in the safe loader).
        self._typed_starts = None if None in resolvers else frozenset(resolvers)

    def resolve(self, kind, value, implicit):
        if kind is not ScalarNode or not implicit[0] or self.yaml_path_resolvers:
            return _resolve(self, kind, value, implicit)
        tag = self._tags.get(value)
        if tag is None:
            starts = self._typed_starts
            if starts is not None and value[:1] not in starts:
                return self.DEFAULT_SCALAR_TAG
            tag = _resolve(self, kind, value, implicit)
            if len(self._tags) < self.memo_size:
                self._tags[value] = tag
        return tag


_resolve = SafeLoader.resolve


class _CheckedLoader(yaml.composer.Composer, _Loader):
    """:class:`_Loader` composing in Python from libyaml's events, so that
    the input read between two events can be measured (:class:`_MeasuredText`):
    one scalar or comment is all that lies between them.  Slower than
    libyaml's own composer; used only for documents past the value ceiling."""

    def __init__(self, stream, measured):
        _Loader.__init__(self, stream)
        self.anchors = {}
        self._measured = measured

    def get_event(self):
        event = _Loader.get_event(self)
        self._measured.event(event.end_mark.line + 1)
        return event


class _Restart(Exception):
    """A document has grown past the value ceiling under the fast loader."""


class YAMLDumpFileReader(DumpFileReader):
    """Read a YAML data file one document (chunk) at a time."""

    mode = "r"
    _rank = None        # entity name -> place in the restore order

    def getdata(self):
        """Iterate over the documents of the file, as composed node trees.

        libyaml composes a document up to the value ceiling; a longer one is
        read again from its start by :class:`_CheckedLoader` (see
        :class:`_MeasuredText`).
        """
        measured = _MeasuredText(self.infile, self.name,
                                 limits.value_size(self.max_value_size),
                                 limits.chunk_size(self.max_chunk_size))
        loader = self._loader = _Loader(measured)
        try:
            while True:
                try:
                    if not loader.check_node():
                        return
                    node = loader.get_node()
                except _Restart:
                    loader.dispose()
                    loader = self._loader = _CheckedLoader(measured.restart(), measured)
                    continue
                except yaml.YAMLError as exc:
                    if measured.header_only():
                        return
                    raise _yaml_error(exc) from None
                except UnicodeDecodeError as exc:
                    raise DataFileError("not UTF-8 text: byte 0x%02x at offset %d of a read block"
                                        % (exc.object[exc.start], exc.start)) from None
                measured.returned(node)
                yield node
                # Forget this document's constructed values.
                loader.constructed_objects = {}
                loader.recursive_objects = {}
        finally:
            loader.dispose()

    def parse_chunk(self, node):
        """The objects of one document: types in restore order, keys sorted."""
        if node is None or (isinstance(node, ScalarNode) and node.value in ("", "~", "null")):
            return      # an empty document is an empty chunk
        if not isinstance(node, MappingNode):
            raise DataFileError("a chunk must be a mapping of entity types",
                                line=_line(node))
        rank = self._rank
        if rank is None:
            # python-icat's restore order, whatever order the file has.
            rank = self._rank = {t: i for i, t in enumerate(restore_order(self.schema))}
        sections = []
        for tnode, onode in self._pairs(node):
            tag = tnode.value
            try:
                etype = self.schema.by_instance_name(tag)
            except KeyError:
                etype = None
            if etype is None:
                raise DataFileError("unknown entry '%s' in the data" % tag, line=_line(tnode))
            if _is_null(onode):
                continue
            if not isinstance(onode, MappingNode):
                raise DataFileError("'%s' must map keys to objects" % tag, line=_line(onode))
            sections.append((rank[etype.name], tag, etype, onode))
        for _, tag, etype, onode in sorted(sections, key=lambda s: s[0]):
            objects = sorted(self._pairs(onode), key=lambda kv: kv[0].value)
            for knode, vnode in objects:
                yield self._object(etype, tag, knode.value, vnode, _line(knode))

    def _pairs(self, node: MappingNode):
        """Key/value node pairs of a mapping: duplicates refused, merges applied.

        Keys written twice are an error (PyYAML would silently keep the
        last); keys from a ``<<`` merge give way to those written out.
        """
        pairs = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                raise DataFileError("mapping keys must be plain names", line=_line(knode))
            if knode.tag == _MERGE:
                return self._merged_pairs(node)
            if knode.value in pairs:
                raise DataFileError("duplicate key '%s'" % knode.value, line=_line(knode))
            pairs[knode.value] = (knode, vnode)
        return list(pairs.values())

    def _merged_pairs(self, node: MappingNode):
        """:meth:`_pairs` of a mapping with a ``<<`` merge key (rare: the
        one pass over the keys of the common case does not do for them)."""
        seen = set()
        for knode, _ in node.value:
            if not isinstance(knode, ScalarNode):
                raise DataFileError("mapping keys must be plain names", line=_line(knode))
            if knode.tag == _MERGE:
                continue
            if knode.value in seen:
                raise DataFileError("duplicate key '%s'" % knode.value, line=_line(knode))
            seen.add(knode.value)
        self._loader.flatten_mapping(node)
        pairs = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                raise DataFileError("mapping keys must be plain names", line=_line(knode))
            pairs.pop(knode.value, None)
            pairs[knode.value] = (knode, vnode)
        return list(pairs.values())

    def _object(self, etype, tag, key, node, line=None) -> RawObject:
        line = line or _line(node)
        if _is_null(node):
            return RawObject(tag, key, [], line)
        if not isinstance(node, MappingNode):
            raise DataFileError("the definition of %s must be a mapping" % (key or tag),
                                line=_line(node))
        specs = self.field_specs(etype) if etype is not None else {}
        fields = []
        for knode, vnode in self._pairs(node):
            name = knode.value
            spec = specs.get(name)
            if spec is not None and spec[1] is MANY and isinstance(vnode, SequenceNode):
                ctype = spec[2]
                fields.append((name, [self._object(ctype, ctype.instance_name, None, item)
                                      for item in vnode.value]))
            elif vnode.__class__ is ScalarNode and vnode.tag == _STR:
                fields.append((name, vnode.value))      # what the constructor would give
            else:
                try:
                    fields.append((name, self._construct(vnode)))
                except DataFileError as exc:
                    exc.key = exc.key or key
                    raise
        return RawObject(tag, key, fields, line)

    def _construct(self, node):
        tag = node.tag
        if node.__class__ is ScalarNode and tag == _INT:
            value = node.value
            if value.isdigit() and value[0] != "0":
                return int(value)   # plain decimal; PyYAML reads 0-prefixed ones as octal
        if tag in _NOT_VALUES:
            raise DataFileError("a value of YAML type !!%s: ICAT values are strings, numbers, "
                                "booleans, dates or null" % tag.rsplit(":", 1)[-1],
                                line=_line(node))
        if tag == _TIMESTAMP:
            try:
                refuse_finer_than_microseconds(node.value)
            except ValueProblem as exc:
                raise DataFileError(str(exc), line=_line(node)) from None
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc) from None
        except (ValueError, OverflowError, AttributeError) as exc:
            # PyYAML's constructors let these through: "2010-13-45" is
            # matched as a timestamp, then datetime() refuses month 13;
            # an offset with seconds ("-00:16:08") is matched by the
            # resolver but not by the constructor's own expression.
            raise DataFileError("invalid %s value %r: %s"
                                % (node.tag.rsplit(":", 1)[-1], node.value, exc),
                                line=_line(node)) from None


class _MeasuredText:
    """The text on its way to the loader, measured (icatdump/limits.py).

    libyaml builds a whole scalar, and the loader a whole document, before
    either hands anything out: a 1 GiB scalar took 3.1 GB.  So the text is
    measured here, before the loader sees it.  Documents start at ``---``
    lines (or after ``...`` lines); one longer than the chunk ceiling is
    refused.  A document up to the value ceiling cannot hold a longer
    scalar, and libyaml composes it at full speed; the text of the
    documents it has not returned yet is kept.  When that grows past the
    value ceiling, the fast loader is dropped and :class:`_CheckedLoader`
    reads on from the start of the first of them (kept text first, on the
    same lines): it reports every event, and more text than the ceiling
    between two events is a scalar (or comment) too long.  Costs per block
    read: one search for the markers and one line count.
    """

    #: What libyaml may read ahead of the event it is working on.
    slack = 64 << 10

    def __init__(self, stream, name, max_value: int, max_chunk: int):
        self._stream = stream
        self.name = name
        self._max_value, self._max_chunk = max_value, max_chunk
        self._pos, self._line = 0, 1    # characters and lines passed on
        self._tail = "\n"              # the end of the text passed on, for split markers
        self._kept = []                 # the text from _kept_from on (fast loader only)
        self._kept_from = (0, 1, False)     # (offset, line, after '...') of the first
        self._starts = []               # document not returned, and of later ones
        self._base = 0                  # the offset of the loader's first character
        self._replay, self._replay_at = "", 0     # kept text, read again after a restart
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._checked = False           # under _CheckedLoader
        self._since_event, self._event_line = 0, 1

    def read(self, size=-1) -> str:
        if self._replay_at < len(self._replay):
            at = self._replay_at
            self._replay_at = end = len(self._replay) if size is None or size < 0 else at + size
            text = self._replay[at:end]
        else:
            self._replay = ""
            try:
                text = self._stream.read(size)
                if text.__class__ is not str:     # a binary stream: UTF-8, as text streams are
                    text = self._decoder.decode(text, final=not text)
            except UnicodeDecodeError as exc:
                if self._pos == 0:
                    refuse_other_encoding(exc.object, self.name)
                raise
            self._account(text)
        if self._checked:
            self._since_event += len(text)
            if self._since_event > self._max_value + self.slack:
                raise DataFileError("a scalar or comment longer than %s, the limit (%s raises it)"
                                    % (limits.describe(self._max_value), limits.VALUE_ENV),
                                    self.name, line=self._event_line)
        elif self._pos - self._kept_from[0] > self._max_value:
            raise _Restart
        return text

    def _account(self, text: str):
        """Note the document boundaries in ``text``; check the chunk ceiling.

        A marker is found with the line break before it and the blank
        after it, so the last four characters passed on are searched again
        with ``text``: a marker found partly in them was not complete before.
        """
        tail = self._tail
        joined = tail + text
        t = len(tail)
        line, at = self._line, t
        for m in _DOCUMENT_MARKER.finditer(joined):
            start = m.start() + 1
            if start < t:
                where = self._line - tail.count("\n", start)
            else:
                line += joined.count("\n", at, start)
                at = start
                where = line
            self._starts.append((self._pos - t + start, where, m.group(1) == "..."))
        if not self._checked:
            self._kept.append(text)
        self._line = line + joined.count("\n", at)
        self._pos += len(text)
        self._tail = joined[-4:]
        offset, line, _ = self._starts[-1] if self._starts else self._kept_from
        if self._pos - offset > self._max_chunk:
            raise DataFileError("a document (chunk) longer than %s, the limit (%s raises it)"
                                % (limits.describe(self._max_chunk), limits.CHUNK_ENV),
                                self.name, line=line)

    def returned(self, node):
        """The loader returned ``node``: the first document not returned
        starts at the first boundary after its end."""
        if node is None:
            return
        end = self._base + node.end_mark.index
        while self._starts and self._starts[0][0] < end:
            self._starts.pop(0)
        if self._starts:
            self._kept_from = self._starts.pop(0)
        else:       # the end of the stream: the loader has read the marker of any next one
            self._kept_from = (self._pos, self._line, False)
        if not self._checked:
            kept = "".join(self._kept)
            self._kept = [kept[self._kept_from[0] - (self._pos - len(kept)):]]

    def restart(self):
        """A stream for :class:`_CheckedLoader`: from the start of the first
        document not returned, on the same lines (blank ones before it)."""
        offset, line, after_end = self._kept_from
        kept = "".join(self._kept)
        text = kept[offset - (self._pos - len(kept)):]
        skip = text.find("\n") if after_end else 0     # the '...' line itself, not its break
        if skip < 0:
            skip = len(text)
        self._replay, self._replay_at = "\n" * (line - 1) + text[skip:], 0
        self._base = offset + skip - (line - 1)
        self._kept = []
        self._checked = True
        self._since_event = 0
        return self

    def event(self, line: int):
        self._since_event, self._event_line = 0, line

    def header_only(self) -> bool:
        """Whether the whole stream was directives, comments and blank
        lines: the file python-icat (and this writer) makes of a catalogue
        with nothing to dump, which YAML itself refuses (a ``%YAML``
        directive must be followed by a document).  It holds no chunk."""
        if self._checked or self._kept_from[0] != 0 or self._stream.read(1):
            return False
        return all(_HEADER_LINE.match(line) for line in "".join(self._kept).splitlines())


#: A line of a header without documents: a directive, a comment or blank.
_HEADER_LINE = re.compile(r"^[ \t]*(?:[%#].*)?$")

#: A ``---`` or ``...`` line, with the line break before it.
_DOCUMENT_MARKER = re.compile(r"\n(---|\.\.\.)(?=[ \t\r\n])")


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
#: Types the safe constructor builds that no ICAT attribute holds (it
#: refuses tags it does not know, ``!!python/...`` among them, by itself).
_NOT_VALUES = frozenset("tag:yaml.org,2002:" + t for t in ("binary", "set", "omap", "pairs"))
_MERGE = "tag:yaml.org,2002:merge"


def _is_null(node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line(node) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _yaml_error(exc: yaml.YAMLError) -> DataFileError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    text = " ".join(str(getattr(exc, a)) for a in ("context", "problem")
                    if getattr(exc, a, None)) or str(exc)
    return DataFileError("YAML error: %s" % text, line=mark.line + 1 if mark else None)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

# Strings libyaml may emit differently: any that PyYAML double-quotes --
# characters outside printable ASCII, blanks at either end, a space next to
# a line break ...
_NEEDS_PURE = re.compile(r"[^\x20-\x7e\n]|^[ \n]|[ \n]\Z| \n|\n ")
# ... mapping keys that are not one printable line (they are double-quoted
# too) ...
_KEY_NEEDS_PURE = re.compile(r"[^\x20-\x7e]|^ | \Z")
# ... and keys in the length range where the two choose differently
# between a simple and an explicit ("? key") key.
_KEY_RANGE = range(120, 132)


def _key_needs_pure(key) -> bool:
    return isinstance(key, str) and (len(key) in _KEY_RANGE or bool(_KEY_NEEDS_PURE.search(key)))


def _needs_pure(key: str, obj: dict) -> bool:
    return _key_needs_pure(key) or _value_needs_pure(obj)


def _value_needs_pure(value) -> bool:
    if isinstance(value, str):
        return bool(_NEEDS_PURE.search(value))
    if isinstance(value, dict):
        return any(_key_needs_pure(k) or _value_needs_pure(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_value_needs_pure(v) for v in value)
    return False


class YAMLDumpFileWriter(DumpFileWriter):
    """Write a YAML data file byte-identical to python-icat's."""

    mode = "w"

    def __init__(self, client, outfile):
        super().__init__(client, outfile)
        self.data: dict[str, dict[str, dict]] = {}

    def head(self):
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S %z")
        self.outfile.write("%%YAML 1.1\n# Date: %s\n# Service: %s\n# ICAT-API: %s\n"
                           "# Generator: %s\n"
                           % (date, self.client.url, self.client.apiversion,
                              icatdump.GENERATOR))

    def startdata(self):
        if self.data:
            self.outfile.write(dump_chunk(self.data))
        self.data = {}

    def write_record(self, key, record: Record):
        self.data.setdefault(record.type.instance_name, {})[key] = _record_dict(record)

    def finalize(self):
        self.startdata()


def _record_dict(record: Record) -> dict:
    d = {name: to_yaml(value) for name, value in record.attrs}
    d.update(record.refs)
    for name, children in record.children:
        d[name] = [_record_dict(c) for c in children]
    return d


def _dump(data, dumper) -> str:
    return yaml.dump(data, Dumper=dumper, default_flow_style=False)


def dump_chunk(data: dict[str, dict[str, dict]]) -> str:
    """One YAML document as ``yaml.dump(data, ..., explicit_start=True)`` gives it.

    The types of a chunk come sorted by name, as PyYAML sorts a mapping's
    keys (python-icat's bytes), not in the dump order; a reader takes them
    in the restore order (:func:`icatdump.dumporder.restore_order`).

    Each object is written directly (:func:`_direct`) when its text is
    certain; the others in runs of objects that the same emitter may
    write: libyaml where it is known to agree with PyYAML, PyYAML
    otherwise (see the module docstring).
    """
    out = ["---\n"]
    for tag in sorted(data):
        objs = data[tag]
        if not objs:
            out.append(_dump({tag: objs}, FastDumper))
            continue
        out.append(tag + ":\n")
        run, run_pure = {}, None
        for key in sorted(objs):
            text = _direct(key, objs[key])
            if text is not None:
                if run:
                    out.append(_dump_run(tag, run, run_pure))
                    run = {}
                out.append(text)
                continue
            pure = _needs_pure(key, objs[key])
            if run and pure != run_pure:
                out.append(_dump_run(tag, run, run_pure))
                run = {}
            run[key], run_pure = objs[key], pure
        if run:
            out.append(_dump_run(tag, run, run_pure))
    return "".join(out)


def _dump_run(tag, run, pure) -> str:
    """The entries of ``run`` under ``tag:``, without that line."""
    text = _dump({tag: run}, PureDumper if pure else FastDumper)
    return text[text.index("\n") + 1:]


# Writing objects directly.  PyYAML's representer and emitter cost more
# than everything else in a dump, so an object is written here when all its
# scalars are of a kind whose text is certain: integers, booleans, and
# one-line strings: printable ASCII ones plain where PyYAML's analysis
# allows it (and its resolver reads them back as strings), single-quoted
# otherwise; any other character makes PyYAML double-quote the string,
# with its escapes.  All on lines short enough that PyYAML does not fold
# them (past column 80 it breaks plain and single-quoted strings at a
# space, double-quoted ones also after an escape).  Mapping keys must be plain; from 123 characters
# on (128 with the ``!!str`` tag PyYAML counts) a key is written in the
# explicit ``? key`` form, as object keys of datafiles often are.  The
# layout is ``default_flow_style=False``: keys sorted, two spaces a level,
# sequences of mappings at the level of their key.  Anything else goes to
# PyYAML itself; tests/test_backends.py compares the two on random data.

_PRINTABLE_LINE = re.compile(r"[\x20-\x7e]*")
_RESOLVER = yaml.resolver.Resolver()
_RESOLVED_FIRST = frozenset(k for k in yaml.resolver.Resolver.yaml_implicit_resolvers if k)
_STR_TAG = "tag:yaml.org,2002:str"
_WIDTH = 80


#: Strings with none of the characters that can stop a plain scalar.
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9/(=_][A-Za-z0-9/()=_.+-]*")


def _plain(s: str) -> bool:
    """Whether PyYAML writes a printable one-line string plain in block context."""
    if not _SAFE_PLAIN.fullmatch(s):
        if not s or s[0] == " " or s[-1] == " " or s[0] in "#,[]{}&*!|>'\"%@`":
            return False
        if s[0] in "?:-" and (len(s) == 1 or s[1] == " "):
            return False
        if ": " in s or s[-1] == ":" or " #" in s or s.startswith(("---", "...")):
            return False
    # Read back as a string, not as a number, boolean, null, date...
    return s[0] not in _RESOLVED_FIRST or \
        _RESOLVER.resolve(ScalarNode, s, (True, False)) == _STR_TAG


def _scalar(value, column: int):
    """The text of a scalar value written from ``column`` on, or None if not certain."""
    cls = value.__class__
    if cls is int:
        return str(value)
    if cls is bool:
        return "true" if value else "false"
    if cls is not str:
        return None
    if _PRINTABLE_LINE.fullmatch(value):
        text = value if _plain(value) else "'%s'" % value.replace("'", "''")
        if column + len(text) > _WIDTH and " " in value:
            return None
        return text
    if "\n" in value:
        return None
    text = '"%s"' % _DOUBLE_QUOTED.sub(_escape, value)
    return text if column + len(text) <= _WIDTH else None


#: What PyYAML escapes in a double-quoted string (without allow_unicode).
_DOUBLE_QUOTED = re.compile('["\\\\]|[^\x20-\x7e]')
_ESCAPES = {"\0": "0", "\x07": "a", "\x08": "b", "\t": "t", "\n": "n", "\x0b": "v",
            "\x0c": "f", "\r": "r", "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N",
            "\xa0": "_", "\u2028": "L", "\u2029": "P"}


def _escape(m) -> str:
    ch = m.group()
    short = _ESCAPES.get(ch)
    if short is not None:
        return "\\" + short
    code = ord(ch)
    if code <= 0xFF:
        return "\\x%02X" % code
    if code <= 0xFFFF:
        return "\\u%04X" % code
    return "\\U%08X" % code


_SIMPLE_KEY_MAX = 122


def _key_ok(key, limit=_SIMPLE_KEY_MAX) -> bool:
    return key.__class__ is str and len(key) <= limit and \
        _PRINTABLE_LINE.fullmatch(key) is not None and _plain(key)


#: Field names seen as keys inside objects (a few dozen) and whether they
#: are plain simple keys.
_FIELD_KEYS: dict = {}


def _field_key_ok(key) -> bool:
    ok = _FIELD_KEYS.get(key)
    if ok is None:
        ok = _key_ok(key)
        if len(_FIELD_KEYS) < 1000:
            _FIELD_KEYS[key] = ok
    return ok


def _direct(key, obj) -> str | None:
    """The entry ``key: obj`` of a type section (indented two spaces), or None."""
    if obj.__class__ is not dict:
        return None
    if _key_ok(key):
        if not obj:
            return "  %s: {}\n" % key
        out = ["  %s:\n" % key]
        first = "    "
    elif " " not in key and _key_ok(key, limit=len(key)):
        # The explicit form; a plain key there would be folded at a space.
        if not obj:
            return "  ? %s\n  : {}\n" % key
        out = ["  ? %s\n" % key]
        first = "  : "
    else:
        return None
    if not _mapping(out, obj, first, "    "):
        return None
    return "".join(out)


def _mapping(out: list, d: dict, first: str, indent: str) -> bool:
    """Append a block mapping; its first line starts with ``first``, the
    others with ``indent``.  False if some part of it is not certain."""
    prefix = first
    for k in sorted(d):
        if not _field_key_ok(k):
            return False
        v = d[k]
        if v.__class__ is list:
            if not v:
                out.append("%s%s: []\n" % (prefix, k))
            else:
                out.append("%s%s:\n" % (prefix, k))
                item_first, item_indent = indent + "- ", indent + "  "
                for item in v:
                    if item.__class__ is not dict:
                        return False
                    if not item:
                        out.append(item_first + "{}\n")
                    elif not _mapping(out, item, item_first, item_indent):
                        return False
        elif v.__class__ is dict:
            if not v:
                out.append("%s%s: {}\n" % (prefix, k))
            else:
                out.append("%s%s:\n" % (prefix, k))
                sub = indent + "  "
                if not _mapping(out, v, sub, sub):
                    return False
        else:
            text = _scalar(v, len(prefix) + len(k) + 2)
            if text is None:
                return False
            out.append("%s%s: %s\n" % (prefix, k, text))
        prefix = indent
    return True


# ---------------------------------------------------------------------------
# Recognizing a file (see icatdump.inputs)
# ---------------------------------------------------------------------------

def sniff(head: bytes) -> bool:
    """Whether a file's first bytes look like a YAML data file: a
    directive, document start or comment first, or an entity-type key
    (``user:``); text, not markup."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text or text.startswith(b"<") or b"\x00" in head[:1024]:
        return False
    try:
        sample = text[:512].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 500:
            return False
        sample = text[:exc.start].decode("utf-8")     # a character cut at the end
    return sample.startswith(("%YAML", "---", "#")) or bool(_YAML_MAPPING.match(sample))


#: A file that starts with neither ``%YAML``, ``---`` nor a comment must at
#: least open with an entity-type key (``user:``) to be a YAML data file.
_YAML_MAPPING = re.compile(r"[A-Za-z]\w*:(\s|$)")

#: python-icat's header comments and the fields they give.
_HEADER_FIELDS = {"Date": "date", "Service": "service", "ICAT-API": "apiversion",
                  "Generator": "generator"}


def read_header(stream) -> dict:
    """The header comments before the first document (``# ICAT-API: 6.2.0``)
    from the first bytes of a file; a missing field is left out."""
    result = {}
    for line in stream.read().decode("utf-8", "replace").splitlines():
        if line.startswith("---"):
            break
        m = re.match(r"# ([\w-]+): (.*)$", line)
        if m and m.group(1) in _HEADER_FIELDS:
            result[_HEADER_FIELDS[m.group(1)]] = m.group(2).strip()
    return result


reader = YAMLDumpFileReader
writer = YAMLDumpFileWriter
