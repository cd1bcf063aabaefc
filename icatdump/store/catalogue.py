"""The embedded ICAT catalogue: an SQLite file behind the Client interface.

:func:`init_catalogue` creates the file (tables generated from the schema of
the chosen ICAT version, which is recorded in a metadata table);
:class:`EmbeddedClient` opens it and implements search/get/create/update/
delete with ICAT's semantics, so that dump and ingest behave exactly as
against a real server, without one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse

from ..client import Client, NoSuchObjectError, ParameterError
from ..entity import Entity
from ..errors import CatalogueError, PrivilegesError
from ..schema import VERSIONS, Schema
from . import authz
from .ddl import META_TABLE, NEW_FILE_PRAGMAS, PRAGMAS, meta_ddl, table_ddl
from . import concise
from .loader import Budget, Loader
from .plans import PlanCache
from .write import Writer

DEFAULT_USER = "simple/root"
DEFAULT_MAX_ENTITIES = 10000


def _connect(path: str, first_pragmas=()) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in tuple(first_pragmas) + PRAGMAS:
        conn.execute(pragma)
    return conn


def writable(path: str) -> bool:
    """Whether the catalogue and its directory (where SQLite keeps the WAL
    and its index) can be written: not on a read-only mount, not immutable."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)


def _connect_read_only(path: str) -> sqlite3.Connection:
    """A catalogue nobody here can write (a read-only mount, a backup copy):
    opened as immutable, since SQLite cannot create the WAL index beside it."""
    uri = "file:%s?immutable=1" % urllib.parse.quote(os.path.abspath(path))
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def init_catalogue(path: str | os.PathLike[str], version: str = "6.2") -> None:
    """Create a new, empty catalogue of ICAT schema ``version`` at ``path``.

    Refuses to touch an existing non-empty file: a catalogue is never
    silently overwritten or mixed with another database.  The file is built
    under a temporary name and renamed when complete, so a failure (a full
    disk) leaves nothing that would block the next attempt.
    """
    path = os.fspath(path)
    if version not in VERSIONS:
        raise ValueError("unknown ICAT schema version %r (known: %s)"
                         % (version, ", ".join(VERSIONS)))
    if os.path.exists(path) and os.path.getsize(path) > 0:
        raise CatalogueError("%s exists and is not empty; refusing to create a catalogue there"
                             % path)
    schema = Schema.for_version(version)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, ".%s.%d.init" % (name, os.getpid()))
    try:
        # Built with a rollback journal, so that everything is in the one
        # file when it is renamed; a WAL left beside the temporary name (its
        # checkpoint failed) would stay behind.  WAL from then on.
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            for pragma in NEW_FILE_PRAGMAS + ("PRAGMA journal_mode = DELETE",):
                conn.execute(pragma)
            conn.execute("BEGIN")
            for stmt in meta_ddl() + table_ddl(schema):
                conn.execute(stmt)
            conn.executemany("INSERT INTO %s (key, value) VALUES (?, ?)" % META_TABLE,
                             [("schema_version", version), ("next_id", "1"),
                              ("format", "icatdump-store-1")])
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        if os.path.exists(temporary + "-wal"):
            raise OSError(0, "the new catalogue could not be completed")
        os.replace(temporary, path)
    except (OSError, sqlite3.Error) as exc:
        for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        cause = getattr(exc, "strerror", None) or str(exc)
        raise CatalogueError("cannot create a catalogue at %s: %s" % (path, cause)) from None


class EmbeddedClient(Client):
    """A Client on an embedded catalogue file.

    ``user`` is the name stored in createId/modId (``login`` changes it to
    ``<auth>/<username>``, as ICAT's simple authenticator names users);
    ``max_entities`` is ICAT's limit on objects per search, INCLUDEs counted.
    """

    transactional = True

    def __init__(self, path: str | os.PathLike[str], user: str = DEFAULT_USER,
                 max_entities: int = DEFAULT_MAX_ENTITIES):
        path = os.fspath(path)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            raise CatalogueError("no catalogue at %s" % path)
        self.url = path
        self.user = user
        self._max_entities = max_entities
        self.read_only = not writable(path)
        conn = None
        try:
            # The pragmas already read the file: a file that is no SQLite
            # database fails here, before the metadata table is asked for.
            conn = _connect_read_only(path) if self.read_only else _connect(path)
            meta = dict(conn.execute("SELECT key, value FROM %s" % META_TABLE))
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise CatalogueError("%s is not an icatdump catalogue (%s)" % (path, exc)) from None
        self.conn = conn
        self.schema_version = meta["schema_version"]
        self.schema = Schema.for_version(self.schema_version)
        self.apiversion = self.schema_version + ".0"
        self.loader = Loader(self.conn, self.schema)
        self.plans = PlanCache(self.schema)
        self.writer = Writer(self.conn, self.schema)
        #: Authorization (:meth:`authorize`); None: every user may do everything.
        self.gate: authz.Gate | None = None

    # -- session ----------------------------------------------------------------
    def login(self, auth: str, credentials: dict) -> None:
        name = (credentials or {}).get("username")
        if name:
            self.user = "%s/%s" % (auth, name) if auth else name

    def authorize(self, root_users=authz.ROOT_USERS) -> None:
        """Apply the catalogue's rules to every user but ``root_users``, as
        icat.server does (the local server turns this on; a client used
        without a server stays root-equivalent)."""
        self.gate = authz.Gate(self.conn, self.schema, self.plans.plan, root_users)

    def _restricted(self) -> authz.Gate | None:
        """The gate, when the current user is subject to it.  No user is the
        server's own reading (the IDS serving data prepared earlier, as
        ids.server reads with its reader account), which rules do not limit."""
        gate = self.gate
        if gate is None or self.user is None or gate.is_root(self.user):
            return None
        return gate

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None        # type: ignore[assignment]  # closed: not to be used again

    @property
    def meta(self) -> bool:
        """Whether entities read carry createId, createTime, modId and modTime,
        as ICAT's beans always do (the local server turns it on; a dump
        writes no audit fields, so it is off by default)."""
        return self.loader.meta

    @meta.setter
    def meta(self, value: bool) -> None:
        if bool(value) != self.loader.meta:
            # Rows and their loaders differ with and without the columns.
            self.loader.meta = self.plans.meta = bool(value)
            self.loader.row_loaders.clear()
            self.plans.templates.clear()

    @property
    def timezone(self):
        """The zone in which a date in a query without offset (``{ts
        2012-07-26 15:44:24}``, ``'2012-07-26'``) is read: UTC unless set
        (None: the machine's).  ``icatdata serve --timezone`` sets it, as a
        real ICAT reads such literals in its own zone."""
        return self.plans.zone

    @timezone.setter
    def timezone(self, zone) -> None:
        if zone is not self.plans.zone:
            self.plans.zone = zone
            self.plans.templates.clear()

    @property
    def max_entities(self) -> int:
        return self._max_entities

    @max_entities.setter
    def max_entities(self, value: int) -> None:
        self._max_entities = int(value)

    # -- reading ------------------------------------------------------------------
    def search(self, query) -> list:
        """Run a JPQL query (a string or a :class:`~icatdump.query.Query`)."""
        gate = self._restricted()
        if gate is None:
            return self._run(self.plans.plan(str(query), self.user))
        user = self.user

        def condition(bean, column):
            return gate.search_condition(user, bean, column)

        def visible(origin, field, target, ids):
            return None if gate.step_public(origin, field, target) else \
                gate.readable(user, target, ids)

        plan = self.plans.plan(str(query), user, condition)
        self.loader.visible = visible
        try:
            return self._run(plan)
        finally:
            self.loader.visible = None

    def _run(self, plan) -> list:
        budget = Budget(self._max_entities)
        cur = self.conn.execute(plan.sql, plan.params)
        rows = cur.fetchmany(self._max_entities + 1)
        budget.spend(len(rows))
        cur.close()
        if plan.kind == "entity":
            return self.loader.entities(plan.etype, rows, plan.include, plan.select_var, budget)
        convs = plan.converters
        if plan.kind == "scalar":
            conv = convs[0]
            if conv is None:
                return [r[0] for r in rows]
            return [None if r[0] is None else conv(r[0]) for r in rows]
        return [tuple(v if c is None or v is None else c(v) for v, c in zip(r, convs))
                for r in rows]

    def get(self, entity: str, id: int, includes="") -> Entity:
        """Fetch one object by id.

        ``entity`` is an entity name or an ICAT get query
        (``"Dataset ds INCLUDE ds.datafiles AS df, df.parameters"``, or the
        old form ``"Dataset INCLUDE 1"``, ``"Dataset INCLUDE Datafile"``);
        ``includes`` may add an INCLUDE clause (``"1"``,
        ``"INCLUDE o.facility"``) or be a list of relation paths.
        """
        words = concise.get_query(str(entity), self.schema).strip().split(" ", 2)
        name, var, include = words[0], "o", ""
        rest = words[1:]
        if rest and rest[0].upper() == "AS":
            rest = rest[1].split(" ", 1) if len(rest) > 1 else []
        if rest:
            if rest[0].upper() == "INCLUDE":
                include = " ".join(rest[1:])
            else:
                var = rest[0]
                tail = " ".join(rest[1:]).strip()
                if tail:
                    if not tail.upper().startswith("INCLUDE "):
                        raise ParameterError("Bad get query %r" % entity)
                    include = tail[8:]
        if includes:
            if isinstance(includes, (list, tuple)):
                extra = ", ".join("%s.%s" % (var, p) for p in includes)
            else:
                extra = str(includes).strip()
                if extra.upper().startswith("INCLUDE "):
                    extra = extra[8:].strip()
            include = "%s, %s" % (include, extra) if include else extra
        if name not in self.schema:
            raise ParameterError("%s is not an ICAT entity" % name)
        query = "SELECT %s FROM %s %s WHERE %s.id = %d" % (var, name, var, var, int(id))
        if include.strip():
            query += " INCLUDE " + include.strip()
        result = self.search(query)
        if not result:
            gate = self._restricted()
            if gate is not None and authz.exists(self.conn, name, id):
                raise authz.refused("READ", name)
            raise NoSuchObjectError("%s[id:%d] not found." % (name, int(id)))
        return result[0]

    @contextlib.contextmanager
    def snapshot(self):
        """Every read of the block in one read transaction: one state of the
        catalogue, whatever other processes commit meanwhile (WAL)."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    # -- writing --------------------------------------------------------------------
    def transaction(self):
        """Several write calls as one transaction (an ingest chunk): all or nothing."""
        return self.writer.transaction()

    @contextlib.contextmanager
    def keeping_audit(self):
        """Objects created in the block keep the createId, createTime, modId
        and modTime they carry, as icat.server's import with
        ``attributes=ALL`` (a root user's) creates them."""
        self.writer.keep_audit = True
        try:
            yield
        finally:
            self.writer.keep_audit = False

    def commit_every(self, objects: int):
        """Commit :meth:`transaction` blocks in groups of about ``objects``
        objects: an ingest's chunks are small, and each commit costs."""
        return self.writer.commit_every(objects)

    def create_many(self, entities) -> list[int]:
        entities = list(entities)
        gate = self._restricted()
        if gate is None:
            ids = self.writer.create_many(entities, self.user)
        else:
            # As icat.server: created first, then CREATE checked for each
            # object of the list (not for the children created with it),
            # all undone if one is not allowed.
            with self.writer.transaction():
                ids = self.writer.create_many(entities, self.user)
                for offset, (ent, new_id) in enumerate(zip(entities, ids)):
                    try:
                        gate.check(self.user, "CREATE", ent.type.name, new_id)
                    except PrivilegesError as exc:
                        exc.offset = offset
                        raise
        self._written(entities, True)
        return ids

    def create(self, entity: Entity) -> int:
        try:
            return self.create_many([entity])[0]
        except Exception as exc:
            if hasattr(exc, "offset"):
                exc.offset = None
            raise

    def update(self, entity: Entity) -> None:
        gate = self._restricted()
        name = entity.type.name
        if gate is None or entity.id is None or not authz.exists(self.conn, name, entity.id):
            self.writer.update(entity, self.user)
        else:
            # As icat.server: UPDATE; moving the object to another parent
            # also DELETE before and CREATE after the change.
            gate.check(self.user, "UPDATE", name, entity.id)
            moved = authz.identity_changed(self.conn, entity.type, entity)
            if moved:
                gate.check(self.user, "DELETE", name, entity.id)
            with self.writer.transaction():
                self.writer.update(entity, self.user)
                if moved:
                    gate.check(self.user, "CREATE", name, entity.id)
        self._written([entity], False)

    def delete_many(self, entities) -> None:
        entities = list(entities)
        gate = self._restricted()
        if gate is not None:
            for ent in entities:
                if ent.id is not None and authz.exists(self.conn, ent.type.name, ent.id):
                    gate.check(self.user, "DELETE", ent.type.name, ent.id)
        self.writer.delete_many(entities)
        self._written(entities, False)

    def is_access_allowed(self, entity: Entity, access: str) -> bool:
        """ICAT's ``isAccessAllowed``: may the current user do ``access``
        (CREATE, READ, UPDATE, DELETE) to ``entity``?  CREATE is tried: the
        object is created, checked and rolled back."""
        if access not in authz.ACCESS:
            raise ParameterError("invalid access type, must be 'READ', 'UPDATE', 'DELETE' "
                                 "or 'CREATE'")
        gate = self._restricted()
        if gate is None:
            return True
        name = entity.type.name
        if access != "CREATE":
            return entity.id is not None and gate.allowed(self.user, access, name, entity.id)

        class _Undo(Exception):
            pass

        allowed = False
        try:
            with self.writer.transaction():
                (new_id,) = self.writer.create_many([entity], self.user)
                allowed = gate.allowed(self.user, "CREATE", name, new_id)
                raise _Undo
        except _Undo:
            pass
        finally:
            for obj in _tree(entity):
                obj.id = None
        return allowed

    def check_access(self, access: str, entity: str, ids) -> None:
        """Raise icat.server's INSUFFICIENT_PRIVILEGES fault unless the
        current user may do ``access`` (READ, UPDATE, DELETE) to every
        one of ``ids`` (existing objects of ``entity``), in one query:
        what a caller asks before a change it cannot undo (the IDS before
        it deletes files)."""
        if access not in authz.ACCESS or access == "CREATE":
            raise ParameterError("invalid access type %r for existing objects" % access)
        gate = self._restricted()
        if gate is not None:
            gate.check_many(self.user, access, entity, ids)

    def _written(self, entities, children: bool) -> None:
        """After a write: rules derived from what changed are read again."""
        if self.gate is None:
            return
        for ent in entities:
            for obj in (_tree(ent) if children else (ent,)):
                if obj.type.name in authz.AUTH_ENTITIES:
                    self.gate.invalidate()
                    return


def _tree(entity: Entity):
    """An entity and the one-to-many children created with it."""
    yield entity
    for name in entity.type.manys:
        for child in entity.values.get(name) or ():
            yield from _tree(child)
