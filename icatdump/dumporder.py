"""The order of entity types in a dump and in a restore, in one place.

Two orders are python-icat's and fixed by it, so they are written out here:

* the **dump order** (:data:`CHUNK_GROUPS`): python-icat's icatdump writes
  its chunks in a fixed sequence of queries (ICAT-FACTS §3.3, §6.2), and
  within a chunk the types come in query order.  The dump plan
  (:mod:`icatdump.dump`) builds its chunks from this table, and an offline
  conversion that regroups a file's objects (:mod:`icatdump.offline`,
  ``salvage``) writes them in it, so that both give python-icat's bytes;
* the **restore order** (:data:`PYICAT_RESTORE_ORDER`): python-icat's YAML
  reader yields a chunk's objects type by type in the order of its
  ``entitytypes`` list (``P/dumpfile_yaml.py``), whatever order the file
  has them in (a YAML writer emits a chunk's types sorted by name).

Everything the fixed lists leave open is derived from the schema by
dependency (:func:`dependency_order`): a type they do not name goes right
after the last type it refers to, so that the objects it refers to are
read (and created) before it.  This places the types python-icat 1.7.0
does not know (``Subject``, ``InvestigationFacilityCycle``,
``DataCollectionInvestigation``) and those it never writes at top level
(``InvestigationUser``...), for every schema version.
"""

from __future__ import annotations

#: The chunks of a full dump and the top-level types each holds, in order.
#: "investigation" and "publication" chunks repeat once per object of their
#: first type (the owner).
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

#: python-icat 1.7.0's restore order (``entitytypes`` of its YAML backend,
#: here by entity name).
PYICAT_RESTORE_ORDER: tuple[str, ...] = (
    "User", "Grouping", "UserGroup", "Rule", "PublicStep", "Facility", "Instrument",
    "InstrumentScientist", "ParameterType", "PermissibleStringValue",
    "DataPublicationType", "InvestigationType", "SampleType", "DatasetType",
    "DatafileFormat", "Technique", "FacilityCycle", "Application", "FundingReference",
    "Investigation", "InvestigationParameter", "Keyword", "Publication", "Shift",
    "InvestigationFunding", "InvestigationGroup", "InvestigationInstrument",
    "InvestigationUser", "Sample", "SampleParameter", "Dataset", "DatasetParameter",
    "DatasetInstrument", "DatasetTechnique", "Datafile", "DatafileParameter",
    "DataCollection", "DataCollectionParameter", "DataCollectionDataset",
    "DataCollectionDatafile", "DataPublication", "DataPublicationDate",
    "DataPublicationFunding", "DataPublicationUser", "Affiliation", "RelatedItem",
    "Study", "StudyInvestigation", "RelatedDatafile", "Job",
)


def dependency_order(fixed, schema) -> list[str]:
    """All entity types of ``schema``: those of ``fixed`` in that order, each
    other one right after the last type it refers to (a many-to-one
    relation, its own type left out), several there by name.

    A type referring to nothing goes first; a cycle among unplaced types
    (none in ICAT's schemas) is broken by leaving the back reference out.
    """
    rank: dict[str, tuple] = {t: (i,) for i, t in enumerate(t for t in fixed if t in schema)}

    def place(name, visiting=()):
        key = rank.get(name)
        if key is None:
            deps = [place(f.type, visiting + (name,)) for f in schema[name].ones.values()
                    if f.type != name and f.type in schema and f.type not in visiting]
            key = rank[name] = max(deps, default=(-1,)) + (name,)
        return key

    for et in schema:
        place(et.name)
    return sorted(rank, key=rank.__getitem__)


def type_order(schema) -> list[str]:
    """All entity types of ``schema`` in dump order; types icatdump never
    writes at top level (``InvestigationUser``...), which a hand-written
    file may still have so, placed by dependency."""
    return dependency_order(DUMP_ORDER, schema)


def restore_order(schema) -> list[str]:
    """All entity types of ``schema`` in python-icat's restore order, the
    types it does not know placed by dependency."""
    return dependency_order(PYICAT_RESTORE_ORDER, schema)


def chunk_groups(schema) -> list[tuple[str, tuple[str, ...]]]:
    """:data:`CHUNK_GROUPS` as a catalogue of ``schema`` has them: types it
    lacks left out, and groups left with none."""
    groups = []
    for name, types in CHUNK_GROUPS:
        present = tuple(t for t in types if t in schema)
        if present:
            groups.append((name, present))
    return groups
