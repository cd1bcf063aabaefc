"""The SQLite layout of an embedded catalogue, generated from the schema.

One table per entity, named like the entity.  Every table has ``id INTEGER
PRIMARY KEY`` (ids come from one catalogue-wide sequence, as ICAT's do), the
four meta columns, one column per attribute and one column per many-to-one
relation holding the related object's id (named like the relation).  The
uniqueness constraint becomes a UNIQUE index, so SQLite itself detects
duplicates; every relation column not already leading that index gets its own
index, because INCLUDE loading and cascading deletes look children up by it.

Not-null, string lengths and the existence of related objects are checked in
Python (ICAT reports them with specific messages, see ``write.py``), so the
columns carry only the type affinity.  The ``REFERENCES`` clauses document
the relations (and give ``ON DELETE CASCADE`` its ICAT meaning for tools that
enable foreign keys); the store itself runs with foreign keys off and
cascades deletes explicitly.
"""

from __future__ import annotations

from ..schema import Schema

META_TABLE = "icatdump_meta"

#: SQLite column type per ICAT attribute type.  Dates are text in one fixed
#: UTC form (see ``values.py``), so text order is time order.
SQL_TYPES = {
    "String": "TEXT", "Long": "INTEGER", "Integer": "INTEGER", "Double": "REAL",
    "boolean": "INTEGER", "Date": "TEXT", "ParameterValueType": "TEXT",
    "StudyStatus": "TEXT",
}

#: Pragmas for every connection: WAL lets readers run beside one writer,
#: synchronous=NORMAL is durable at checkpoints and much faster than FULL,
#: and LIKE is case-sensitive as in ICAT's JPQL on case-sensitive databases.
#: The page cache is 16 MiB: a bigger one only fills up as the catalogue
#: grows, so memory would follow the catalogue's size, without making
#: ingest faster (doc/performance.md has the figures).
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -16384",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA case_sensitive_like = ON",
)


#: Set when a catalogue file is created, before anything else (the page
#: size is fixed once the file has content or is in WAL mode).  Pages of
#: 16 KiB suit bulk inserts better than SQLite's 4 KiB (doc/performance.md).
NEW_FILE_PRAGMAS = ("PRAGMA page_size = 16384",)


def q(name: str) -> str:
    """Quote an identifier (entity and field names may be SQL keywords)."""
    return '"%s"' % name


def table_ddl(schema: Schema) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for every entity."""
    statements = []
    for et in schema:
        cols = ["id INTEGER PRIMARY KEY", '"createId" TEXT NOT NULL',
                '"createTime" TEXT NOT NULL', '"modId" TEXT NOT NULL',
                '"modTime" TEXT NOT NULL']
        for f in et.attrs.values():
            cols.append("%s %s" % (q(f.name), SQL_TYPES.get(f.type, "TEXT")))
        for f in et.ones.values():
            cols.append("%s INTEGER REFERENCES %s(id) ON DELETE CASCADE"
                        % (q(f.name), q(f.type)))
        statements.append("CREATE TABLE %s (\n  %s\n)" % (q(et.name), ",\n  ".join(cols)))
        if et.constraint:
            statements.append("CREATE UNIQUE INDEX %s ON %s (%s)" % (
                q("uq_" + et.name), q(et.name), ", ".join(q(c) for c in et.constraint)))
        lead = et.constraint[0] if et.constraint else None
        for f in et.ones.values():
            if f.name != lead:
                statements.append("CREATE INDEX %s ON %s (%s)" % (
                    q("ix_%s_%s" % (et.name, f.name)), q(et.name), q(f.name)))
    return statements


def meta_ddl() -> list[str]:
    return ["CREATE TABLE %s (key TEXT PRIMARY KEY, value TEXT NOT NULL)" % META_TABLE]
