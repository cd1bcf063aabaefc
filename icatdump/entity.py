"""Entity objects: one ICAT object with its attributes and relations.

An :class:`Entity` is deliberately small: its type (an
:class:`~icatdump.schema.EntityType`), its ``id`` (``None`` until it exists in
a catalogue) and one dict of values.  Attributes hold Python values (str, int,
float, bool, aware datetime), many-to-one relations hold another Entity or
``None``, one-to-many relations hold a list of Entities.  No transport type
(suds, SQLite rows) ever leaks into it.
"""

from __future__ import annotations

from typing import Any

from .errors import DataConsistencyError
from .keys import quote, strip_name
from .schema import ATTRIBUTE, MANY, META_ATTRS, ONE, EntityType


class Entity:
    """One ICAT object.

    ``client`` is set on objects that a client or a reader hands to a
    caller who may use python-icat's object API on them (``obj.create()``);
    it is left unset on the objects of the hot paths (ingest, dump), which
    never need it.
    """
    __slots__ = ("type", "id", "values", "client")
    #: The client that made the object (set by readers and searches; unset
    #: until then), for python-icat's ``create()``/``update()``/``delete()``.
    client: Any

    def __init__(self, etype: EntityType, values: dict | None = None, id: int | None = None):
        self.type = etype
        self.id = id
        self.values = values if values is not None else {}

    # -- python-icat style access ------------------------------------------
    @property
    def BeanName(self) -> str:
        return self.type.name

    @property
    def instancetype(self) -> str:
        return self.type.instance_name

    def __getattr__(self, name):
        # Only called when normal lookup fails: expose fields as attributes.
        try:
            etype = object.__getattribute__(self, "type")
        except AttributeError:
            raise AttributeError(name) from None
        if etype.has(name):
            name = etype.aliases.get(name, name)
            default = [] if etype.fields[name].kind == MANY else None
            return self.values.get(name, default)
        raise AttributeError("%s has no field %r" % (etype.name, name))

    def get(self, name, default=None):
        return self.values.get(name, default)

    # python-icat's names for the fields, as its scripts use them.
    @property
    def InstAttr(self) -> frozenset:
        return frozenset(["id"] + [n for n, f in self.type.fields.items()
                                   if f.kind == ATTRIBUTE and n not in META_ATTRS])

    MetaAttr = frozenset(META_ATTRS)

    @property
    def InstRel(self) -> frozenset:
        return frozenset(n for n, f in self.type.fields.items() if f.kind == ONE)

    @property
    def InstMRel(self) -> frozenset:
        return frozenset(self.type.manys)

    def getAttrType(self, attr: str) -> str:
        """The ICAT type of an attribute (``String``, ``Date``...), or the
        entity name a relation points to, as python-icat answers."""
        if attr == "id":
            return "Long"
        attr = self.type.aliases.get(attr, attr)
        if attr not in self.type.fields:
            raise ValueError("Unknown attribute name '%s'" % attr)
        return self.type.fields[attr].type

    def truncateRelations(self, keepInstRel: bool = False) -> None:
        """python-icat's: drop the one-to-many lists (and, unless
        ``keepInstRel``, the many-to-one relations) of this copy."""
        self.truncate_relations()
        if not keepInstRel:
            for name in self.InstRel:
                self.values.pop(name, None)

    # python-icat's calls on the object's client.
    def _client(self):
        try:
            return object.__getattribute__(self, "client")
        except AttributeError:
            raise AttributeError("%s is bound to no client: create it through one "
                                 "(client.create(obj))" % self.type.name) from None

    def create(self) -> int:
        """Create the object (and its embedded children) in its client's catalogue."""
        self.id = self._client().create(self)
        return self.id

    def update(self) -> None:
        self._client().update(self)

    def delete(self) -> None:
        self._client().delete_many([self])

    def __repr__(self):
        return "<%s id=%s %s>" % (self.type.name, self.id, {
            k: v for k, v in self.values.items() if self.type.fields[k].kind == ATTRIBUTE})

    # -- keys ---------------------------------------------------------------
    def unique_key(self, keyindex: dict | None = None) -> str:
        """python-icat's ``getUniqueKey``: ``BeanName_attr-value_rel-(...)``.

        ``keyindex`` maps ``(BeanName, id)`` to keys already built; it is both
        consulted and filled, so a related object's key is built only once.
        """
        kid = (self.type.name, self.id)
        if keyindex is not None and self.id is not None:
            key = keyindex.get(kid)
            if key is not None:
                return key
        parts = [self.type.name]
        fields = self.type.fields
        for c in self.type.key_fields:
            if c == "id":
                parts.append("id-" + quote(self.id))
                continue
            f = fields[c]
            if f.kind == ONE:
                related = self.values.get(c)
                if related is None:
                    raise DataConsistencyError(
                        "Required relation '%s' not present in %s" % (c, self.type.name))
                rkey = related.unique_key(keyindex)
                prefix = related.type.name + "_"
                # What strip_name does, without a regex for the usual case.
                inner = rkey[len(prefix):] if rkey.startswith(prefix) else strip_name(rkey)
                parts.append("%s-(%s)" % (c, inner))
            else:
                value = self.values.get(c)
                parts.append("%s-%s" % (c, quote(_key_text(value))))
        key = "_".join(parts)
        if keyindex is not None and self.id is not None:
            keyindex[kid] = key
        return key

    getUniqueKey = unique_key

    def sortkey(self, memo: dict | None = None) -> list:
        """python-icat's ``__sortkey__``: the order of objects in a dump.

        ``memo`` maps ``id(obj)`` to keys already made, so an object shared
        by many (the dataset of a page of datafiles, a parameter type) is
        keyed once.  It may only live as long as the objects it has seen:
        one sort, while its objects are held.
        """
        if memo is not None:
            key = memo.get(id(self))
            if key is not None:
                return key
        key = [self.type.name]
        fields = self.type.fields
        for a in self.type.sort_fields:
            if a == "id":
                key.append(str(self.id) if self.id is not None else "")
                continue
            f = fields.get(a)
            if f is None:
                continue
            v = self.values.get(a)
            if f.kind == ATTRIBUTE:
                key.append("" if v is None else _key_text(v))
            elif f.kind == ONE:
                key.append(v.sortkey(memo) if v is not None else [])
            else:
                key.append(sorted(c.sortkey(memo) for c in (v or ())))
        if memo is not None:
            memo[id(self)] = key
        return key

    # -- structure ------------------------------------------------------------
    def children(self):
        """Yield ``(relation name, child)`` for every embedded one-to-many child."""
        for name in self.type.manys:
            for child in self.values.get(name) or ():
                yield name, child

    def truncate_relations(self):
        """Drop one-to-many lists, keep attributes and many-to-one relations."""
        for name in self.type.manys:
            self.values.pop(name, None)

    def count(self) -> int:
        """This object plus all its embedded descendants."""
        return 1 + sum(child.count() for _, child in self.children())


def _key_text(value) -> str:
    """``str()`` of a value as python-icat would see it from suds."""
    return str(value)
