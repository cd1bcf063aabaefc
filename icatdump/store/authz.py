"""Authorization as icat.server applies it: rules, groupings, public steps.

Rules are catalogue data (``Rule``, ``Grouping``, ``UserGroup``, ``User``,
``PublicStep``), ingested like any other object; this module reads them and
answers the questions ICAT's gatekeeper answers (ICAT-FACTS §2.2, icat.server
``GateKeeper``, ``Rule``, ``EntityBeanManager``):

* A root user (``rootUserNames``, by default ``simple/root`` and ``db/root``)
  may do everything.
* A rule applies to a user when it has no grouping, or when the user (by
  ``User.name``) is in its grouping through a ``UserGroup``.  Its ``what`` is
  an entity name, a concise query or a JPQL query; the entity it selects is
  the rule's *bean*, and its flags (``crudFlags``, upper-cased, trimmed) say
  which of create, read, update and delete it grants.  A rule whose query has
  no WHERE grants its operations on every object of its bean; otherwise on
  the objects the query selects (``:user`` is the user's name).
* A bean with a rule of no grouping and no WHERE (any flags) is a *public
  table*; an included relation is shown unfiltered when its target is a
  public table or the step (origin entity, field) is a ``PublicStep``.
* A Rule is checked when it is written (:func:`parse_rule`, called by the
  store's writer), with the faults of icat.server's ``Rule.fixup`` and
  ``RuleWhat``.  An attribute rule (``SELECT ds.name FROM Dataset ds``,
  update only) grants nothing a SOAP call asks for.

Rule lists are kept per user and dropped on every write to the entities they
come from (:data:`AUTH_ENTITIES`); what a restricted rule selects is never
kept, since any write may change it.
"""

from __future__ import annotations

import json
import logging

from ..errors import IcatError, ParameterError, PrivilegesError
from . import concise, jpql
from .ddl import q

log = logging.getLogger(__name__)

#: ``rootUserNames`` of a default icat.server installation.
ROOT_USERS = frozenset(("simple/root", "db/root"))

#: The entities rules, memberships and public steps are read from: a write to
#: one of them makes the kept rule lists stale.
AUTH_ENTITIES = frozenset(("Rule", "Grouping", "UserGroup", "User", "PublicStep"))

#: Access types as ICAT names them, with the crudFlags letter of each.
ACCESS = {"CREATE": "C", "READ": "R", "UPDATE": "U", "DELETE": "D"}



#: Fields every bean has besides its schema fields (icat.server's
#: ``EntityBaseBean``): an attribute rule may name them too.
BASE_FIELDS = frozenset(("id", "createId", "createTime", "modId", "modTime"))


class Rule:
    """One rule as it applies: its bean, flags, attribute and, if it does not
    select every object of its bean, its JPQL.

    ``restricted`` is icat.server's: the rule has a WHERE clause.  A rule
    with none and no grouping makes its bean a public table, whatever its
    flags (``Rule.PublicQuery``).
    """

    __slots__ = ("bean", "flags", "query", "attribute", "restricted")

    def __init__(self, bean: str, flags: str, query: str | None,
                 attribute: str | None = None, restricted: bool | None = None):
        self.bean = bean
        self.flags = flags
        self.query = query      # None: every object of the bean
        self.attribute = attribute
        self.restricted = query is not None if restricted is None else restricted

    def grants(self, flag: str) -> bool:
        """Whether the rule grants ``flag`` on whole objects: an attribute
        rule grants no operation a SOAP call asks for (icat.server's
        ``Rule.UpdateQuery`` wants ``attribute IS NULL``; only its REST
        ``write`` checks attributes one by one)."""
        return flag in self.flags and self.attribute is None


def to_jpql(what: str, schema) -> str:
    """The JPQL of a rule's ``what``: a concise query is converted first,
    as ICAT converts it when the rule is created."""
    text = what.strip()
    if text.upper().startswith("SELECT"):
        return text
    return concise.search_text(text, schema)


#: What Java's ``String.trim()`` removes from both ends: every character up
#: to U+0020 (Python's ``strip()`` removes other ones).
_JAVA_TRIMMED = "".join(map(chr, range(0x21)))


def check_flags(flags: str) -> str:
    """``crudFlags`` as icat.server's ``Rule.fixup`` reads them: upper-cased,
    trimmed, letters of CRUD only.  Its message names the flag field ``c``
    (whether a C came before the bad letter), not the letter, and so does
    this one."""
    flags = flags.upper().strip(_JAVA_TRIMMED)
    seen_c = False
    for ch in flags:
        if ch not in "CRUD":
            raise ParameterError("CRUD value %s contains %s"
                                 % (flags, "true" if seen_c else "false"))
        seen_c = seen_c or ch == "C"
    return flags


def parse_rule(what: str | None, flags: str | None, schema) -> Rule:
    """A :class:`Rule` from a Rule object's ``what`` and ``crudFlags``, or
    the BAD_PARAMETER fault icat.server's ``Rule.fixup`` and ``RuleWhat``
    raise: the flags are checked first, then ``what`` is parsed; it selects
    one FROM or JOIN variable (the rule's bean), or one attribute of it for
    an update-only rule, and has at most a WHERE clause after its FROM."""
    flags = check_flags(flags or "")
    if what is None:
        raise ParameterError("'what' must not be null")
    text = to_jpql(what, schema)
    query = jpql.parse(text)
    tokens = jpql.tokenize(text.strip(" "))
    item = query.items[0]
    if query.distinct or not isinstance(item, jpql.Path):
        raise ParameterError(_unexpected(tokens, 1, "Expected token from types [NAME]"))
    if len(query.items) > 1:
        raise ParameterError(_unexpected(tokens, 2, "Expected token from types [FROM]"))
    var = item.parts[0]
    beans = _variables(query, schema)
    bean = beans.get(var.upper())
    if bean is None:
        raise ParameterError("idVar '%s' referenced in the SELECT clause is not defined in "
                             "the FROM clause." % var.upper())
    attribute = ".".join(item.parts[1:]) or None
    if attribute is not None:
        if attribute not in schema[bean].fields and attribute not in BASE_FIELDS:
            raise ParameterError("class org.icatproject.core.entity.%s does not have "
                                 "attribute %s" % (bean, attribute))
        if set(flags) & set("CRD"):
            raise ParameterError("Attribute selection in rules is only allowed for Update")
    if query.group_by or query.having is not None or query.order or \
            query.include is not None or query.limit is not None:
        raise ParameterError(_unexpected(tokens, _first_clause_after_where(tokens),
                                         "No more input expected"))
    restricted = query.where is not None
    selects_all = not restricted and not query.joins
    return Rule(bean, flags, None if selects_all else text, attribute, restricted)


def _variables(query, schema) -> dict:
    """The entity of each FROM and JOIN variable, by upper-cased name (as
    icat.server's FromClause keys them)."""
    if query.entity not in schema:
        raise ParameterError("%s is not an ICAT entity" % query.entity)
    beans = {query.var.upper(): query.entity}
    for join in query.joins:
        parts = join.path.parts
        here = beans.get(parts[0].upper())
        if here is None:
            raise ParameterError("idVar '%s' referenced in the FROM clause is not defined."
                                 % parts[0].upper())
        for name in parts[1:]:
            field = schema[here].fields.get(name)
            if field is None or field.kind == "ATTRIBUTE":
                raise ParameterError("%s has no relationship field %s" % (here, name))
            here = field.type
        beans[join.alias.upper()] = here
    return beans


def _first_clause_after_where(tokens) -> int:
    """The token where a rule's FROM and WHERE clauses end: GROUP, HAVING,
    ORDER, INCLUDE or LIMIT (a sub-select sits in parentheses, where none of
    these may stand)."""
    depth = 0
    for i, t in enumerate(tokens):
        if t.kind == "PUNCT" and t.value in "()":
            depth += 1 if t.value == "(" else -1
        elif depth == 0 and t.kind == "KW" and t.value in (
                "GROUP", "HAVING", "ORDER", "INCLUDE", "LIMIT"):
            return i
    return len(tokens) - 1


def _text(token) -> str:
    if token.kind == "STR":
        return "'%s'" % token.value.replace("'", "''")
    if token.kind == "PARAM":
        return ":" + token.value
    if token.kind == "TS":
        return "{ts %s}" % token.value
    return token.value


def _unexpected(tokens, i: int, what: str) -> str:
    """icat.server's ParserException text: the token at ``i`` with two
    tokens of context either side."""
    tokens = [t for t in tokens if t.kind != "END"]
    at = _text(tokens[i]) if i < len(tokens) else ""
    before = "".join(_text(t) + " " for t in tokens[max(0, i - 2):i])
    after = "".join(_text(t) + " " for t in tokens[i + 1:i + 3])
    return "%s at token %s in %s< %s > %s" % (what, at, before, at, after)


def check_rule_object(values: dict, schema) -> dict:
    """A Rule object's ``crudFlags`` and ``what`` as icat.server's
    ``Rule.fixup`` checks them when it is written (BAD_PARAMETER); the
    flags are stored as it stores them, upper-cased and trimmed."""
    rule = parse_rule(values.get("what"), values.get("crudFlags"), schema)
    return {"crudFlags": rule.flags} if rule.flags != values.get("crudFlags") else {}


#: The checks icat.server makes of one object of a type beyond its fields,
#: after them (its ``preparePersist``/``postMergeFixup``), by entity name:
#: ``check(values, schema)`` raises the fault, or returns the fields whose
#: value icat.server stores changed (``{}``: none).  The store's writer runs
#: them on create and update, ``icatdata check`` on every object of a file.
OBJECT_CHECKS = {"Rule": check_rule_object}


class Gate:
    """The authorization questions for one catalogue connection.

    ``plan_of(text, user)`` translates a JPQL query to a plan (the store's
    translator without authorization: rules are evaluated as they stand).
    """

    def __init__(self, conn, schema, plan_of, root_users=ROOT_USERS):
        self.conn = conn
        self.schema = schema
        self.plan_of = plan_of
        self.root_users = frozenset(root_users)
        self._rules: dict[str, list[Rule]] = {}
        self._public: tuple[frozenset, frozenset] | None = None

    def is_root(self, user: str) -> bool:
        return user in self.root_users

    def invalidate(self) -> None:
        """Forget the kept rule lists (after a write to :data:`AUTH_ENTITIES`)."""
        self._rules.clear()
        self._public = None

    # -- what the catalogue says ------------------------------------------------
    def rules(self, user: str) -> list[Rule]:
        """The rules that apply to ``user``: no grouping, or one of theirs."""
        rules = self._rules.get(user)
        if rules is None:
            sql = ('SELECT r."what", r."crudFlags" FROM "Rule" r WHERE r."grouping" IS NULL '
                   'OR r."grouping" IN (SELECT ug."grouping" FROM "UserGroup" ug '
                   'JOIN "User" u ON ug."user" = u.id WHERE u."name" = ?) ORDER BY r.id')
            rules = []
            for what, flags in self.conn.execute(sql, (user,)):
                try:
                    rules.append(parse_rule(what, flags, self.schema))
                except (IcatError, ValueError) as exc:
                    log.warning("rule ignored: %s", exc)
            if len(self._rules) >= 1000:
                self._rules.clear()
            self._rules[user] = rules
        return rules

    def public(self) -> tuple[frozenset, frozenset]:
        """``(public tables, public steps)``; steps are ``(origin, field)``.

        A public table is the bean of a rule without grouping and without
        WHERE, whatever its flags: icat.server's ``Rule.PublicQuery`` asks
        for nothing else."""
        if self._public is None:
            tables = set()
            sql = 'SELECT "what", "crudFlags" FROM "Rule" WHERE "grouping" IS NULL'
            for what, flags in self.conn.execute(sql):
                try:
                    rule = parse_rule(what, flags, self.schema)
                except (IcatError, ValueError):
                    continue
                if not rule.restricted:
                    tables.add(rule.bean)
            steps = frozenset(self.conn.execute('SELECT "origin", "field" FROM "PublicStep"'))
            self._public = (frozenset(tables), steps)
        return self._public

    # -- restrictions -----------------------------------------------------------
    def restriction(self, user: str, bean: str, flag: str):
        """None when ``user`` may do ``flag`` on every ``bean``, else the
        SQL selecting the ids of the objects they may (``(sql, params)``; an
        empty ``sql`` when no rule grants anything)."""
        if user in self.root_users:
            return None
        if flag == "R" and bean in self.public()[0]:
            return None
        parts, params = [], []
        for rule in self.rules(user):
            if rule.bean != bean or not rule.grants(flag):
                continue
            if rule.query is None:
                return None
            plan = self.plan_of(rule.query, user)
            parts.append("SELECT id FROM (%s)" % plan.sql)
            params.extend(plan.params)
        return " UNION ".join(parts), params

    def search_condition(self, user: str, bean: str, column: str):
        """A WHERE condition limiting ``column`` (an id) to the objects of
        ``bean`` that ``user`` may read, as ``(sql, params)``; None if all."""
        r = self.restriction(user, bean, "R")
        if r is None:
            return None
        sql, params = r
        if not sql:
            return "0", []
        return "%s IN (%s)" % (column, sql), params

    def readable(self, user: str, bean: str, ids) -> set | None:
        """The ids among ``ids`` that ``user`` may read; None if all."""
        return self.permitted(user, "READ", bean, ids)

    def permitted(self, user: str, access: str, bean: str, ids) -> set | None:
        """The ids among ``ids`` that ``user`` may do ``access`` (READ,
        DELETE...) to, in one query; None if all."""
        r = self.restriction(user, bean, ACCESS[access])
        if r is None:
            return None
        sql, params = r
        if not sql or not ids:
            return set()
        rows = self.conn.execute("SELECT id FROM (%s) WHERE id IN (SELECT value FROM json_each(?))"
                                 % sql, list(params) + [json.dumps(list(ids))])
        return {row[0] for row in rows}

    def step_public(self, origin: str, field: str, target: str) -> bool:
        tables, steps = self.public()
        return target in tables or (origin, field) in steps

    def allowed(self, user: str, access: str, bean: str, id: int) -> bool:
        """Whether ``user`` may do ``access`` (CREATE, READ...) to ``bean`` ``id``."""
        r = self.restriction(user, bean, ACCESS[access])
        if r is None:
            return True
        sql, params = r
        if not sql:
            return False
        row = self.conn.execute("SELECT 1 FROM (%s) WHERE id = ? LIMIT 1" % sql,
                                list(params) + [int(id)]).fetchone()
        return row is not None

    def check(self, user: str, access: str, bean: str, id: int) -> None:
        """:meth:`allowed`, or icat.server's INSUFFICIENT_PRIVILEGES fault."""
        if not self.allowed(user, access, bean, id):
            raise refused(access, bean)

    def check_many(self, user: str, access: str, bean: str, ids) -> None:
        """:meth:`check` for every one of ``ids``, in one query."""
        ids = [int(i) for i in ids]
        allowed = self.permitted(user, access, bean, ids)
        if allowed is not None and any(i not in allowed for i in ids):
            raise refused(access, bean)


def refused(access: str, bean: str) -> PrivilegesError:
    """icat.server's INSUFFICIENT_PRIVILEGES fault for ``access`` to a ``bean``."""
    return PrivilegesError("%s access to this %s is not allowed." % (access, bean))


def exists(conn, bean: str, id: int) -> bool:
    return conn.execute("SELECT 1 FROM %s WHERE id = ?" % q(bean), (int(id),)).fetchone() is not None


def identity_changed(conn, etype, entity) -> bool:
    """Whether an update moves ``entity`` to another parent: a relation of
    its unique key names another object than the stored one.  icat.server
    (``EntityBeanManager.checkIdentityChange``) then wants DELETE of the old
    object and CREATE of the changed one besides UPDATE."""
    fields = [f for f in etype.constraint if f in etype.ones]
    new = [entity.values.get(f) for f in fields]
    if not any(getattr(v, "id", None) is not None for v in new):
        return False
    row = conn.execute("SELECT %s FROM %s WHERE id = ?" % (", ".join(q(f) for f in fields),
                                                         q(etype.name)), (int(entity.id),)).fetchone()
    return any(v is not None and v.id is not None and v.id != old for v, old in zip(new, row))
