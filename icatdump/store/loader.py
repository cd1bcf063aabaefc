"""Turn query rows into Entities and fetch what INCLUDE asks for.

INCLUDE paths form a tree (intermediate hops implied, ICAT-FACTS §3.1).  Each
tree node is fetched with one statement for all parents at once, the ids
passed as one JSON array (``id IN (SELECT value FROM json_each(?))``), so a
page of 100 investigations with all their children costs one query per
include path, not one per object.

Objects are shared only within one include node: two paths reaching the same
row give two Entity objects, so no object graph ever has a cycle, and a
one-to-many child never carries a back reference to its parent unless that
path was itself included (ICAT-FACTS §2.6).
"""

from __future__ import annotations

import json
from typing import Callable

from ..client import ParameterError, ValidationError
from ..entity import Entity
from ..schema import MANY, META_ATTRS, ONE, EntityType, Schema
from .ddl import q
from .values import date_from_sql, reader


class RowLoader:
    """Build Entities of one type from ``id, attributes…, relation ids…`` rows.

    With ``meta``, the rows end with the four audit columns (createId,
    createTime, modId, modTime) and the entities carry them in ``values``, as
    ICAT's beans do; a local dump has no use for them, so by default they are
    neither read nor converted.
    """

    def __init__(self, etype: EntityType, meta: bool = False):
        self.etype = etype
        self.meta = meta
        self.attr_names = tuple(etype.attrs)
        self.n_attrs = len(self.attr_names)
        self.one_pos = {name: 1 + self.n_attrs + i for i, name in enumerate(etype.ones)}
        self.convs = [(1 + i, name, reader(f)) for i, (name, f) in enumerate(etype.attrs.items())
                      if reader(f) is not None]
        cols = ["id"] + [q(n) for n in etype.attrs] + [q(n) for n in etype.ones]
        if meta:
            cols += [q(n) for n in META_ATTRS]
        self.select = "SELECT %s FROM %s" % (", ".join(cols), q(etype.name))

    def build(self, row) -> Entity:
        values = dict(zip(self.attr_names, row[1:1 + self.n_attrs]))
        for pos, name, conv in self.convs:
            v = row[pos]
            if v is not None:
                values[name] = conv(v)
        if self.meta:
            create_id, create_time, mod_id, mod_time = row[-4:]
            values["createId"] = create_id
            values["createTime"] = date_from_sql(create_time)
            values["modId"] = mod_id
            values["modTime"] = date_from_sql(mod_time)
        return Entity(self.etype, values, row[0])


class Budget:
    """ICAT's maxEntities: result objects plus included objects."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def spend(self, n: int):
        self.used += n
        if self.used > self.limit:
            raise ValidationError("attempt to process more than %d entities" % self.limit)


class IncludeNode:
    def __init__(self, etype: EntityType):
        self.etype = etype
        self.children: dict[str, IncludeNode] = {}
        self.explicit = False


def include_tree(schema: Schema, etype: EntityType, var: str, include) -> IncludeNode:
    """The INCLUDE clause as a tree rooted at the selected entity.

    INCLUDE variables are their own namespace: only the SELECT variable and
    aliases defined earlier in the clause may start a step.
    """
    root = IncludeNode(etype)
    if include == "1":
        for name, f in etype.ones.items():
            root.children[name] = IncludeNode(schema[f.type])
        return root
    names = {var.lower(): root}
    for step in include:
        parts = step.path.parts
        node = names.get(parts[0].lower())
        if node is None:
            raise ParameterError("INCLUDE step %s does not start with the selected variable "
                                 "or an INCLUDE alias" % ".".join(parts))
        for name in parts[1:]:
            if not node.etype.has(name):
                raise ParameterError("%s is not a field of %s" % (name, node.etype.name))
            f = node.etype.field(name)
            if f.kind not in (ONE, MANY):
                raise ParameterError("INCLUDE %s: %s is not a relation of %s"
                                     % (".".join(parts), name, node.etype.name))
            child = node.children.get(f.name)
            if child is None:
                child = node.children[f.name] = IncludeNode(schema[f.type])
            node = child
        if node.explicit:
            raise ParameterError("INCLUDE clause contains redundant path to %s" % parts[-1])
        node.explicit = True
        if step.alias:
            if step.alias.lower() in names:
                raise ParameterError("INCLUDE variable %s is defined twice" % step.alias)
            names[step.alias.lower()] = node
    return root


class Loader:
    """Fetches entity rows and their INCLUDEs through one connection."""

    def __init__(self, conn, schema: Schema, meta: bool = False):
        self.conn = conn
        self.schema = schema
        self.row_loaders: dict[str, RowLoader] = {}
        self.trees: dict[tuple, IncludeNode] = {}
        #: Whether entities carry the audit fields (see :class:`RowLoader`);
        #: changed through ``EmbeddedClient.meta``, which empties the caches.
        self.meta = meta
        #: For a user who is not root: ``(origin entity, field, target entity,
        #: ids) -> readable ids or None (all)``; included objects are
        #: filtered by it (``authz.Gate``).
        self.visible: Callable[[str, str, str, list], set | None] | None = None

    def row_loader(self, etype: EntityType) -> RowLoader:
        rl = self.row_loaders.get(etype.name)
        if rl is None:
            rl = self.row_loaders[etype.name] = RowLoader(etype, self.meta)
        return rl

    def entities(self, etype: EntityType, rows, include, var, budget: Budget) -> list[Entity]:
        """Entities from result rows (duplicates share one object), includes filled."""
        rl = self.row_loader(etype)
        by_id: dict = {}
        result: list[Entity] = []
        for row in rows:
            item = by_id.get(row[0])
            if item is None:
                item = by_id[row[0]] = (rl.build(row), row)
            result.append(item[0])
        if include is not None:
            self.fill(self.tree(etype, var, include), list(by_id.values()), budget, {})
        return result

    def tree(self, etype: EntityType, var, include) -> IncludeNode:
        """The include tree of a clause, built once per clause (a dump repeats
        a few dozen clauses hundreds of times); trees are only read."""
        key = (etype.name, var.lower(), include if include == "1" else
               tuple((step.path.parts, step.alias) for step in include))
        tree = self.trees.get(key)
        if tree is None:
            tree = include_tree(self.schema, etype, var, include)
            if len(self.trees) >= 1000:
                self.trees.clear()
            self.trees[key] = tree
        return tree

    def fill(self, node: IncludeNode, items: list, budget: Budget, seen: dict):
        """Fill the relations of ``node`` for ``items`` (pairs of Entity, row).

        ``seen`` holds the rows this search has read by id, ``(entity name,
        id) -> row``: many paths of one INCLUDE clause lead to the same few
        rows (the facility of a dataset type, of a parameter type, of an
        instrument), which are then read once.  Each path still gets its
        own Entity objects."""
        if not items:
            return
        prl = self.row_loader(node.etype)
        for fname, child in node.children.items():
            f = node.etype.fields[fname]
            crl = self.row_loader(child.etype)
            if f.kind == ONE:
                pos = prl.one_pos[fname]
                ids = {row[pos] for _, row in items if row[pos] is not None}
                rows = self.rows_by_id(crl, ids, seen)
                rows = self.readable(node.etype.name, fname, child.etype.name, rows)
                objs = {row[0]: (crl.build(row), row) for row in rows}
                budget.spend(len(objs))
                for ent, row in items:
                    rid = row[pos]
                    ent.values[fname] = objs[rid][0] if rid is not None and rid in objs else None
                self.fill(child, list(objs.values()), budget, seen)
            else:
                pos = crl.one_pos[f.mapped_by]
                rows = self.fetch(crl, f.mapped_by, [ent.id for ent, _ in items])
                rows = self.readable(node.etype.name, fname, child.etype.name, rows)
                budget.spend(len(rows))
                groups: dict[int, list] = {}
                children = []
                for row in rows:
                    c = (crl.build(row), row)
                    children.append(c)
                    groups.setdefault(row[pos], []).append(c[0])
                for ent, _ in items:
                    ent.values[fname] = groups.get(ent.id, [])
                self.fill(child, children, budget, seen)

    def readable(self, origin: str, field: str, target: str, rows: list) -> list:
        """The included ``rows`` the user may see (all of them for root)."""
        if self.visible is None or not rows:
            return rows
        ok = self.visible(origin, field, target, [row[0] for row in rows])
        return rows if ok is None else [row for row in rows if row[0] in ok]

    def rows_by_id(self, rl: RowLoader, ids, seen: dict) -> list:
        """The rows of ``ids``, those not in ``seen`` read (and added to it)."""
        name = rl.etype.name
        rows, missing = [], []
        for i in ids:
            row = seen.get((name, i))
            if row is None:
                missing.append(i)
            else:
                rows.append(row)
        for row in self.fetch(rl, "id", missing):
            seen[(name, row[0])] = row
            rows.append(row)
        return rows

    def fetch(self, rl: RowLoader, column: str, ids) -> list:
        """Rows whose ``column`` is one of ``ids``; one id (an investigation's
        keywords, a datafile's dataset) needs no JSON array."""
        if not ids:
            return []
        column = "id" if column == "id" else q(column)
        if len(ids) == 1:
            (one,) = ids
            return self.conn.execute("%s WHERE %s = ? ORDER BY id" % (rl.select, column),
                                     (one,)).fetchall()
        sql = "%s WHERE %s IN (SELECT value FROM json_each(?)) ORDER BY id" % (rl.select, column)
        return self.conn.execute(sql, (json.dumps(list(ids)),)).fetchall()


