"""The client interface: what dump and ingest need from an ICAT catalogue.

Three implementations share this contract (and one contract test suite): the
embedded SQLite catalogue, the SOAP client for a real ICAT, and the SOAP
client pointed at ``icatdata serve``.  Everything above this layer talks in
:class:`~icatdump.entity.Entity` objects and JPQL strings.
"""

from __future__ import annotations

import abc
import contextlib

from .entity import Entity
from .errors import (ERROR_TYPES, IcatError, InternalError, NoSuchObjectError,
                     NotImplementedError_, ObjectExistsError, ParameterError, PrivilegesError,
                     SearchResultError, SessionError, ValidationError, error_for)
from .keys import KeyError_, is_generic, parse_attr_values, split_key, unquote
from .query import Query, literal
from .schema import ATTRIBUTE, ONE, Schema
from .snapshot import change_watch

# The errors of the client interface live in errors.py and are named here as
# well, where they were first defined.
__all__ = ["Client", "parse_unique_key", "ERROR_TYPES", "error_for", "IcatError",
           "InternalError", "NoSuchObjectError", "NotImplementedError_",
           "ObjectExistsError", "ParameterError", "PrivilegesError", "SearchResultError",
           "SessionError", "ValidationError"]


def parse_unique_key(schema: Schema, key: str):
    """``(entity type, {attr: raw value})`` of a unique key, checked.

    Generic keys (``DataCollection_00000001``) name objects by their place
    in a file, so only a file's own index can resolve them.
    """
    name, rest = split_key(key)
    if name not in schema:
        raise KeyError_("malformed key %r: unknown entity %r" % (key, name))
    if is_generic(key):
        raise KeyError_("key %r is not defined earlier in the file" % key)
    return schema[name], parse_attr_values(rest)


class Client(abc.ABC):
    """A connection to one ICAT catalogue.

    Subclasses set ``url``, ``apiversion`` and ``schema`` and implement the
    abstract methods.  Entities passed to ``create_many`` may embed one-to-many
    children; they are created in cascade and get their ids set.
    """

    url: str = ""
    apiversion: str = ""
    schema: Schema
    #: Whether :meth:`transaction` makes several write calls all-or-nothing.
    transactional: bool = False

    # -- session --------------------------------------------------------------
    def login(self, auth: str, credentials: dict) -> None:
        """Log in; the embedded catalogue needs none and accepts any."""

    def logout(self) -> None:
        """End the session, if there is one."""

    def refresh(self) -> None:
        """Keep a long-running session alive (called once per chunk)."""

    def close(self) -> None:
        self.logout()

    def transaction(self):
        """A context in which several write calls commit or fail together.

        The embedded catalogue runs them in one SQLite transaction.  ICAT
        has no transactions across calls, so for a server this does
        nothing: each createMany stands on its own.
        """
        return contextlib.nullcontext()

    def commit_every(self, objects: int):
        """A context in which :meth:`transaction` blocks are committed in groups.

        Each block stays all or nothing, but commits are deferred until about
        ``objects`` objects were written (and to the end of the context, on
        an error too: what completed stays).  For a server, nothing.
        """
        return contextlib.nullcontext()

    def snapshot(self):
        """A context in which every read sees one state of the catalogue.

        A server keeps no snapshot across calls: the catalogue is
        fingerprinted before and after instead, and
        :class:`~icatdump.snapshot.CatalogueChanged` raised at the end if
        anything changed meanwhile (see :mod:`icatdump.snapshot`).
        """
        return change_watch(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- operations -----------------------------------------------------------
    @abc.abstractmethod
    def search(self, query) -> list:
        """Run a JPQL query; entities come back as :class:`Entity`."""

    @abc.abstractmethod
    def get(self, entity: str, id: int, includes: str = "") -> Entity:
        """Fetch one object by id (``includes``: a get-query INCLUDE clause)."""

    @abc.abstractmethod
    def create_many(self, entities: list[Entity]) -> list[int]:
        """Create objects (with embedded children) in one transaction."""

    def create(self, entity: Entity) -> int:
        return self.create_many([entity])[0]

    @abc.abstractmethod
    def update(self, entity: Entity) -> None:
        """Overwrite an object's attributes and many-to-one relations."""

    @abc.abstractmethod
    def delete_many(self, entities: list[Entity]) -> None:
        """Delete objects by id, cascading to their one-to-many children."""

    def delete(self, entity: Entity) -> None:
        self.delete_many([entity])

    @property
    def max_entities(self) -> int:
        """How many objects one search may return, INCLUDEs counted."""
        return 10000

    # -- helpers shared by every client --------------------------------------
    def new(self, name: str, /, **values) -> Entity:
        """A new, not yet created object of entity type ``name``.

        ``name`` is positional-only, so ``new("Facility", name="ESNF")`` works.
        """
        return Entity(self.schema[name], values)

    def assert_one(self, query) -> Entity:
        result = self.search(query)
        if len(result) != 1:
            if not result:
                raise SearchResultError('Nothing found on query: "%s"' % query)
            raise SearchResultError('Search result is not unique, %d objects found on query: "%s"'
                                    % (len(result), query))
        return result[0]

    def search_unique_key(self, key: str, objindex: dict | None = None) -> Entity:
        """Find the object a unique key names (python-icat's searchUniqueKey).

        ``objindex`` (key → Entity) is consulted first and filled with what is
        found, at every nesting level.
        """
        if objindex is not None and key in objindex:
            return objindex[key]
        etype, values = parse_unique_key(self.schema, key)
        name = etype.name
        conditions = {}
        for attr, raw in values.items():
            f = etype.fields.get(attr)
            if f is None:
                if attr == "id":
                    conditions["id"] = "= %d" % int(raw)
                continue
            if f.kind == ATTRIBUTE:
                conditions[attr] = "= " + literal(unquote(raw))
            elif f.kind == ONE:
                related = self.search_unique_key("%s_%s" % (f.type, raw), objindex)
                conditions[attr + ".id"] = "= %d" % related.id
            else:
                raise KeyError_("malformed key %r: %s is a one-to-many relation" % (key, attr))
        obj = self.assert_one(Query(name, conditions=conditions))
        if objindex is not None:
            objindex[key] = obj
        return obj

    searchUniqueKey = search_unique_key

    def search_matching(self, obj: Entity, includes=None) -> Entity:
        """The existing object with the same uniqueness constraint as ``obj``."""
        etype = obj.type
        if not etype.constraint:
            raise ValueError("%s has no uniqueness constraint" % etype.name)
        conditions = {}
        for c in etype.constraint:
            f = etype.fields[c]
            v = obj.values.get(c)
            if f.kind == ONE:
                if v is None or v.id is None:
                    raise ValueError("%s: relation %s is not set" % (etype.name, c))
                conditions[c + ".id"] = "= %d" % v.id
            elif v is None:
                conditions[c] = "IS NULL"
            else:
                conditions[c] = "= " + literal(v)
        if includes is None:
            includes = list(etype.ones)
        return self.assert_one(Query(etype.name, conditions=conditions, includes=includes))
