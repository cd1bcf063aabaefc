"""Key indexes: what readers and writers remember of keys between objects
and chunks.

A file's keys are valid within their chunk, except those of the retained
types (:func:`retained_types`).  A writer maps ``(BeanName, id)`` to the
key it wrote (:class:`KeyIndex`); a reader maps keys to objects it found in
the catalogue, bounded (:class:`RefCache`).
"""

from __future__ import annotations

from collections import ChainMap, OrderedDict

from .entity import Entity


def retained_types(schema) -> frozenset[str]:
    """Entity types whose keys stay valid across chunks.

    They have no uniqueness constraint (so a later chunk cannot find them in
    the catalogue by key) but have one-to-many relations (so they are worth
    referring to): DataCollection and Study.
    """
    return frozenset(et.name for et in schema if et.manys and et.key_fields == ("id",))


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
