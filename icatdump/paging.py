"""Client-side search paging, as python-icat's ``searchChunked``: the one
home of it.

ICAT refuses a search that returns more than ``maxEntities`` objects
(INCLUDEs counted), so every search that may find many objects is made in
pages: the dump plan's (:func:`ids_of`, :class:`Pager`), the writer's
(:func:`pages`) and ingest's lookups (:func:`batched`,
:func:`too_many_results`).  The limit is always the client's
``max_entities``; a run with another limit sees the client through
:class:`Limited`.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator

from .client import Client, IcatError
from .entity import Entity
from .query import Query, _assign_aliases, _prefixes, literal
from .schema import ONE


def pages(client: Client, query, chunksize=100) -> Iterator[list]:
    """The results of a query, a page (one search) at a time.

    A :class:`Query` is paged by keyset (``o.id > last ORDER BY o.id``),
    so each page costs the same however deep into the results it is;
    its size keeps it under the server's ``maxEntities``, INCLUDEs
    counted (see :class:`Pager`).  A query string is opaque and is paged
    by ``LIMIT offset, chunksize`` as python-icat does.
    """
    if isinstance(query, Query):
        yield from Pager(client).pages(query)
        return
    skip = 0
    while True:
        page = client.search("%s LIMIT %d, %d" % (query, skip, chunksize))
        if page:
            yield page
        if len(page) < chunksize:
            return
        skip += chunksize


class Pager:
    """Keyset paging of a :class:`Query`, each search sized under ``maxEntities``.

    Pages are ``o.id > last ORDER BY o.id LIMIT 0, n``: the server finds the
    next page through its primary key, so the cost of a page does not grow
    with its position (``LIMIT offset`` made python-icat quadratic).  The
    query's own ORDER BY is dropped; the writer orders objects itself.

    ICAT counts every object a search returns, INCLUDEs too, against
    ``maxEntities``.  The page size follows the objects per result seen on
    the previous page (counted as a tree, so shared objects are counted more
    than once: an overestimate, which is the safe side), aiming at
    :attr:`budget` of the limit.  A page refused anyway is tried again with a
    quarter of the size; a single object that is too big with its one-to-many
    INCLUDEs (a grouping with 20000 members) is fetched without them, and
    each such relation is paged separately from the child's side.
    """

    cap = 1000          # objects per page at most, whatever the fan-out
    budget = 0.5        # share of maxEntities a page aims at

    def __init__(self, client: Client):
        self.client = client
        self.schema = client.schema
        self.limit = max(1, int(client.max_entities))
        self.size = max(1, min(self.cap, self.limit // 10))

    def results(self, query: Query) -> Iterator[Entity]:
        for page in self.pages(query):
            yield from page

    def pages(self, query: Query) -> Iterator[list]:
        """The results, one search at a time (empty pages left out)."""
        last = None
        while True:
            page, complete = self._page(query, last)
            if page:
                yield page
            if not complete:
                return
            last = page[-1].id

    def _page(self, query: Query, last) -> tuple[list, bool]:
        """The page after id ``last``, and whether it is full (more may follow).

        Adapts :attr:`size` to what it finds."""
        while True:
            size = self.size
            try:
                page = self.client.search(self._paged(query, last, size))
            except IcatError as exc:
                if not too_many_results(exc):
                    raise
                if size > 1:
                    self.size = max(1, size // 4)
                    continue
                page = self._split_includes(query, last)
            full = len(page) >= size
            if full:
                # Only a full page has a next one to size; weighing is not free.
                memo: dict = {}
                per_object = max(_weight(o, memo) for o in page)
                self.size = max(1, min(self.cap, int(self.limit * self.budget) // per_object))
            return page, full

    def _paged(self, query: Query, last, size: int) -> Query:
        conditions = dict(query.conditions)
        if last is not None:
            rhs = conditions.get("id")
            rhs = [] if rhs is None else list(rhs) if isinstance(rhs, (list, tuple)) else [rhs]
            conditions["id"] = rhs + ["> %d" % last]
        return Query(query.entity, conditions=conditions, order=["id"],
                     includes=query.includes, join_specs=query.join_specs, limit=(0, size))

    def _split_includes(self, query: Query, last) -> list:
        """One object, its one-to-many INCLUDEs fetched relation by relation."""
        etype = self.schema[query.entity]
        ones: list[str] = []
        manys: dict[str, list[str]] = {}
        for path in query.includes:
            head, _, rest = path.partition(".")
            if etype.fields[head].kind == ONE:
                ones.append(path)
            else:
                manys.setdefault(head, []).extend([rest] if rest else [])
        if not manys:
            raise IcatError("one %s with its INCLUDEs is more than maxEntities (%d)"
                            % (query.entity, self.limit), type="VALIDATION")
        parent_query = Query(query.entity, conditions=query.conditions, includes=ones,
                             join_specs=query.join_specs)
        page = self.client.search(self._paged(parent_query, last, 1))
        for obj in page:
            for rel, sub in manys.items():
                f = etype.fields[rel]
                child_query = Query(f.type, conditions={f.mapped_by + ".id": "= %d" % obj.id},
                                    includes=sub)
                obj.values[rel] = list(Pager(self.client).results(child_query))
        return page


def too_many_results(exc: IcatError) -> bool:
    """Whether the server refused a search for returning too many objects."""
    return exc.type == "VALIDATION" and "more than" in exc.message


def _weight(obj: Entity, memo: dict) -> int:
    """Objects in ``obj``'s tree of loaded relations, shared ones repeated.

    ``memo`` (by ``id()``, for one page whose objects are held) weighs a
    shared related object -- the dataset of a thousand datafiles -- once.
    """
    n = memo.get(id(obj))
    if n is not None:
        return n
    n = 1
    for v in obj.values.values():
        if v.__class__ is Entity:
            n += _weight(v, memo)
        elif v.__class__ is list:
            for c in v:
                n += _weight(c, memo)
    memo[id(obj)] = n
    return n


def batched(items, n) -> Iterator[list]:
    """Lists of ``n`` items (the last may be shorter), taken as they come."""
    items = iter(items)
    while True:
        batch = list(islice(items, n))
        if not batch:
            return
        yield batch


def ids_of(client: Client, entity: str, order, page: int = 1000) -> Iterator[int]:
    """Ids of all objects of ``entity`` in the server's ``order``.

    python-icat orders chunks as the server's ORDER BY does, so the order is
    taken from the server, and pages follow it by keyset: each page starts
    after the last row's values, ``(a, b) > (x, y)`` written as
    ``a >= x AND (a > x OR b > y)``.  The server compares with the collation
    it sorts with, so this is right whatever that is.  ``order`` must be
    unique and not null (it is a uniqueness constraint).
    """
    includes = sorted({p.rpartition(".")[0] for p in order if "." in p})
    aliases = _assign_aliases({q for p in order for q in _prefixes(p)})
    page = max(1, min(page, client.max_entities // (2 + len(includes))))
    after: dict[str, str] = {}
    while True:
        query = Query(entity, conditions=after, order=order, includes=includes,
                      limit=(0, page))
        batch = client.search(query)
        yield from (o.id for o in batch)
        if len(batch) < page:
            return
        values = [_value_at(batch[-1], p) for p in order]
        after = {order[0]: _keyset_rhs(order, values, aliases)}


def _value_at(obj, path):
    for part in path.split("."):
        obj = obj.values.get(part) if obj is not None else None
    return obj


def _keyset_rhs(order, values, aliases) -> str:
    """The right-hand side, after ``order[0]``, of "row after ``values``"."""
    def ref(path):
        head, _, attr = path.rpartition(".")
        return "%s.%s" % (aliases[head] if head else "o", attr)
    expr = "%s > %s" % (ref(order[-1]), literal(values[-1]))
    for path, value in zip(order[-2::-1], values[-2::-1]):
        expr = "%s >= %s AND (%s > %s OR %s)" % (ref(path), literal(value), ref(path),
                                                  literal(value), expr)
    # The first "path >=" is the condition's own path, written by Query.
    return expr[len(ref(order[0])) + 1:]


class Limited:
    """A client seen with another ``max_entities``; everything else passed on."""

    def __init__(self, client, max_entities):
        self._client, self.max_entities = client, max_entities

    def __getattr__(self, name):
        return getattr(self._client, name)
