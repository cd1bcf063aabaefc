"""Create, update and delete objects with ICAT's semantics and messages.

``create_many`` runs in one transaction and has two modes:

* the fast path assigns ids from the catalogue-wide sequence to every object
  and embedded child first (so objects of the same call may refer to each
  other), converts and validates each row in Python, inserts each entity type
  with one ``executemany``, and then checks in bulk what SQLite does not:
  that related objects exist and that parameter types apply;
* when anything fails, it rolls back and replays the call object by object,
  row by row (the careful path), which finds the *first* failing top-level
  object and the exact ICAT message (ICAT-FACTS §1.2) and sets ``offset``.
  Errors are rare, so the careful path may be slow; it stops at the first
  error, so its cost is proportional to the failing offset.

Either way a failed call leaves nothing behind.  Server-set fields follow
ICAT: ``createId = modId = user``, ``createTime = modTime = now``; Java
defaults apply to omitted values (file sizes/counts 0, primitive booleans
false).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import sqlite3
from collections import defaultdict
from typing import Callable

from ..client import IcatError, NoSuchObjectError, ObjectExistsError, ParameterError, \
    ValidationError
from ..entity import Entity
from ..rules import rules_of
from ..schema import META_ATTRS, EntityType, Schema
from ..types import ValueProblem
from . import authz
from .ddl import META_TABLE, q
from .values import date_from_sql, date_to_sql, now_sql, writer

#: *Parameter entities: parent relation, ParameterType flag, how ICAT names it.
PARAMETER_PARENTS = {
    "DatafileParameter": ("applicableToDatafile", "a Datafile"),
    "DatasetParameter": ("applicableToDataset", "a Dataset"),
    "InvestigationParameter": ("applicableToInvestigation", "an Investigation"),
    "SampleParameter": ("applicableToSample", "a Sample"),
    "DataCollectionParameter": ("applicableToDataCollection", "a DataCollection"),
}

_IGNORED = frozenset(META_ATTRS) | {"id"}
_BAD = object()     # a value its converter refused


def _given_audit(ent: Entity, row: list) -> None:
    """Put the audit fields ``ent`` gives into its row (columns 1-4)."""
    values = ent.values
    for pos, name in enumerate(META_ATTRS, 1):
        value = values.get(name)
        if value is None:
            continue
        if name.endswith("Time"):
            if not isinstance(value, _dt.datetime):
                raise ValidationError("%s.%s must be a date" % (ent.type.name, name))
            row[pos] = date_to_sql(value)
        else:
            row[pos] = str(value)


def _ids_json(ids) -> str:
    return json.dumps(list(ids))


class RowBuilder:
    """Turns Entities of one type into rows, with ICAT's validation.

    Row layout: id, createId, createTime, modId, modTime, attributes (sorted
    by name), relation ids (sorted by name) — the same as the table.
    """

    def __init__(self, etype: EntityType):
        self.etype = etype
        name = self.name = etype.name
        # Conversion, not-null, server defaults and lengths: icatdump.rules.
        rules = rules_of(etype)
        self.attrs = []
        for fname, f in etype.attrs.items():
            rule = rules[fname]
            conv = writer(f, name)
            default = None if rule.default is None else conv(rule.default)
            self.attrs.append((fname, conv, rule.required, rule if rule.length else None,
                               default))
        self.ones = [(fname, f.type, rules[fname].required) for fname, f in etype.ones.items()]
        self.manys = [(fname, f.mapped_by, f.type) for fname, f in etype.manys.items()]
        self.known = frozenset(etype.fields) | _IGNORED
        cols = ["id", "createId", "createTime", "modId", "modTime"] + \
            list(etype.attrs) + list(etype.ones)
        self.insert = "INSERT INTO %s (%s) VALUES (%s)" % (
            q(name), ", ".join(q(c) for c in cols), ", ".join("?" * len(cols)))
        data_cols = list(etype.attrs) + list(etype.ones)
        self.update = "UPDATE %s SET %s WHERE id = ?" % (
            q(name), ", ".join("%s = ?" % q(c) for c in ["modId", "modTime"] + data_cols))
        pos = self.pos = {c: i for i, c in enumerate(cols)}
        self.constraint = [(c, pos[c], etype.fields[c]) for c in etype.constraint]
        self.param = PARAMETER_PARENTS.get(name)
        #: A check of the whole object after its fields (``authz.OBJECT_CHECKS``).
        self.check: Callable[[Entity], dict] | None = None
        self.type_pos = pos.get("type")
        # For quick_row: the data columns as a template (defaults filled in),
        # where each field goes, and the columns that must not stay empty.
        self.template = [default for *_, default in self.attrs] + [None] * len(self.ones)
        # A string of at most half its limit fits whatever its characters
        # (FieldRule.too_long): only longer ones need the rule asked.
        self.slots = {fname: (pos[fname], conv, rule,
                              rule.length >> 1 if rule is not None and rule.length else None)
                      for fname, conv, _, rule, _ in self.attrs}
        self.slots.update((fname, (pos[fname], None, target, None))
                          for fname, target, _ in self.ones)
        self.skip = frozenset(etype.manys) | _IGNORED
        self.required = [pos[fname] for fname, _, required, _, _ in self.attrs if required]
        self.required += [pos[fname] for fname, _, required in self.ones if required]
        self.positions = pos

    def values_of(self, ent) -> dict:
        """The entity's values, with python-icat alias names mapped."""
        values = ent.values
        if self.known.issuperset(values):
            return values
        out = {}
        for k, v in values.items():
            if k in self.known:
                out[k] = v
            elif self.etype.has(k):
                out[self.etype.aliases[k]] = v
            else:
                raise ParameterError("%s has no field %s" % (self.name, k))
        return out

    def quick_row(self, ent, new_id, stamp, user, parent_field, parent_id, assigned,
                  refs) -> list:
        """:meth:`row` for the common case, from the values the entity has.

        Objects leave most optional fields out (a datafile parameter has one
        value of six), so filling a template from ``ent.values`` does less
        than asking for every column.  Anything unusual -- an alias name, a
        value to convert that does not, a missing or too long one -- is left
        to :meth:`row`, which gives ICAT's message for the first problem in
        column order, as before.
        """
        row = [new_id, user, stamp, user, stamp]
        row += self.template
        slots, skip = self.slots, self.skip
        for name, v in ent.values.items():
            slot = slots.get(name)
            if slot is None:
                if name in skip:
                    continue
                return self.row(ent, new_id, stamp, user, parent_field, parent_id, assigned,
                                refs)
            if v is None:
                continue
            pos, conv, extra, half = slot
            if conv is not None:
                try:
                    v = conv(v)
                except ValueProblem:
                    v = _BAD
                if v is None:
                    continue
                if v is _BAD or (half is not None and len(v) > half and extra is not None
                                 and extra.too_long(v)):
                    return self.row(ent, new_id, stamp, user, parent_field, parent_id, assigned,
                                    refs)
                row[pos] = v
            elif name != parent_field:
                rid = assigned.get(id(v))
                if rid is None:
                    rid = v.id if isinstance(v, Entity) else v
                    if type(rid) is not int:
                        return self.row(ent, new_id, stamp, user, parent_field, parent_id,
                                        assigned, refs)
                    refs[extra].add(rid)
                row[pos] = rid
        if parent_field is not None:
            row[self.positions[parent_field]] = parent_id
        for pos in self.required:
            if row[pos] is None:
                return self.row(ent, new_id, stamp, user, parent_field, parent_id, assigned, refs)
        return row

    def checked(self, ent, row: list) -> None:
        """Run the object's check (raising its fault) on a built ``row``;
        store the values it changes as icat.server stores them."""
        if self.check is not None:
            for name, value in self.check(ent).items():
                row[self.pos[name]] = value

    def row(self, ent, new_id, stamp, user, parent_field, parent_id, assigned, refs) -> list:
        values = ent.values
        if not self.known.issuperset(values):
            values = self.values_of(ent)
        get = values.get
        row = [new_id, user, stamp, user, stamp]
        append = row.append
        name = None
        try:
            for name, conv, required, rule, default in self.attrs:
                v = get(name)
                if v is not None:
                    v = conv(v)
                if v is None:
                    if default is not None:
                        v = default
                    elif required:
                        raise ValidationError("%s: %s cannot be null." % (self.name, name))
                elif rule is not None and rule.too_long(v) is not None:
                    raise ValidationError("%s: %s cannot have length > %s"
                                          % (self.name, name, rule.length))
                append(v)
        except ValueProblem as exc:
            detail = str(exc)
            prefix = "%s.%s: " % (self.name, name)
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            raise ValidationError("%s: %s: %s" % (self.name, name, detail)) from None
        for name, target, not_null in self.ones:
            if name == parent_field:
                rid = parent_id
            else:
                r = get(name)
                if r is None:
                    rid = None
                else:
                    rid = assigned.get(id(r))
                    if rid is None:
                        rid = r.id if isinstance(r, Entity) else r
                        if type(rid) is not int:
                            raise ValidationError(
                                "%s: %s refers to an object without an id (not created yet)"
                                % (self.name, name))
                        refs[target].add(rid)
            if rid is None and not_null:
                raise ValidationError("%s: %s cannot be null." % (self.name, name))
            append(rid)
        return row

    def duplicate(self, row) -> ObjectExistsError:
        parts = []
        for fname, pos, f in self.constraint:
            v = row[pos]
            if f.kind != "ATTRIBUTE":
                text = "%s:%s" % (f.type, v)
            elif f.type == "Date" and v is not None:
                text = date_from_sql(v).isoformat()
            elif f.type == "boolean":
                text = "true" if v else "false"
            else:
                text = str(v)
            parts.append("%s = '%s'" % (fname, text))
        return ObjectExistsError("%s exists with %s" % (self.name, ", ".join(parts)))


class Writer:
    """The write operations of one catalogue connection."""

    def __init__(self, conn: sqlite3.Connection, schema: Schema):
        self.conn = conn
        self.schema = schema
        self.builders: dict[str, RowBuilder] = {}
        #: Whether objects created keep the audit fields their values give
        #: (createId, createTime, modId, modTime; the user and now for those
        #: they lack), as icat.server creates the objects of an import with
        #: ``attributes=ALL``; otherwise the user and now, always.
        self.keep_audit = False

    def builder(self, name: str) -> RowBuilder:
        b = self.builders.get(name)
        if b is None:
            if name not in self.schema:
                raise ParameterError("%s is not an ICAT entity" % name)
            b = self.builders[name] = RowBuilder(self.schema[name])
            check = authz.OBJECT_CHECKS.get(name)
            if check is not None:
                schema = self.schema
                b.check = lambda ent: check(ent.values, schema)
        return b

    # -- transactions ---------------------------------------------------------
    # Each write call is one transaction -- or, inside :meth:`transaction`
    # (or between the blocks of :meth:`commit_every`), a savepoint of the
    # transaction open, so that several calls (the batches of one ingest
    # chunk) commit or roll back together.
    _outer = 0
    _in_savepoint = False

    def begin(self):
        self._in_savepoint = bool(self._outer or self.conn.in_transaction)
        self.conn.execute("SAVEPOINT write_call" if self._in_savepoint else "BEGIN IMMEDIATE")

    def commit(self):
        self.conn.execute("RELEASE write_call" if self._in_savepoint else "COMMIT")

    def rollback(self):
        if not self.conn.in_transaction:
            return
        if self._in_savepoint:
            try:
                self.conn.execute("ROLLBACK TO write_call")
                self.conn.execute("RELEASE write_call")
            except sqlite3.OperationalError:
                pass        # no savepoint open: nothing of this call to undo
        else:
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def transaction(self):
        """Run the write calls of the ``with`` block in one transaction:
        all of them are committed at its end, none if it raises.

        Inside :meth:`commit_every` the block is a savepoint of a longer
        transaction instead, committed with the blocks after it.
        """
        if self._outer:
            self._outer += 1
            try:
                yield
            finally:
                self._outer -= 1
            return
        grouped = self._group is not None
        if grouped:
            if not self.conn.in_transaction:
                self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("SAVEPOINT block")
        else:
            self.conn.execute("BEGIN IMMEDIATE")
        self._outer = 1
        try:
            yield
        except BaseException:
            self._outer = 0
            if self.conn.in_transaction:
                if grouped:
                    self.conn.execute("ROLLBACK TO block")
                    self.conn.execute("RELEASE block")
                else:
                    self.conn.execute("ROLLBACK")
            raise
        self._outer = 0
        if not grouped:
            self.conn.execute("COMMIT")
            return
        self.conn.execute("RELEASE block")
        if self._group[1] >= self._group[0]:
            self.conn.execute("COMMIT")
            self._group[1] = 0

    # Grouped commits: [objects per commit, objects written since the last].
    _group = None

    @contextlib.contextmanager
    def commit_every(self, objects: int):
        """Defer the commits of :meth:`transaction` blocks until ``objects``
        objects were created, and to the end of the ``with`` block.

        A commit writes every page the transaction touched and may start a
        checkpoint; an ingest's chunk holds a few hundred objects, and
        committing each one cost about a tenth of the ingest's time.  Blocks
        stay all or nothing (savepoints); when the ``with`` block ends --
        on an error too -- the blocks that completed are committed, so a
        failed chunk loses only itself.  A process killed outright loses
        the uncommitted blocks, which a re-run creates again.
        """
        if self._group is not None or self._outer:
            yield
            return
        self._group = [max(1, objects), 0]
        try:
            yield
        finally:
            self._group = None
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def next_id(self) -> int:
        return int(self.conn.execute(
            "SELECT value FROM %s WHERE key = 'next_id'" % META_TABLE).fetchone()[0])

    def set_next_id(self, value: int):
        self.conn.execute("UPDATE %s SET value = ? WHERE key = 'next_id'" % META_TABLE,
                          (str(value),))

    # -- create -----------------------------------------------------------------
    def plan(self, entities, first_id):
        """Assign ids depth-first; return the nodes and the id map.

        A node is (entity, builder, parent field, parent id, offset, new id).
        """
        nodes, assigned = [], {}
        add_node = nodes.append
        next_id = first_id
        builder = self.builder
        for offset, top in enumerate(entities):
            if not isinstance(top, Entity):
                raise ParameterError("not an Entity: %r" % (top,), offset)
            stack = [(top, builder(top.type.name), None, None)]
            while stack:
                ent, b, pfield, pid = stack.pop()
                nid = next_id
                next_id += 1
                assigned[id(ent)] = nid
                add_node((ent, b, pfield, pid, offset, nid))
                if not b.manys:
                    continue
                get = ent.values.get
                for mname, mapped_by, target in b.manys:
                    kids = get(mname)
                    if not kids:
                        continue
                    tb = builder(target)
                    for kid in reversed(kids):
                        if not isinstance(kid, Entity) or kid.type.name != target:
                            raise ParameterError("%s.%s must hold %s objects"
                                                 % (b.name, mname, target), offset)
                        stack.append((kid, tb, mapped_by, nid))
        return nodes, assigned, next_id

    def create_many(self, entities, user: str) -> list[int]:
        entities = list(entities)
        if not entities:
            return []
        self.begin()
        try:
            first = self.next_id()
            nodes, assigned, next_id = self.plan(entities, first)
            stamp = now_sql()
            try:
                self.fast(nodes, assigned, stamp, user)
            except (IcatError, sqlite3.IntegrityError) as exc:
                self.rollback()
                self.begin()
                self.careful(nodes, assigned, stamp, user, exc)
                raise
            self.set_next_id(next_id)
            self.commit()
            if self._group is not None:
                self._group[1] += len(nodes)
        except BaseException:
            self.rollback()
            raise
        for ent, _, _, _, _, nid in nodes:
            ent.id = nid
        return [assigned[id(e)] for e in entities]

    def fast(self, nodes, assigned, stamp, user):
        rows = defaultdict(list)
        refs = defaultdict(set)
        for ent, b, pfield, pid, offset, nid in nodes:
            row = b.quick_row(ent, nid, stamp, user, pfield, pid, assigned, refs)
            b.checked(ent, row)
            if self.keep_audit:
                _given_audit(ent, row)
            rows[b].append(row)
        for b, brows in rows.items():
            self.conn.executemany(b.insert, brows)
        self.check_refs(refs)
        for b, brows in rows.items():
            if b.param is not None:
                self.check_parameters(b, {r[b.type_pos] for r in brows})

    def careful(self, nodes, assigned, stamp, user, original):
        """Replay object by object; raise the first error with its offset."""
        i, n = 0, len(nodes)
        while i < n:
            offset = nodes[i][4]
            refs = defaultdict(set)
            params = defaultdict(set)
            try:
                while i < n and nodes[i][4] == offset:
                    ent, b, pfield, pid, _, nid = nodes[i]
                    row = b.row(ent, nid, stamp, user, pfield, pid, assigned, refs)
                    b.checked(ent, row)
                    if self.keep_audit:
                        _given_audit(ent, row)
                    try:
                        self.conn.execute(b.insert, row)
                    except sqlite3.IntegrityError:
                        raise b.duplicate(row) from None
                    if b.param is not None:
                        params[b].add(row[b.type_pos])
                    i += 1
                self.check_refs(refs)
                for b, type_ids in params.items():
                    self.check_parameters(b, type_ids)
            except IcatError as exc:
                exc.offset = offset
                raise
        raise original

    def check_refs(self, refs):
        """Every related object named by id must exist (NO_SUCH_OBJECT_FOUND)."""
        for target, ids in refs.items():
            found = {r[0] for r in self.conn.execute(
                "SELECT id FROM %s WHERE id IN (SELECT value FROM json_each(?))" % q(target),
                (_ids_json(ids),))}
            missing = sorted(ids - found)
            if missing:
                raise NoSuchObjectError("%s[id:%d] not found." % (target, missing[0]))

    def check_parameters(self, b: RowBuilder, type_ids):
        """ICAT's *Parameter check, with the ParameterType looked up by id."""
        flag, what = b.param
        for tid, name, ok in self.conn.execute(
                "SELECT id, name, %s FROM ParameterType WHERE id IN "
                "(SELECT value FROM json_each(?)) ORDER BY id" % q(flag),
                (_ids_json(t for t in type_ids if t is not None),)):
            if not ok:
                raise ValidationError("Parameter of type %s is not applicable to %s"
                                      % (name, what))

    # -- update -------------------------------------------------------------------
    def update(self, ent: Entity, user: str):
        b = self.builder(ent.type.name)
        if ent.id is None:
            raise NoSuchObjectError("%s[id:None] not found." % b.name)
        self.begin()
        try:
            if self.conn.execute("SELECT 1 FROM %s WHERE id = ?" % q(b.name),
                                 (ent.id,)).fetchone() is None:
                raise NoSuchObjectError("%s[id:%d] not found." % (b.name, ent.id))
            refs: defaultdict[str, set] = defaultdict(set)
            row = b.row(ent, ent.id, now_sql(), user, None, None, {}, refs)
            b.checked(ent, row)
            try:
                self.conn.execute(b.update, row[3:5] + row[5:] + [ent.id])
            except sqlite3.IntegrityError:
                raise b.duplicate(row) from None
            self.check_refs(refs)
            if b.param is not None:
                self.check_parameters(b, {row[b.type_pos]})
            self.commit()
        except BaseException:
            self.rollback()
            raise

    # -- delete -------------------------------------------------------------------
    def delete_many(self, entities):
        """Delete by id, cascading along every one-to-many relation."""
        targets = defaultdict(set)
        for e in entities:
            if e.id is None:
                raise NoSuchObjectError("%s[id:None] not found." % e.type.name)
            targets[self.builder(e.type.name).name].add(e.id)
        self.begin()
        try:
            for name, ids in targets.items():
                found = {r[0] for r in self.conn.execute(
                    "SELECT id FROM %s WHERE id IN (SELECT value FROM json_each(?))" % q(name),
                    (_ids_json(ids),))}
                missing = sorted(ids - found)
                if missing:
                    raise NoSuchObjectError("%s[id:%d] not found." % (name, missing[0]))
            doomed = defaultdict(set)
            todo = list(targets.items())
            while todo:
                name, ids = todo.pop()
                ids = ids - doomed[name]
                if not ids:
                    continue
                doomed[name] |= ids
                for mname, mapped_by, target in self.builder(name).manys:
                    child_ids = {r[0] for r in self.conn.execute(
                        "SELECT id FROM %s WHERE %s IN (SELECT value FROM json_each(?))"
                        % (q(target), q(mapped_by)), (_ids_json(ids),))}
                    if child_ids:
                        todo.append((target, child_ids))
            for name, ids in doomed.items():
                self.conn.execute("DELETE FROM %s WHERE id IN (SELECT value FROM json_each(?))"
                                  % q(name), (_ids_json(ids),))
            self.commit()
        except BaseException:
            self.rollback()
            raise
