"""Working with data files without a catalogue: a stand-in client and convert.

A data file refers to objects outside the current chunk by unique key.  A
unique key carries everything the writer needs of the object it names --
its constraint fields, recursively -- so an object rebuilt from its key
writes back the same key and sorts the same way.  :class:`OfflineClient`
does exactly that, which lets the ordinary reader and writer convert a file
from one format to another (or normalize it) with no server at all, and
the result is what icatdump would have written for the same content.
"""

from __future__ import annotations

import itertools

from .client import Client, SearchResultError, parse_unique_key
from .dumporder import CHUNK_GROUPS, GROUP_OF, type_order
from .entity import Entity
from .keys import KeyError_, unquote
from .registry import open_dumpfile
from .schema import ATTRIBUTE, ONE, Schema


class OfflineClient(Client):
    """A client that needs no catalogue.

    ``search_unique_key`` answers with a placeholder rebuilt from the key;
    ``create_many`` hands out fresh ids; searching is impossible.
    """

    def __init__(self, schema: Schema, url: str = "", apiversion: str = ""):
        self.schema = schema
        self.url = url
        self.apiversion = apiversion or schema.version
        self._ids = itertools.count(1)

    def search(self, query) -> list:
        raise SearchResultError("no catalogue to search offline: %s" % query)

    def get(self, entity, id, includes=""):
        raise SearchResultError("no catalogue to get %s %s from offline" % (entity, id))

    def create_many(self, entities):
        for entity in entities:
            self._assign_ids(entity)
        return [e.id for e in entities]

    def _assign_ids(self, entity: Entity):
        entity.id = next(self._ids)
        for _, child in entity.children():
            self._assign_ids(child)

    def update(self, entity):
        pass

    def delete_many(self, entities):
        pass

    def search_unique_key(self, key: str, objindex: dict | None = None) -> Entity:
        """A placeholder of the object ``key`` names, built from the key alone.

        Its ``unique_key()`` is the key (in the schema's constraint order)
        and its ``sortkey()`` is what the real object's would be.
        """
        if objindex is not None and key in objindex:
            return objindex[key]
        obj = self._placeholder(key)
        if objindex is not None:
            objindex[key] = obj
        return obj

    searchUniqueKey = search_unique_key

    def _placeholder(self, key: str) -> Entity:
        etype, parts = parse_unique_key(self.schema, key)
        name = etype.name
        values: dict[str, object] = {}
        for attr, raw in parts.items():
            f = etype.fields.get(attr)
            if f is None or f.kind not in (ATTRIBUTE, ONE):
                raise KeyError_("key %r: %s has no attribute or relation %r"
                                % (key, name, attr))
            if f.kind == ONE:
                values[attr] = self._placeholder("%s_%s" % (f.type, raw))
            else:
                values[attr] = unquote(raw)
        missing = [c for c in etype.key_fields if c not in values]
        if missing:
            raise KeyError_("key %r lacks %s of the %s uniqueness constraint"
                            % (key, ", ".join(missing), name))
        return Placeholder(etype, values)


class Placeholder(Entity):
    """An object known only by its unique key; never changes once built.

    It has no id, so key caches keyed by id cannot help it; it remembers
    its own key and sort key instead, as a chunk may refer to the same
    ParameterType or Facility thousands of times.
    """
    __slots__ = ("_key", "_sortkey")

    def __init__(self, etype, values):
        super().__init__(etype, values)
        self._key = Entity.unique_key(self)
        self._sortkey = Entity.sortkey(self)

    def unique_key(self, keyindex=None) -> str:
        return self._key

    getUniqueKey = unique_key

    def sortkey(self, memo=None) -> list:
        return self._sortkey


def convert(infile, informat: str, outfile, outformat: str, schema: Schema,
            url: str = "", apiversion: str = "") -> int:
    """Convert a data file between formats, one chunk at a time.

    Each chunk's objects are read (references resolved as an ingest would),
    given ids, grouped into the chunks icatdump would write them in, and
    written in icatdump's type order.  Returns the number of top-level
    objects written.
    """
    client = OfflineClient(schema, url, apiversion)
    order = {name: i for i, name in enumerate(type_order(schema))}
    with open_dumpfile(client, infile, informat, "r") as reader, \
            open_dumpfile(client, outfile, outformat, "w") as writer:
        for chunk in reader.iter_chunks():
            objs = []
            for _, obj in chunk.objects():
                client.create_many([obj])
                objs.append(obj)
            for group in output_chunks(objs, order):
                writer.writedata(group)
            # As after an ingest: keep many-to-one links, drop embedded
            # children, so later chunks see what python-icat's reader leaves.
            for obj in objs:
                obj.truncate_relations()
        return writer.objects_written


def output_chunks(objs: list[Entity], order: dict[str, int]) -> list[list[list[Entity]]]:
    """Split one input chunk's objects into the chunks icatdump would write.

    Returns a list of chunks, each a list of per-type object lists in dump
    order.  Investigations and data publications get a chunk each, with
    the objects that belong to them, in the order icatdump pages them.
    """
    groups: dict[str, list[Entity]] = {}
    for obj in objs:
        groups.setdefault(GROUP_OF.get(obj.type.name, "~"), []).append(obj)
    chunks = []
    for name, members in sorted(groups.items(), key=lambda g: _group_rank(g[0])):
        owner = _OWNERS.get(name)
        if owner is None:
            chunks.append(_by_type(members, order))
            continue
        per_owner: dict[str, tuple[list, list[Entity]]] = {}
        for obj in members:
            o = owner(obj)
            if o is None:       # cannot tell: keep it with the first owner
                entry = next(iter(per_owner.values()), None) or \
                    per_owner.setdefault("", ([], []))
            else:
                entry = per_owner.setdefault(o.unique_key(), (o.sortkey(), []))
            entry[1].append(obj)
        for _, (_, owned) in sorted(per_owner.items(), key=lambda e: e[1][0]):
            chunks.append(_by_type(owned, order))
    return chunks


_GROUP_NAMES = [g for g, _ in CHUNK_GROUPS]


def _group_rank(name: str) -> int:
    return _GROUP_NAMES.index(name) if name in _GROUP_NAMES else len(_GROUP_NAMES)


def _by_type(objs: list[Entity], order: dict[str, int]) -> list[list[Entity]]:
    by_type: dict[str, list[Entity]] = {}
    for obj in objs:
        by_type.setdefault(obj.type.name, []).append(obj)
    return [by_type[t] for t in sorted(by_type, key=lambda t: order.get(t, len(order)))]


def _investigation_of(obj: Entity) -> Entity | None:
    if obj.type.name == "Investigation":
        return obj
    parent: Entity | None = obj
    if obj.type.name == "Datafile":
        parent = obj.values.get("dataset")
    return parent.values.get("investigation") if parent is not None else None


def _publication_of(obj: Entity) -> Entity | None:
    return obj if obj.type.name == "DataPublication" else obj.values.get("publication")


_OWNERS = {"investigation": _investigation_of, "publication": _publication_of}
