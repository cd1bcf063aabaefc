"""The canonical order of entity types in a dump, in one place.

python-icat's icatdump writes its chunks in a fixed sequence of queries
(ICAT-FACTS §3.3, §6.2), and within a chunk the types come in query order.
Everything that must reproduce a dump byte for byte -- the dump plan, and
an offline conversion that regroups a file's objects -- takes the order
from here, so the two can never drift apart.
"""

from __future__ import annotations

#: The chunks of a full dump and the top-level types each holds, in order.
#: "investigation" and "publication" chunks repeat once per owner object.
CHUNK_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("auth", ("User", "Grouping", "Rule", "PublicStep")),
    ("static", ("Technique", "Facility", "Instrument", "ParameterType",
                "DataPublicationType", "InvestigationType", "SampleType",
                "DatasetType", "DatafileFormat", "FacilityCycle", "Application")),
    ("funding", ("FundingReference",)),
    ("investigation", ("Investigation", "Sample", "Dataset", "Datafile")),
    ("data collections", ("DataCollection",)),
    ("publication", ("DataPublication", "DataPublicationUser")),
    ("other", ("Study", "RelatedDatafile", "Job")),
)

#: Every type icatdump writes at top level, in the order it writes them.
DUMP_ORDER: tuple[str, ...] = tuple(t for _, types in CHUNK_GROUPS for t in types)

#: Name of the chunk group that holds each type of :data:`DUMP_ORDER`.
GROUP_OF: dict[str, str] = {t: g for g, types in CHUNK_GROUPS for t in types}


def type_order(schema) -> list[str]:
    """All entity types of ``schema``: dump order first, then the rest.

    Types icatdump never writes at top level (``InvestigationUser``...)
    can still appear so in a hand-written file; they go last, in the
    schema's (alphabetical) order, after everything they may refer to.
    """
    known = [t for t in DUMP_ORDER if t in schema]
    rest = [et.name for et in schema if et.name not in GROUP_OF]
    return known + rest
