"""Build ICAT JPQL query strings.

The rendering follows the layout ICAT clients use (``SELECT o FROM Entity o
JOIN ... WHERE ... ORDER BY ... INCLUDE ... LIMIT``, with readable join aliases
such as ``f`` for ``facility``), so the same strings go to a real ICAT server
and to the embedded catalogue.  Values are spliced in with :func:`literal`,
which escapes quotes: a name containing ``'`` must not break a query.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache

from .schema import ONE, MANY, EntityType, Schema

# Readable aliases for common join paths; anything else gets s1, s2, ...
_ALIASES = {
    "datafileFormat": "dff", "dataset": "ds", "dataset.investigation": "i",
    "facility": "f", "grouping": "g", "instrumentScientists": "isc",
    "investigation": "i", "investigationGroups": "ig",
    "investigationInstruments": "ii", "investigationUsers": "iu",
    "parameters": "p", "parameters.type": "pt", "type": "t", "user": "u",
    "userGroups": "ug",
}


def literal(value) -> str:
    """A JPQL literal: quoted string with ``'`` doubled, or a number."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, _dt.datetime):
        value = value.astimezone(_dt.timezone.utc)
        return "{ts %s}" % value.strftime("%Y-%m-%d %H:%M:%S")
    return "'" + str(value).replace("'", "''") + "'"


def _prefixes(path: str):
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _assign_aliases(prefixes):
    aliases, used, n = {}, set(), 0
    for p in sorted(prefixes):
        alias = _ALIASES.get(p)
        if alias is None or alias in used:
            n += 1
            alias = "s%d" % n
        aliases[p] = alias
        used.add(alias)
    return aliases


class Query:
    """A search query on one entity type, rendered by ``str()``.

    ``conditions`` maps an attribute path to one right-hand side or a list of
    them (``"= 'x'"``, ``"> 42"``, ``"IS NULL"``); use :func:`literal` for
    values.  ``order`` is a list of attribute paths, optionally with
    ``" DESC"``.  ``includes`` is a list of relation paths.  ``join_specs``
    maps a relation path to ``"LEFT JOIN"`` and the like.
    """

    def __init__(self, entity: str, conditions=None, order=(), includes=(),
                 attribute: str | None = None, aggregate: str | None = None,
                 join_specs=None, limit: tuple[int, int] | None = None):
        self.entity = entity
        self.conditions = dict(conditions or {})
        self.order = list(order)
        self.includes = list(includes)
        self.attribute = attribute
        self.aggregate = aggregate
        self.join_specs = dict(join_specs or {})
        self.limit = limit

    def _select(self, aliases):
        if self.attribute:
            item = self._path(self.attribute, aliases)
        else:
            item = "o"
        if self.aggregate:
            item = "%s(%s)" % (self.aggregate, item)
        return item

    @staticmethod
    def _path(path, aliases):
        head, _, attr = path.rpartition(".")
        return "%s.%s" % (aliases[head] if head else "o", attr)

    def __str__(self):
        paths = list(self.conditions) + [o.split(" ")[0] for o in self.order]
        if self.attribute:
            paths.append(self.attribute)
        prefixes = {p for path in paths for p in _prefixes(path)}
        aliases = _assign_aliases(prefixes)
        parts = ["SELECT %s FROM %s o" % (self._select(aliases), self.entity)]
        for p in sorted(prefixes):
            parent, _, name = p.rpartition(".")
            spec = self.join_specs.get(p, "JOIN")
            parts.append("%s %s.%s AS %s" % (
                spec, aliases[parent] if parent else "o", name, aliases[p]))
        if self.conditions:
            conds = []
            for path in sorted(self.conditions):
                rhs = self.conditions[path]
                for r in (rhs if isinstance(rhs, (list, tuple)) else [rhs]):
                    conds.append("%s %s" % (self._path(path, aliases), r))
            parts.append("WHERE " + " AND ".join(conds))
        if self.order:
            items = []
            for o in self.order:
                path, _, direction = o.partition(" ")
                items.append(self._path(path, aliases) + (" " + direction if direction else ""))
            parts.append("ORDER BY " + ", ".join(items))
        if self.includes:
            parts.append(_include_clause(tuple(self.includes)))
        if self.limit is not None:
            parts.append("LIMIT %d, %d" % self.limit)
        return " ".join(parts)


@lru_cache(maxsize=256)
def _include_clause(includes: tuple) -> str:
    """``INCLUDE ...`` for relation paths; made once per set of paths, as a
    dump sends the same few hundreds of times."""
    inc = set()
    for path in includes:
        inc.update(_prefixes(path))
        inc.add(path)
    needs_alias = {p for p in inc if any(q.startswith(p + ".") for q in inc)}
    inc_aliases = _assign_aliases(needs_alias)
    items = []
    for p in sorted(inc):
        parent, _, name = p.rpartition(".")
        item = "%s.%s" % (inc_aliases[parent] if parent else "o", name)
        if p in needs_alias:
            item += " AS " + inc_aliases[p]
        items.append(item)
    return "INCLUDE " + ", ".join(items)


def natural_order(schema: Schema, etype: EntityType, prefix: str = "") -> list[str]:
    """Attribute paths of python-icat's natural order for ``etype``.

    Sort fields (SortAttrs or the constraint, plus ``id`` when the constraint
    is just ``id``); a related object expands to its own natural order;
    one-to-many and nullable many-to-one relations are skipped.
    """
    fields = list(etype.sort_fields)
    if etype.key_fields == ("id",) and "id" not in fields:
        fields.append("id")
    order = []
    for name in fields:
        if name == "id":
            order.append(prefix + "id")
            continue
        f = etype.fields.get(name)
        if f is None or f.kind == MANY:
            continue
        if f.kind == ONE:
            if not f.not_null:
                continue
            order.extend(natural_order(schema, schema[f.type], prefix + name + "."))
        else:
            order.append(prefix + name)
    return order
