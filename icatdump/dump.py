"""The dump plan: which queries make up which chunk of a dump file.

The partition is python-icat's (ICAT-FACTS §6.2): authorization, static
data, funding, one chunk per investigation, data collections, one chunk per
data publication, then studies, related datafiles and jobs; the chunks and
the order of types in them are :mod:`icatdump.dumporder`'s.  The queries are
written for the ICAT 6.2 schema and adapted to the schema of the catalogue
being dumped: a query on an entity the catalogue lacks is dropped, and so is
an INCLUDE path through a field it lacks.  So a 4.4 catalogue dumps in the
shape python-icat gives for a 4.4 server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

from .client import Client
from .dumpfile import DumpFileWriter
from .dumporder import CHUNK_GROUPS, DUMP_ORDER, chunk_groups
from .entity import Entity
from .paging import Limited, Pager, batched, ids_of
from .query import Query, literal, natural_order
from .schema import Schema


@dataclass
class QuerySpec:
    """One query of the plan, before it is adapted to a schema."""
    entity: str
    includes: tuple = ()
    where: dict = field(default_factory=dict)
    join_specs: dict = field(default_factory=dict)
    order: tuple | None = None      # None: the entity's natural order

    def render(self, schema: Schema, **params) -> Query | None:
        if self.entity not in schema:
            return None
        includes, order = _adapted(schema, self.entity, self.includes, self.order)
        where = {k: v.format(**params) for k, v in self.where.items()}
        return Query(self.entity, conditions=where, order=order, includes=includes,
                     join_specs=self.join_specs)


@lru_cache(maxsize=256)
def _adapted(schema: Schema, entity: str, includes: tuple, order: tuple | None):
    """A spec's includes and order for a schema; the same for every
    investigation and dataset, so worked out once."""
    etype = schema[entity]
    existing = [p for p in (_existing_prefix(schema, etype, p) for p in includes) if p]
    return existing, list(order) if order is not None else natural_order(schema, etype)


def _existing_prefix(schema: Schema, etype, path: str) -> str:
    """The longest leading part of an INCLUDE path that the schema has.

    ``shifts.instrument.facility`` becomes ``shifts`` on 4.4, where a Shift
    has no instrument yet."""
    parts = []
    for part in path.split("."):
        f = etype.fields.get(part)
        if f is None or f.type not in schema:
            break
        parts.append(part)
        etype = schema[f.type]
    return ".".join(parts)


FAC = ("facility",)

#: The plan's query for each type it dumps (includes as they are written);
#: which chunk each goes to, and in what order, is :mod:`icatdump.dumporder`'s.
SPECS = (
    QuerySpec("User"),
    QuerySpec("Grouping", includes=("userGroups.user",)),
    QuerySpec("Rule", includes=("grouping",), join_specs={"grouping": "LEFT JOIN"},
              order=("grouping.name", "what", "id")),
    QuerySpec("PublicStep"),
    QuerySpec("Technique"),
    QuerySpec("Facility"),
    QuerySpec("Instrument", includes=("facility", "instrumentScientists.user")),
    QuerySpec("ParameterType", includes=("facility", "permissibleStringValues")),
    QuerySpec("DataPublicationType", includes=FAC),
    QuerySpec("InvestigationType", includes=FAC),
    QuerySpec("SampleType", includes=FAC),
    QuerySpec("DatasetType", includes=FAC),
    QuerySpec("DatafileFormat", includes=FAC),
    QuerySpec("FacilityCycle", includes=FAC),
    QuerySpec("Application", includes=FAC),
    QuerySpec("FundingReference"),
    QuerySpec("Investigation", where={"id": "= {id}"}, order=(), includes=(
        "facility", "fundingReferences.funding",
        "investigationFacilityCycles.facilityCycle.facility",
        "investigationGroups.grouping", "investigationInstruments.instrument.facility",
        "investigationUsers.user", "keywords", "parameters.type.facility",
        "publications", "shifts.instrument.facility", "type.facility")),
    QuerySpec("Sample", where={"investigation.id": "= {id}"}, order=("name",), includes=(
        "investigation", "parameters.type.facility", "type.facility")),
    QuerySpec("Dataset", where={"investigation.id": "= {id}"}, order=("name",), includes=(
        "datasetInstruments.instrument.facility", "datasetTechniques.technique",
        "investigation", "parameters.type.facility", "sample", "type.facility")),
    QuerySpec("Datafile", where={"dataset.investigation.id": "= {id}"},
              order=("dataset.name", "name"), includes=(
                  "datafileFormat.facility", "dataset", "parameters.type.facility")),
    QuerySpec("DataCollection", order=("id",), includes=(
        "dataCollectionDatafiles.datafile.dataset.investigation.facility",
        "dataCollectionDatasets.dataset.investigation.facility",
        "dataCollectionInvestigations.investigation.facility",
        "parameters.type.facility")),
    QuerySpec("DataPublication", where={"id": "= {id}"}, includes=(
        "content", "dates", "facility", "fundingReferences.funding",
        "relatedItems", "subjects", "type.facility")),
    QuerySpec("DataPublicationUser", where={"publication.id": "= {id}"},
              includes=("affiliations", "publication", "user")),
    QuerySpec("Study", includes=("studyInvestigations.investigation.facility", "user")),
    QuerySpec("RelatedDatafile", includes=(
        "destDatafile.dataset.investigation.facility",
        "sourceDatafile.dataset.investigation.facility")),
    QuerySpec("Job", includes=("application.facility", "inputDataCollection",
                               "outputDataCollection")),
)

SPEC_OF = {s.entity: s for s in SPECS}
if set(SPEC_OF) != set(DUMP_ORDER):
    raise ImportError("dump plan and dump order name different types: %s"
                      % sorted(set(SPEC_OF) ^ set(DUMP_ORDER)))

#: Each chunk group's queries, in the dump order.
CHUNKS = {group: tuple(SPEC_OF[t] for t in types) for group, types in CHUNK_GROUPS}
AUTH, STATIC, FUNDING = CHUNKS["auth"], CHUNKS["static"], CHUNKS["funding"]
INVESTIGATION, PUBLICATION = CHUNKS["investigation"], CHUNKS["publication"]
DATA_COLLECTION, OTHER = CHUNKS["data collections"], CHUNKS["other"]


#: The datafiles of one dataset: the group the writer sorts at a time.
DATAFILES_OF_DATASET = QuerySpec("Datafile", where={"dataset.id": "= {id}"},
                                 includes=INVESTIGATION[3].includes)

#: Top-level objects per chunk before it is split.  python-icat's example
#: chunks hold at most a few hundred, so they never split.
DEFAULT_CHUNK_SIZE = 10000


def _render_all(schema, specs, **params):
    return [q for q in (s.render(schema, **params) for s in specs) if q is not None]


def _datafile_groups(client: Client, inv_id: int, restrict=None) -> Iterator[Query]:
    """One Datafile query per dataset of an investigation, datasets in dump order.

    Datafiles sort by dataset, then name; within one investigation datasets
    are unique by name, so sorting each dataset's datafiles on its own and
    taking the datasets by name gives python-icat's order, while only one
    dataset's datafiles are held at a time.
    """
    query = Query("Dataset", conditions={"investigation.id": "= %d" % inv_id})
    datasets = sorted((str(ds.values.get("name")), ds.id)
                      for ds in Pager(client).results(query))
    for _, ds_id in datasets:
        q = DATAFILES_OF_DATASET.render(client.schema, id=ds_id)
        if restrict is not None:
            q.conditions["id"] = "IN (%s)" % ", ".join(map(str, sorted(restrict)))
        yield q


class Selection:
    """A part of a catalogue: some objects and everything they refer to.

    ``investigations``: ``(facility or None, name, visitId or None)``;
    ``queries``: JPQL searches whose results (entities) are selected.  A
    selected investigation comes with its whole chunk (samples, datasets,
    datafiles).  :meth:`resolve` then follows every many-to-one reference
    of what will be written -- embedded children included, as the plan's
    queries load them -- until nothing new turns up, so the file can be
    ingested into an empty catalogue.  Objects that only refer *to* the
    selection (rules, data collections, studies) are not included.
    """

    def __init__(self, investigations=(), queries=()):
        self.investigations = list(investigations)
        self.queries = list(queries)
        self.whole: set[int] = set()            # investigations with their whole chunk
        self.needed: dict[str, set[int]] = {}   # type -> ids of other objects to write

    def resolve(self, client: Client) -> "Selection":
        schema = client.schema
        for facility, name, visit in self.investigations:
            conds = {"name": "= " + literal(name)}
            if visit is not None:
                conds["visitId"] = "= " + literal(visit)
            if facility is not None:
                conds["facility.name"] = "= " + literal(facility)
            found = client.search(Query("Investigation", conditions=conds))
            if not found:
                raise ValueError("no investigation %s%s%s in the catalogue"
                                 % (facility + "/" if facility else "", name,
                                    ":" + visit if visit is not None else ""))
            self.whole.update(o.id for o in found)
        pending: dict[str, set[int]] = {}
        for text in self.queries:
            for obj in client.search(text):
                if not hasattr(obj, "type"):
                    raise ValueError("--query must select entities: %s" % text)
                if obj.type.name == "Investigation":
                    self.whole.add(obj.id)
                else:
                    pending.setdefault(obj.type.name, set()).add(obj.id)
        pager = Pager(client)
        for inv_id in self.whole:
            for q in _render_all(schema, INVESTIGATION[:3], id=inv_id) + \
                    list(_datafile_groups(client, inv_id)):
                for obj in pager.results(q):
                    _collect(obj, pending)
        self.needed = {"Investigation": set(self.whole)}
        while pending:
            name, ids = pending.popitem()
            ids = ids - self.needed.setdefault(name, set())
            if not ids or name not in SPEC_OF:
                continue
            self.needed[name] |= ids
            for obj in self.fetch(client, name, ids):
                _collect(obj, pending)
        return self

    def fetch(self, client: Client, name: str, ids) -> list:
        """The objects ``ids`` of type ``name`` as the plan's query loads them."""
        spec = SPEC_OF[name]
        spec = QuerySpec(name, includes=spec.includes, order=())
        query = spec.render(client.schema)
        objs: list[Entity] = []
        ids = sorted(ids)
        pager = Pager(client)
        for i in range(0, len(ids), 500):
            query.conditions["id"] = "IN (%s)" % ", ".join(map(str, ids[i:i + 500]))
            objs.extend(pager.results(query))
        return objs


def _collect(obj, pending):
    """Add every object ``obj`` refers to (at any depth) to ``pending``."""
    for v in obj.values.values():
        if v.__class__ is Entity:
            if v.id is not None:
                pending.setdefault(v.type.name, set()).add(v.id)
            _collect(v, pending)
        elif v.__class__ is list:
            for child in v:
                _collect(child, pending)


def _chunk(client, specs, selection, **params) -> list:
    """A chunk's queries; with a selection, only its objects (as lists)."""
    if selection is None:
        return _render_all(client.schema, specs, **params)
    items = []
    for spec in specs:
        ids = selection.needed.get(spec.entity)
        if ids and spec.render(client.schema) is not None:
            items.append(selection.fetch(client, spec.entity, ids))
    return items


def plan(client: Client, selection: Selection | None = None
         ) -> Iterator[tuple[str, Iterable, int]]:
    """Yield ``(chunk name, queries, page size)`` for each chunk of a dump.

    The queries of a chunk may be a generator (an investigation's datafiles
    come as one query per dataset), and an item may be a list of objects
    instead of a query: an investigation chunk starts with its
    investigation, fetched along with others (see INVESTIGATION_BATCH);
    with a ``selection`` (resolved), the items of the chunks outside the
    selected investigations are lists of the selected objects.
    The chunks and their queries come in the dump order
    (:func:`icatdump.dumporder.chunk_groups`, the groups the catalogue's
    schema has).
    """
    schema = client.schema
    for group, _ in chunk_groups(schema):
        if group == "investigation":
            invs = None if selection is None else selection.needed.get("Investigation", set())
            inv_ids = (i for i in ids_of(client, "Investigation",
                                         ["facility.name", "name", "visitId"])
                       if invs is None or i in invs)
            for batch in batched(inv_ids, INVESTIGATION_BATCH):
                found = _investigations(client, batch)
                for inv_id in batch:
                    yield "investigation %d" % inv_id, \
                        _investigation(client, inv_id, selection, found.get(inv_id)), 100
        elif group == "publication":
            pubs = None if selection is None else selection.needed.get("DataPublication", set())
            for pub_id in ids_of(client, "DataPublication", ["facility.name", "pid"]):
                if pubs is None or pub_id in pubs:
                    yield "publication %d" % pub_id, \
                        _render_all(schema, PUBLICATION, id=pub_id), 100
        else:
            yield group, _chunk(client, CHUNKS[group], selection), 100


#: Investigations fetched (with their INCLUDEs) by one search.  One search
#: per investigation sent some twenty SQL statements or SOAP calls for an
#: object and its few keywords, users and parameters; a hundred of those
#: at a time are still small.
INVESTIGATION_BATCH = 100


def _investigations(client, ids) -> dict:
    """The investigations ``ids`` by id, loaded as the plan's query loads one."""
    query = INVESTIGATION[0].render(client.schema, id=0)
    query.conditions["id"] = "IN (%s)" % ", ".join(map(str, ids))
    return {o.id: o for o in Pager(client).results(query)}


def _investigation(client, inv_id, selection, inv) -> Iterator:
    """The items of one investigation's chunk (whole, or what a selection
    needs); ``inv`` is the investigation itself, already fetched."""
    schema = client.schema
    queries = _render_all(schema, INVESTIGATION[1:3], id=inv_id)
    yield [inv] if inv is not None else []
    if selection is None or inv_id in selection.whole:
        yield from queries
        yield from _datafile_groups(client, inv_id)
        return
    for q in queries:
        ids = selection.needed.get(q.entity)
        if ids:
            q.conditions["id"] = "IN (%s)" % ", ".join(map(str, sorted(ids)))
            yield q
    files = selection.needed.get("Datafile")
    if files:
        yield from _datafile_groups(client, inv_id, restrict=files)


def dump(client: Client, writer: DumpFileWriter, progress=None, chunk_size: int | None = DEFAULT_CHUNK_SIZE,
         max_entities: int | None = None, selection: Selection | None = None,
         prefetch: bool | None = None) -> int:
    """Write every chunk of the plan; returns the number of objects written.

    ``chunk_size``: split chunks with more top-level objects (None: never).
    ``max_entities``: the server's limit on objects per search, if the
    client's value (``getProperties`` or 10000) is not right.
    The whole dump reads one state of the catalogue, or fails with
    :class:`~icatdump.snapshot.CatalogueChanged` (:meth:`Client.snapshot`).
    ``prefetch``: search for a chunk's next group of objects in a thread
    while this one is written, so that the server's time overlaps the
    writing.  None chooses by client: on over the network, off for the
    embedded catalogue (in process: nothing to wait for, and its
    connection belongs to one thread).  The output is the same either
    way; bench/run.py --big measures both.
    """
    if prefetch is None:
        prefetch = not client.transactional
    writer.chunk_size = chunk_size
    writer.prefetch = prefetch
    if max_entities:
        # The plan and the writer page their searches with this limit.
        client = writer.client = Limited(client, max_entities)
    with client.snapshot():
        if selection is not None:
            selection.resolve(client)
        for name, queries, page in plan(client, selection):
            writer.writedata(queries, chunksize=page, forget=("Datafile",))
            if progress:
                progress(name, writer.objects_written)
    return writer.objects_written

