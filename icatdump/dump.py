"""The dump plan: which queries make up which chunk of a dump file.

The partition is python-icat's (ICAT-FACTS §6.2): authorization, static
data, funding, one chunk per investigation, data collections, one chunk per
data publication, then studies, related datafiles and jobs.  The queries are
written for the ICAT 6.2 schema and adapted to the schema of the catalogue
being dumped: a query on an entity the catalogue lacks is dropped, and so is
an INCLUDE path through a field it lacks.  So a 4.4 catalogue dumps in the
shape python-icat gives for a 4.4 server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .client import Client
from .query import Query, natural_order
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
        etype = schema[self.entity]
        includes = [p for p in (_existing_prefix(schema, etype, p) for p in self.includes) if p]
        order = list(self.order) if self.order is not None else natural_order(schema, etype)
        where = {k: v.format(**params) for k, v in self.where.items()}
        return Query(self.entity, conditions=where, order=order, includes=includes,
                     join_specs=self.join_specs)


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

AUTH = (
    QuerySpec("User"),
    QuerySpec("Grouping", includes=("userGroups.user",)),
    QuerySpec("Rule", includes=("grouping",), join_specs={"grouping": "LEFT JOIN"},
              order=("grouping.name", "what", "id")),
    QuerySpec("PublicStep"),
)

STATIC = (
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
)

FUNDING = (QuerySpec("FundingReference"),)

INVESTIGATION = (
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
)

DATA_COLLECTION = (
    QuerySpec("DataCollection", order=("id",), includes=(
        "dataCollectionDatafiles.datafile.dataset.investigation.facility",
        "dataCollectionDatasets.dataset.investigation.facility",
        "dataCollectionInvestigations.investigation.facility",
        "parameters.type.facility")),
)

PUBLICATION = (
    QuerySpec("DataPublication", where={"id": "= {id}"}, includes=(
        "content", "dates", "facility", "fundingReferences.funding",
        "relatedItems", "subjects", "type.facility")),
    QuerySpec("DataPublicationUser", where={"publication.id": "= {id}"},
              includes=("affiliations", "publication", "user")),
)

OTHER = (
    QuerySpec("Study", includes=("studyInvestigations.investigation.facility", "user")),
    QuerySpec("RelatedDatafile", includes=(
        "destDatafile.dataset.investigation.facility",
        "sourceDatafile.dataset.investigation.facility")),
    QuerySpec("Job", includes=("application.facility", "inputDataCollection",
                               "outputDataCollection")),
)


def _render_all(schema, specs, **params):
    return [q for q in (s.render(schema, **params) for s in specs) if q is not None]


def ids_of(client: Client, entity: str, order, page: int = 1000) -> Iterator[int]:
    """Ids of all objects of ``entity`` in ``order``, fetched page by page."""
    query = str(Query(entity, attribute="id", order=order))
    skip = 0
    while True:
        batch = client.search("%s LIMIT %d, %d" % (query, skip, page))
        yield from batch
        if len(batch) < page:
            return
        skip += page


def plan(client: Client) -> Iterator[tuple[str, list[Query], int]]:
    """Yield ``(chunk name, queries, page size)`` for each chunk of a full dump."""
    schema = client.schema
    yield "auth", _render_all(schema, AUTH), 100
    yield "static", _render_all(schema, STATIC), 100
    if "FundingReference" in schema:
        yield "funding", _render_all(schema, FUNDING), 100
    for inv_id in ids_of(client, "Investigation", ["facility.name", "name", "visitId"]):
        yield "investigation %d" % inv_id, _render_all(schema, INVESTIGATION, id=inv_id), 100
    yield "data collections", _render_all(schema, DATA_COLLECTION), 100
    if "DataPublication" in schema:
        for pub_id in ids_of(client, "DataPublication", ["facility.name", "pid"]):
            yield "publication %d" % pub_id, _render_all(schema, PUBLICATION, id=pub_id), 100
    yield "other", _render_all(schema, OTHER), 100


def dump(client: Client, writer, progress=None) -> int:
    """Write every chunk of the plan; returns the number of objects written."""
    for name, queries, page in plan(client):
        writer.writedata(queries, chunksize=page)
        if progress:
            progress(name, writer.objects_written)
    return writer.objects_written
