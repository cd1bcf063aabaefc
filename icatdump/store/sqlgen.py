"""Translate a parsed JPQL query into one SQLite statement.

Variables become table aliases ``t0``, ``t1``, … (case-insensitively, as in
ICAT).  A dotted path walks the schema: an attribute becomes a column, a
many-to-one hop an implicit inner join (or, when only its id is wanted, the
relation column itself, with no join at all), a one-to-many hop a join on the
child's back-reference.  Literals are bound as parameters and converted by
the type of the column they are compared with, because python-icat quotes
every value (``o.fileSize = '42'``, ``o.startDate = '2008-…+00:00'``) and
dates are stored in one normalized form.

The result is a :class:`Plan`: SQL text, parameters, and how to turn each row
into Python values or into an :class:`~icatdump.entity.Entity`.  INCLUDEs are
not part of the SQL; ``loader.py`` fetches them afterwards in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from ..client import ParameterError
from ..schema import ATTRIBUTE, ENUMS, META_ATTRS, ONE, EntityType, Field, Schema
from ..types import UTC, ValueProblem, parse_datetime
from . import jpql
from .ddl import q
from .values import date_to_sql, literal_for, now_sql, reader

ID_FIELD = Field("id", ATTRIBUTE, "Long")
META_FIELDS = {
    "createId": Field("createId", ATTRIBUTE, "String"),
    "modId": Field("modId", ATTRIBUTE, "String"),
    "createTime": Field("createTime", ATTRIBUTE, "Date"),
    "modTime": Field("modTime", ATTRIBUTE, "Date"),
}
COUNT_FIELD = Field("count", ATTRIBUTE, "Long")
AVG_FIELD = Field("avg", ATTRIBUTE, "Double")


@dataclass
class Source:
    """A FROM/JOIN variable: its SQL alias and entity type."""
    alias: str
    etype: EntityType


@dataclass
class Value:
    """A translated expression: SQL text and what it denotes.

    ``field`` is the attribute it reads (for literal conversion and result
    types); ``etype`` is set when it denotes an entity (the SQL is its id),
    with ``source`` when that entity's table is joined.
    """
    sql: str
    field: Field | None = None
    etype: EntityType | None = None
    source: Source | None = None
    many: tuple | None = None           # (parent Source, MANY Field) for IS EMPTY/SIZE
    literal: object = None              # the jpql.Literal / Param, if it is one


@dataclass
class Plan:
    sql: str
    params: list
    kind: str                           # "entity", "scalar" or "tuple"
    etype: EntityType | None = None     # for entity results
    converters: list = dc_field(default_factory=list)
    include: object = None
    select_var: str | None = None
    limit: tuple | None = None
    #: Where each parameter comes from: ``(jpql.Literal, Field or None)``
    #: -- the literal, converted for that field -- or None (``:user``,
    #: the current time); see ``plans.py``.
    sources: list = dc_field(default_factory=list)


class Translator:
    """Translate one (sub)query; sub-selects share the alias counter."""

    def __init__(self, schema: Schema, user: str, counter=None, outer=None):
        self.schema = schema
        self.user = user
        self.counter = counter if counter is not None else [0]
        self.outer = outer
        self.vars: dict[str, Source] = {}
        self.joins: list[str] = []
        self.implicit: dict[tuple, Source] = {}
        self.params: list = []
        #: Whether an entity result ends with the audit columns (loader.RowLoader).
        self.meta = False
        #: The zone a date literal without offset is read in (None: the
        #: machine's), as a server reads it in its own (``{ts …}`` too).
        self.zone = outer.zone if outer is not None else UTC
        #: For a user who is not root: ``(entity name, id column) -> (sql,
        #: params) or None``, the READ restriction of each FROM/JOIN variable
        #: (``authz.Gate.search_condition``).
        self.authz = None

    # -- aliases and joins --------------------------------------------------
    def new_alias(self) -> str:
        alias = "t%d" % self.counter[0]
        self.counter[0] += 1
        return alias

    def lookup_var(self, name: str) -> Source | None:
        t = self
        while t is not None:
            src = t.vars.get(name.lower())
            if src is not None:
                return src
            t = t.outer
        return None

    def join(self, parent: Source, f: Field, kind: str = "INNER") -> Source:
        target = self.schema[f.type]
        alias = self.new_alias()
        if f.kind == ONE:
            on = "%s.id = %s.%s" % (alias, parent.alias, q(f.name))
        else:
            on = "%s.%s = %s.id" % (alias, q(f.mapped_by), parent.alias)
        spec = "LEFT JOIN" if kind == "LEFT" else "JOIN"
        self.joins.append("%s %s %s ON %s" % (spec, q(target.name), alias, on))
        return Source(alias, target)

    def implicit_join(self, parent: Source, f: Field) -> Source:
        key = (parent.alias, f.name)
        src = self.implicit.get(key)
        if src is None:
            src = self.implicit[key] = self.join(parent, f)
        return src

    @staticmethod
    def field_of(etype: EntityType, name: str) -> Field:
        if etype.has(name):
            return etype.field(name)
        if name == "id":
            return ID_FIELD
        if name in META_FIELDS:
            return META_FIELDS[name]
        raise ParameterError("%s is not a field of %s" % (name, etype.name))

    def resolve(self, path: jpql.Path) -> Value:
        parts = path.parts
        src = self.lookup_var(parts[0])
        if src is None:
            dotted = ".".join(parts)
            if dotted.startswith("org.icatproject.") and len(parts) >= 4:
                return self.enum_literal(parts)
            raise ParameterError("Unknown variable %r in path %r" % (parts[0], dotted))
        if len(parts) == 1:
            return Value("%s.id" % src.alias, etype=src.etype, source=src)
        for i, name in enumerate(parts[1:], 1):
            last = i == len(parts) - 1
            f = self.field_of(src.etype, name)
            if f.kind == ATTRIBUTE:
                if not last:
                    raise ParameterError("%s.%s is an attribute, it has no field %s"
                                         % (src.etype.name, name, parts[i + 1]))
                col = "id" if f is ID_FIELD else q(f.name)
                return Value("%s.%s" % (src.alias, col), field=f)
            if f.kind == ONE:
                if last:
                    return Value("%s.%s" % (src.alias, q(f.name)),
                                 etype=self.schema[f.type])
                if i == len(parts) - 2 and parts[-1] == "id":
                    return Value("%s.%s" % (src.alias, q(f.name)), field=ID_FIELD)
                src = self.implicit_join(src, f)
            else:
                if last:
                    return Value("%s.id" % src.alias, many=(src, f))
                src = self.implicit_join(src, f)
        raise AssertionError("unreachable")

    def enum_literal(self, parts) -> Value:
        enum, value = parts[-2], parts[-1]
        if enum not in ENUMS or value not in ENUMS[enum]:
            raise ParameterError("Unknown enum value %s" % ".".join(parts))
        lit = jpql.Literal(value, "enum")
        return self.bind_literal(lit)

    # -- literals -------------------------------------------------------------
    def bind(self, value, source=None) -> str:
        """A parameter; ``source`` is where it comes from (see ``Plan.sources``)."""
        self.params.append((value, source))
        return "?"

    def literal_value(self, lit):
        if isinstance(lit, jpql.Param):
            if lit.name.lower() == "user":
                return self.user
            raise ParameterError("Unknown parameter :%s" % lit.name)
        if lit.kind == "ts":
            return date_to_sql(parse_datetime(lit.value, self.zone))
        if lit.kind == "bool":
            return int(lit.value)
        return lit.value

    def bind_literal(self, lit) -> Value:
        if isinstance(lit, jpql.Literal) and lit.kind == "null":
            return Value("NULL", literal=lit)
        source = (lit, None) if isinstance(lit, jpql.Literal) else None
        return Value(self.bind(self.literal_value(lit), source), literal=lit)

    def typed(self, node, f: Field | None) -> Value:
        """Translate ``node``; a literal is converted to the type of ``f``."""
        if f is not None and isinstance(node, (jpql.Literal, jpql.Param)) \
                and not (isinstance(node, jpql.Literal) and node.kind == "null"):
            raw = self.literal_value(node)
            if isinstance(node, jpql.Literal) and node.kind == "ts":
                raw = node.value
            try:
                value = literal_for(f, raw, self.zone)
            except (ValueProblem, ValueError, TypeError) as exc:
                raise ParameterError("Cannot compare %s with %r: %s" % (f.name, raw, exc))
            source = (node, f) if isinstance(node, jpql.Literal) else None
            return Value(self.bind(value, source), literal=node)
        return self.expr(node)

    # -- expressions ----------------------------------------------------------
    def expr(self, node) -> Value:
        method = getattr(self, "x_" + type(node).__name__, None)
        if method is None:
            raise ParameterError("Unsupported expression %r" % (node,))
        return method(node)

    def x_Path(self, node):
        return self.resolve(node)

    def x_Literal(self, node):
        return self.bind_literal(node)

    def x_Param(self, node):
        return self.bind_literal(node)

    def x_Query(self, node):
        sub = Translator(self.schema, self.user, self.counter, outer=self)
        sql, params, values = sub.subquery(node)
        self.params.extend(params)
        return Value("(%s)" % sql, field=values[0].field if values else None)

    def x_Exists(self, node):
        sub = Translator(self.schema, self.user, self.counter, outer=self)
        sql, params, _ = sub.subquery(node.query)
        self.params.extend(params)
        return Value("%sEXISTS (%s)" % ("NOT " if node.negated else "", sql))

    def comparable(self, left, right):
        """Translate both sides, converting a literal side by the other's type."""
        lnode, rnode = left, right
        if isinstance(lnode, (jpql.Literal, jpql.Param)) and \
                not isinstance(rnode, (jpql.Literal, jpql.Param)):
            # The right side is translated first (it gives the type), but
            # its parameters (a sub-select's) follow the left one's in SQL.
            mark = len(self.params)
            r = self.expr(rnode)
            right_params = self.params[mark:]
            del self.params[mark:]
            l = self.typed(lnode, self.key_field(r))
            self.params.extend(right_params)
        else:
            l = self.expr(lnode)
            r = self.typed(rnode, self.key_field(l))
        return l, r

    @staticmethod
    def key_field(v: Value) -> Field | None:
        if v.field is not None:
            return v.field
        if v.etype is not None:
            return ID_FIELD
        return None

    def x_Binary(self, node):
        op = node.op
        if op in ("AND", "OR"):
            l, r = self.expr(node.left), self.expr(node.right)
            return Value("(%s %s %s)" % (l.sql, op, r.sql))
        if op in jpql.COMPARISONS:
            l, r = self.comparable(node.left, node.right)
            sqlop = "<>" if op == "!=" else op
            return Value("%s %s %s" % (l.sql, sqlop, r.sql))
        l, r = self.expr(node.left), self.expr(node.right)
        return Value("(%s %s %s)" % (l.sql, op, r.sql), field=l.field or r.field)

    def x_Unary(self, node):
        v = self.expr(node.operand)
        if node.op == "NOT":
            return Value("NOT (%s)" % v.sql)
        return Value("(-%s)" % v.sql, field=v.field)

    def x_Like(self, node):
        v = self.expr(node.operand)
        p = self.expr(node.pattern)
        sql = "%s %sLIKE %s" % (v.sql, "NOT " if node.negated else "", p.sql)
        if node.escape is not None:
            sql += " ESCAPE %s" % self.expr(node.escape).sql
        return Value(sql)

    def x_In(self, node):
        v = self.expr(node.operand)
        neg = "NOT " if node.negated else ""
        if len(node.items) == 1 and isinstance(node.items[0], jpql.Query):
            sub = self.x_Query(node.items[0])
            return Value("%s %sIN %s" % (v.sql, neg, sub.sql))
        f = self.key_field(v)
        items = [self.typed(item, f) for item in node.items]
        return Value("%s %sIN (%s)" % (v.sql, neg, ", ".join(i.sql for i in items)))

    def x_IsNull(self, node):
        v = self.expr(node.operand)
        if v.many is not None:
            raise ParameterError("IS NULL needs a single-valued path, not a collection")
        return Value("%s IS %sNULL" % (v.sql, "NOT " if node.negated else ""))

    def x_IsEmpty(self, node):
        v = self.expr(node.operand)
        if v.many is None:
            raise ParameterError("IS EMPTY needs a collection path")
        parent, f = v.many
        sub = "SELECT 1 FROM %s WHERE %s = %s.id" % (q(f.type), q(f.mapped_by), parent.alias)
        return Value("%sEXISTS (%s)" % ("" if node.negated else "NOT ", sub))

    def x_Between(self, node):
        v = self.expr(node.operand)
        f = self.key_field(v)
        low, high = self.typed(node.low, f), self.typed(node.high, f)
        return Value("%s %sBETWEEN %s AND %s" % (v.sql, "NOT " if node.negated else "",
                                                 low.sql, high.sql))

    def x_Func(self, node):
        name = node.name
        if name in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME"):
            return Value(self.bind(now_sql()), field=META_FIELDS["modTime"])
        if name == "SIZE":
            v = self.expr(node.args[0])
            if v.many is None:
                raise ParameterError("SIZE needs a collection path")
            parent, f = v.many
            return Value("(SELECT COUNT(*) FROM %s WHERE %s = %s.id)" % (
                q(f.type), q(f.mapped_by), parent.alias), field=COUNT_FIELD)
        args = [self.expr(a) for a in node.args]
        sqls = [a.sql for a in args]
        if name in jpql.AGGREGATES:
            if len(args) != 1:
                raise ParameterError("%s takes one argument" % name)
            d = "DISTINCT " if node.distinct else ""
            f = {"COUNT": COUNT_FIELD, "AVG": AVG_FIELD}.get(name, args[0].field)
            return Value("%s(%s%s)" % (name, d, sqls[0]), field=f)
        if name == "CONCAT":
            return Value("(%s)" % " || ".join(sqls), field=Field("s", ATTRIBUTE, "String"))
        if name == "SUBSTRING":
            return Value("substr(%s)" % ", ".join(sqls), field=Field("s", ATTRIBUTE, "String"))
        if name == "MOD":
            return Value("(%s %% %s)" % (sqls[0], sqls[1]), field=args[0].field)
        if name == "LOCATE":
            return Value("instr(%s, %s)" % (sqls[1], sqls[0]), field=COUNT_FIELD)
        if name == "LENGTH":
            return Value("length(%s)" % sqls[0], field=COUNT_FIELD)
        return Value("%s(%s)" % (name.lower(), ", ".join(sqls)), field=args[0].field)

    # -- whole queries ----------------------------------------------------------
    def from_clause(self, query: jpql.Query):
        if query.entity not in self.schema:
            raise ParameterError("%s is not an ICAT entity" % query.entity)
        root = Source(self.new_alias(), self.schema[query.entity])
        self.vars[query.var.lower()] = root
        for j in query.joins:
            parent = self.resolve(jpql.Path(j.path.parts[:-1]))
            if parent.source is None:
                if parent.etype is None:
                    raise ParameterError("Cannot join from %s" % ".".join(j.path.parts[:-1]))
                parent = self.resolve(jpql.Path(j.path.parts[:-1] + ("id",)))
            src = parent.source
            assert src is not None      # resolved through "id" above
            f = self.field_of(src.etype, j.path.parts[-1])
            if f.kind == ATTRIBUTE:
                raise ParameterError("Cannot join %s: it is an attribute" % ".".join(j.path.parts))
            if j.alias.lower() in self.vars:
                raise ParameterError("Variable %s is defined twice" % j.alias)
            self.vars[j.alias.lower()] = self.join(src, f, j.kind)
        return root

    def tail(self, query: jpql.Query) -> list[str]:
        parts = []
        conds = [self.expr(query.where).sql] if query.where is not None else []
        if self.authz is not None:
            # As icat.server does: every FROM/JOIN variable is limited to the
            # objects its entity's READ rules select.
            for src in list(self.vars.values()):
                restriction = self.authz(src.etype.name, "%s.id" % src.alias)
                if restriction is not None:
                    conds.append(restriction[0])
                    self.params.extend((p, None) for p in restriction[1])
        if conds:
            parts.append("WHERE " + " AND ".join(
                c if len(conds) == 1 else "(%s)" % c for c in conds))
        if query.group_by:
            parts.append("GROUP BY " + ", ".join(self.expr(e).sql for e in query.group_by))
            if query.having is not None:
                parts.append("HAVING " + self.expr(query.having).sql)
        if query.order:
            items = []
            for e, desc in query.order:
                items.append(self.expr(e).sql + (" DESC" if desc else ""))
            parts.append("ORDER BY " + ", ".join(items))
        return parts

    def assemble(self, select_sql, distinct, root, tail_parts):
        sql = "SELECT %s%s FROM %s %s" % ("DISTINCT " if distinct else "", select_sql,
                                          q(root.etype.name), root.alias)
        if self.joins:
            sql += " " + " ".join(self.joins)
        if tail_parts:
            sql += " " + " ".join(tail_parts)
        return sql

    def subquery(self, query: jpql.Query):
        root = self.from_clause(query)
        self.params = []
        values = [self.expr(item) for item in query.items]
        sel = ", ".join(v.sql for v in values)
        sel_params = self.params
        self.params = []
        tail = self.tail(query)
        sql = self.assemble(sel, query.distinct, root, tail)
        return sql, sel_params + self.params, values

    def translate(self, query: jpql.Query) -> Plan:
        root = self.from_clause(query)
        # The SELECT list is translated first (its implicit joins must exist
        # before WHERE refers to them), but its parameters come first as well.
        if len(query.items) == 1 and self._is_entity(query.items[0]):
            v = self.expr(query.items[0])
            src = v.source
            if src is None:
                # o.facility: join it to read its columns.
                parent = self.resolve(jpql.Path(query.items[0].parts[:-1]))
                src = self.implicit_join(parent.source, self.field_of(
                    parent.source.etype, query.items[0].parts[-1]))
            select_sql = entity_columns(src, self.meta)
            kind, etype, converters = "entity", src.etype, []
            select_var = query.items[0].parts[0] if len(query.items[0].parts) == 1 else None
        else:
            if query.include is not None:
                raise ParameterError("INCLUDE needs a query that selects one entity")
            values = [self.expr(item) for item in query.items]
            for val in values:
                if val.many is not None:
                    raise ParameterError("Cannot select a collection")
            select_sql = ", ".join(val.sql for val in values)
            converters = [value_reader(val) for val in values]
            kind = "scalar" if len(values) == 1 else "tuple"
            etype, select_var = None, None
        select_params = self.params
        self.params = []
        tail = self.tail(query)
        sql = self.assemble(select_sql, query.distinct, root, tail)
        params = select_params + self.params
        if query.limit is not None:
            offset, count = query.limit
            sql += " LIMIT %d OFFSET %d" % (-1 if count is None else count, offset)
        if query.include is not None and select_var is None:
            raise ParameterError("INCLUDE needs a query that selects a variable")
        return Plan(sql, [v for v, _ in params], kind, etype, converters, query.include,
                    select_var, query.limit, [s for _, s in params])

    def _is_entity(self, item) -> bool:
        if not isinstance(item, jpql.Path):
            return False
        saved = (list(self.joins), dict(self.implicit), self.counter[0], list(self.params))
        try:
            v = self.resolve(item)
        finally:
            self.joins, self.implicit, self.counter[0], self.params = \
                saved[0], saved[1], saved[2], saved[3]
        return v.etype is not None


def entity_columns(src: Source, meta: bool = False) -> str:
    """The columns an Entity is built from: id, attributes, relation ids and,
    with ``meta``, the audit columns (the layout of ``loader.RowLoader``)."""
    et = src.etype
    cols = ["%s.id" % src.alias]
    cols += ["%s.%s" % (src.alias, q(n)) for n in et.attrs]
    cols += ["%s.%s" % (src.alias, q(n)) for n in et.ones]
    if meta:
        cols += ["%s.%s" % (src.alias, q(n)) for n in META_ATTRS]
    return ", ".join(cols)


def value_reader(v: Value):
    if v.field is not None:
        return reader(v.field)
    return None


def translate(schema: Schema, query: jpql.Query, user: str, meta: bool = False,
              authz=None, zone=UTC) -> Plan:
    translator = Translator(schema, user)
    translator.meta = meta
    translator.authz = authz
    translator.zone = zone
    return translator.translate(query)
