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
* A bean with an unrestricted read rule of no grouping is a *public table*;
  an included relation is shown unfiltered when its target is a public table
  or the step (origin entity, field) is a ``PublicStep``.

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



class Rule:
    """One rule as it applies: its bean, flags and, if restricted, its JPQL."""

    __slots__ = ("bean", "flags", "query")

    def __init__(self, bean: str, flags: str, query: str | None):
        self.bean = bean
        self.flags = flags
        self.query = query      # None: every object of the bean


def to_jpql(what: str, schema) -> str:
    """The JPQL of a rule's ``what``: a concise query is converted first,
    as ICAT converts it when the rule is created."""
    text = what.strip()
    if text.upper().startswith("SELECT"):
        return text
    return concise.search_text(text, schema)


def parse_rule(what: str, flags: str, schema) -> Rule:
    """A :class:`Rule` from a Rule object's ``what`` and ``crudFlags``."""
    text = to_jpql(what, schema)
    query = jpql.parse(text)
    items = query.items
    if (len(items) != 1 or not isinstance(items[0], jpql.Path) or items[0].parts != (query.var,)
            or query.entity not in schema):
        raise ParameterError("rule %r does not select the entity of its FROM clause" % what)
    restricted = query.where is not None
    return Rule(query.entity, (flags or "").upper().strip(), text if restricted else None)


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
        """``(public tables, public steps)``; steps are ``(origin, field)``."""
        if self._public is None:
            tables = set()
            sql = 'SELECT "what", "crudFlags" FROM "Rule" WHERE "grouping" IS NULL'
            for what, flags in self.conn.execute(sql):
                try:
                    rule = parse_rule(what, flags, self.schema)
                except (IcatError, ValueError):
                    continue
                if rule.query is None and "R" in rule.flags:
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
            if rule.bean != bean or flag not in rule.flags:
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
