"""The ICAT entity model as data.

One table (``schema_data.ENTITIES``, the ICAT 6.2 schema) plus a short list of
what changed between versions gives the schemas of ICAT 4.4, 4.7, 4.10, 5.0
and 6.2.  The same :class:`Schema` object can also be built from a live
server's ``getEntityNames``/``getEntityInfo`` answers, so that a dump from an
old server comes out in that server's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from .schema_data import ENTITIES

ATTRIBUTE, ONE, MANY = "ATTRIBUTE", "ONE", "MANY"

#: Schema versions the embedded catalogue can be created with.
VERSIONS = ("4.4", "4.7", "4.10", "5.0", "6.2")
DEFAULT_VERSION = "6.2"

#: Meta attributes every entity has; set by the server, never dumped.
META_ATTRS = ("createId", "createTime", "modId", "modTime")

ENUMS = {
    "ParameterValueType": ("DATE_AND_TIME", "NUMERIC", "STRING"),
    "StudyStatus": ("NEW", "IN_PROGRESS", "COMPLETE", "CANCELLED"),
}

# Entities added after 4.4 (ICAT-FACTS §1.5).
ENTITY_SINCE = {
    **{name: "5.0" for name in (
        "Technique", "DatasetTechnique", "DatasetInstrument", "FundingReference",
        "InvestigationFunding", "DataPublicationFunding", "DataPublicationType",
        "DataPublication", "DataPublicationDate", "DataPublicationUser",
        "Affiliation", "RelatedItem", "DataCollectionInvestigation",
        "InvestigationFacilityCycle")},
    "Subject": "6.2",
}

# Fields added to entities that already existed (ICAT-FACTS §1.5).  A
# relation to an entity that does not exist yet disappears on its own.
FIELD_SINCE = {
    ("DataCollection", "doi"): "4.7",
    ("User", "email"): "4.7",
    ("User", "orcidId"): "4.7",
    ("Instrument", "pid"): "4.10",
    ("ParameterType", "pid"): "4.10",
    ("Sample", "pid"): "4.10",
    ("Study", "pid"): "4.10",
    ("Instrument", "shifts"): "4.10",
    ("Shift", "instrument"): "4.10",
    ("Study", "endDate"): "4.10",
    ("User", "affiliation"): "4.10",
    ("User", "familyName"): "4.10",
    ("User", "givenName"): "4.10",
    ("Investigation", "fileSize"): "5.0",
    ("Investigation", "fileCount"): "5.0",
    ("Dataset", "fileSize"): "5.0",
    ("Dataset", "fileCount"): "5.0",
    ("DataPublication", "internalId"): "6.2",
    ("FundingReference", "acknowledgement"): "6.2",
    ("Instrument", "startDate"): "6.2",
    ("Instrument", "endDate"): "6.2",
}

# String lengths that grew (field → (version it grew in, old length)).
LENGTH_BEFORE = {
    ("Datafile", "location"): ("6.2", 255),
    ("Dataset", "location"): ("6.2", 255),
}

# Attributes a server defaults when a bean omits them (Java field defaults).
DEFAULTS = {
    ("Datafile", "fileSize"): 0,
    ("Dataset", "fileSize"): 0,
    ("Dataset", "fileCount"): 0,
    ("Investigation", "fileSize"): 0,
    ("Investigation", "fileCount"): 0,
}

# python-icat's SortAttrs overrides: the sort order of dumped objects uses
# these instead of the uniqueness constraint (ICAT-FACTS §5.6).
SORT_ATTRS = {
    "DataCollection": ("dataCollectionDatasets", "dataCollectionDatafiles"),
    "DataCollectionDatafile": ("datafile",),
    "DataCollectionDataset": ("dataset",),
    "DataPublicationDate": ("publication", "date", "dateType"),
    "DataPublicationUser": ("publication", "contributorType", "orderKey", "user"),
    "InvestigationType": ("facility", "name"),
    "Job": ("application", "arguments", "inputDataCollection", "outputDataCollection"),
    "Publication": ("investigation", "fullReference"),
    "Rule": ("grouping", "what"),
    "Study": ("name",),
}

# Old names accepted on read (python-icat's AttrAlias).
ALIASES = {
    "Rule": {"group": "grouping"},
    "UserGroup": {"group": "grouping"},
    "DataCollection": {"dataCollectionParameters": "parameters"},
}


def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.10.0"`` → ``(4, 10, 0)``; suffixes like ``-SNAPSHOT`` are ignored."""
    parts = []
    for piece in str(version).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def schema_version_for(apiversion: str) -> str:
    """The newest of :data:`VERSIONS` not newer than a server's apiversion."""
    v = version_tuple(apiversion)
    best = VERSIONS[0]
    for cand in VERSIONS:
        if version_tuple(cand) <= v:
            best = cand
    return best


@dataclass(frozen=True)
class Field:
    """One field of an entity: an attribute or a relation."""
    name: str
    kind: str                    # ATTRIBUTE, ONE or MANY
    type: str                    # Java type name or the related entity
    not_null: bool = False
    length: int | None = None    # for String attributes
    mapped_by: str | None = None  # for MANY: the inverse ONE field


@dataclass
class EntityType:
    """An ICAT entity type: its fields and uniqueness constraint."""
    name: str
    constraint: tuple[str, ...]
    fields: dict[str, Field]
    comment: str | None = None
    attrs: dict[str, Field] = field(init=False)
    ones: dict[str, Field] = field(init=False)
    manys: dict[str, Field] = field(init=False)

    def __post_init__(self):
        self.attrs = {n: f for n, f in sorted(self.fields.items()) if f.kind == ATTRIBUTE}
        self.ones = {n: f for n, f in sorted(self.fields.items()) if f.kind == ONE}
        self.manys = {n: f for n, f in sorted(self.fields.items()) if f.kind == MANY}
        self.aliases = ALIASES.get(self.name, {})

    @cached_property
    def instance_name(self) -> str:
        """The XML tag / YAML type name: ``investigationUser`` (asked per object read)."""
        return self.name[0].lower() + self.name[1:]

    @property
    def key_fields(self) -> tuple[str, ...]:
        """python-icat's Constraint: the uniqueness constraint, or ``('id',)``."""
        return self.constraint or ("id",)

    @property
    def sort_fields(self) -> tuple[str, ...]:
        return SORT_ATTRS.get(self.name, self.key_fields)

    def field(self, name: str) -> Field:
        """Look a field up, accepting python-icat's old alias names."""
        name = self.aliases.get(name, name)
        return self.fields[name]

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.fields


class Schema:
    """A set of entity types, as one ICAT version has them."""

    def __init__(self, entities: dict[str, EntityType], version: str):
        self.version = version
        self.entities = dict(sorted(entities.items()))
        self.by_instance = {}
        for et in self.entities.values():
            self.by_instance[et.instance_name] = et
            self.by_instance[et.instance_name.lower()] = et

    def __getitem__(self, name: str) -> EntityType:
        return self.entities[name]

    def __contains__(self, name: str) -> bool:
        return name in self.entities

    def __iter__(self):
        return iter(self.entities.values())

    def by_instance_name(self, name: str) -> EntityType:
        """Entity type from a file's tag name (``dataset``, ``investigationuser``)."""
        return self.by_instance[name]

    @classmethod
    def for_version(cls, version: str = DEFAULT_VERSION) -> "Schema":
        return _builtin_schema(schema_version_for(version))

    @classmethod
    def from_entity_info(cls, infos: dict, version: str) -> "Schema":
        """Build a schema from a server's entity information.

        ``infos`` maps each entity name to a dict with ``constraint`` (a list
        of field names, possibly empty), ``comment`` and ``fields`` (a list of
        dicts with name, relType, type, notNullable, stringLength).  Meta fields
        and ``id`` are left out, as in the built-in schema.
        """
        entities = {}
        for name, info in infos.items():
            fields = {}
            for f in info["fields"]:
                fname = f["name"]
                if fname in META_ATTRS or fname == "id":
                    continue
                fields[fname] = Field(
                    name=fname, kind=f["relType"], type=f["type"],
                    not_null=bool(f.get("notNullable")),
                    length=f.get("stringLength"))
            entities[name] = EntityType(name, tuple(info.get("constraint") or ()),
                                        fields, info.get("comment"))
        # The server does not tell mappedBy; derive it from the inverse relation.
        for et in entities.values():
            for fname, f in list(et.fields.items()):
                if f.kind == MANY and f.type in entities:
                    inverse = [o.name for o in entities[f.type].ones.values()
                               if o.type == et.name]
                    if len(inverse) == 1:
                        et.fields[fname] = Field(fname, MANY, f.type, mapped_by=inverse[0])
            et.__post_init__()
        _resolve_ambiguous_mapped_by(entities)
        return cls(entities, version)


def _resolve_ambiguous_mapped_by(entities):
    """Fill mappedBy where two relations point the same way, by the 6.2 table."""
    for et in entities.values():
        for fname, f in list(et.fields.items()):
            if f.kind == MANY and f.mapped_by is None:
                known = {m[0]: m[2] for m in ENTITIES.get(et.name, {}).get("many", ())}
                if fname in known:
                    et.fields[fname] = Field(fname, MANY, f.type, mapped_by=known[fname])
        et.__post_init__()


@lru_cache(maxsize=None)
def _builtin_schema(version: str) -> Schema:
    v = version_tuple(version)

    def present(since):
        return since is None or version_tuple(since) <= v

    names = {n for n in ENTITIES if present(ENTITY_SINCE.get(n))}
    entities = {}
    for name in names:
        data = ENTITIES[name]
        fields = {}
        for fname, ftype, length, not_null in data["attrs"]:
            if not present(FIELD_SINCE.get((name, fname))):
                continue
            grew = LENGTH_BEFORE.get((name, fname))
            if grew and v < version_tuple(grew[0]):
                length = grew[1]
            fields[fname] = Field(fname, ATTRIBUTE, ftype, not_null, length)
        for fname, target, not_null in data["one"]:
            if target in names and present(FIELD_SINCE.get((name, fname))):
                fields[fname] = Field(fname, ONE, target, not_null)
        for fname, target, mapped_by in data["many"]:
            if target in names and present(FIELD_SINCE.get((name, fname))) \
                    and present(FIELD_SINCE.get((target, mapped_by))):
                fields[fname] = Field(fname, MANY, target, mapped_by=mapped_by)
        entities[name] = EntityType(name, tuple(data["unique"]), fields)
    return Schema(entities, version)
