"""YAML data files, read and written as python-icat 1.7.0 does (ICAT-FACTS §5.3).

Reading composes one YAML document (= one chunk) at a time into a node
tree and builds values from it with PyYAML's *safe* constructor only: a
``!!python/...`` tag is an error, never executed.  Working from nodes
rather than loaded dicts gives every object its line number and lets
duplicate keys be caught instead of silently overwritten.  libyaml
(``CSafeLoader``) is used when PyYAML was built with it.

Writing gives python-icat's bytes: ``yaml.dump(chunk,
default_flow_style=False, explicit_start=True)``.  libyaml's emitter
(``CSafeDumper``, ~6x faster) writes the same bytes except in two cases,
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

import datetime
import re

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

import icatdump
from icatdump.dumpfile import DataFileError, DumpFileReader, DumpFileWriter, RawObject, Record
from icatdump.schema import MANY
from icatdump.types import to_yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PureDumper = yaml.SafeDumper

#: python-icat's restore order of top-level types (ICAT-FACTS §5.3), with
#: the three types it does not know placed where their references allow.
ENTITY_TYPES = (
    "user", "grouping", "userGroup", "rule", "publicStep", "facility", "instrument",
    "instrumentScientist", "parameterType", "permissibleStringValue",
    "dataPublicationType", "investigationType", "sampleType", "datasetType",
    "datafileFormat", "technique", "facilityCycle", "application", "fundingReference",
    "investigation", "investigationParameter", "keyword", "publication", "shift",
    "investigationFunding", "investigationGroup", "investigationInstrument",
    "investigationUser", "investigationFacilityCycle", "sample", "sampleParameter",
    "dataset", "datasetParameter", "datasetInstrument", "datasetTechnique", "datafile",
    "datafileParameter", "dataCollection", "dataCollectionParameter",
    "dataCollectionDataset", "dataCollectionDatafile", "dataCollectionInvestigation",
    "dataPublication", "dataPublicationDate", "dataPublicationFunding",
    "dataPublicationUser", "affiliation", "relatedItem", "subject", "study",
    "studyInvestigation", "relatedDatafile", "job",
)
_RANK = {name: i for i, name in enumerate(ENTITY_TYPES)}


class _Loader(SafeLoader):
    """PyYAML's safe loader, remembering the implicit tags of plain scalars.

    The composer asks :meth:`resolve` for every scalar, keys included, and
    PyYAML's answer is a run of regular expressions chosen by the first
    character.  A data file repeats the same few dozen keys (``name``,
    ``fileSize``, ``dataset``...) on every object, so remembering the
    answer per value (it depends on nothing else while no path resolvers
    are registered) saves most of that work.  The memory is bounded.
    """

    memo_size = 4096

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict[str, str] = {}

    def resolve(self, kind, value, implicit):
        if kind is not ScalarNode or not implicit[0] or self.yaml_path_resolvers:
            return _resolve(self, kind, value, implicit)
        tag = self._tags.get(value)
        if tag is None:
            # Unique values (names, locations) miss: keep their way short.
            tag = _resolve(self, kind, value, implicit)
            if len(self._tags) < self.memo_size:
                self._tags[value] = tag
        return tag


_resolve = SafeLoader.resolve


class YAMLDumpFileReader(DumpFileReader):
    """Read a YAML data file one document (chunk) at a time."""

    mode = "r"

    def getdata(self):
        """Iterate over the documents of the file, as composed node trees."""
        loader = _Loader(self.infile)
        self._loader = loader
        try:
            while True:
                try:
                    if not loader.check_node():
                        return
                    node = loader.get_node()
                except yaml.YAMLError as exc:
                    raise _yaml_error(exc) from None
                except UnicodeDecodeError as exc:
                    raise DataFileError("not UTF-8 text: byte 0x%02x at offset %d of a read block"
                                        % (exc.object[exc.start], exc.start)) from None
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
        sections = []
        for tnode, onode in self._pairs(node):
            tag = tnode.value
            try:
                etype = self.schema.by_instance_name(tag)
            except KeyError:
                etype = None
            if etype is None or etype.instance_name not in _RANK:
                raise DataFileError("unknown entry '%s' in the data" % tag, line=_line(tnode))
            if _is_null(onode):
                continue
            if not isinstance(onode, MappingNode):
                raise DataFileError("'%s' must map keys to objects" % tag, line=_line(onode))
            sections.append((_RANK[etype.instance_name], tag, etype, onode))
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
        if node.__class__ is ScalarNode and node.tag == _INT:
            value = node.value
            if value.isdigit() and value[0] != "0":
                return int(value)   # plain decimal; PyYAML reads 0-prefixed ones as octal
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc) from None
        except (ValueError, OverflowError) as exc:
            # PyYAML's constructors let these through: "2010-13-45" is
            # matched as a timestamp, then datetime() refuses month 13.
            raise DataFileError("invalid %s value %r: %s"
                                % (node.tag.rsplit(":", 1)[-1], node.value, exc),
                                line=_line(node)) from None


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
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

    Each type section is emitted in runs of objects that the same emitter
    may write: libyaml where it is known to agree with PyYAML, PyYAML
    otherwise (see the module docstring).
    """
    out = ["---\n"]
    for tag in sorted(data):
        objs = data[tag]
        runs, run, run_pure = [], {}, None
        for key in sorted(objs):
            pure = _needs_pure(key, objs[key])
            if run and pure != run_pure:
                runs.append((run, run_pure))
                run = {}
            run[key], run_pure = objs[key], pure
        runs.append((run, run_pure))
        for i, (run, pure) in enumerate(runs):
            text = _dump({tag: run}, PureDumper if pure else FastDumper)
            # Every run starts with the "tag:" line; keep only the first.
            out.append(text if i == 0 else text[text.index("\n") + 1:])
    return "".join(out)


reader = YAMLDumpFileReader
writer = YAMLDumpFileWriter
