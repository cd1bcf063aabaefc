"""SQLITE: an icatdump format plugin that writes a dump as one SQLite file.

It is small on purpose, as a model for plugin authors (icatdump's
``doc/plugins.md`` walks through it).  The file is meant to be looked into
with the plain ``sqlite3`` tool, so its layout is as flat as the data
allows (see README.md):

* ``header``: one row with date, service, apiversion and generator;
* one table per entity type written, named like the XML/YAML tag
  (``investigationUser``), with one column per attribute and one per
  many-to-one relation (holding the related object's key), plus
  ``_seq`` (position in the file), ``_chunk``, ``_key`` (top-level
  objects), ``_parent`` and ``_relation`` (embedded children: the parent's
  ``_seq`` and the relation they belong to).  ICAT names never start with
  an underscore, so these cannot clash with a field.

icatdump's base classes do the rest: the writer is handed each object as a
``Record`` with sorted attributes and references already turned into keys;
the reader hands back ``RawObject`` records and the base reader checks
names, converts values by their schema type and resolves the keys.

SQLite works on paths, while a dump writer is given a stream (a temporary
file that is renamed when complete, or standard output), so the database
is built in a temporary file and its bytes are copied into the stream at
the end.  The reader uses the file directly when its stream is a plain
file, and otherwise copies the stream to a temporary file first.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil
import sqlite3
import tempfile

import icatdump
from icatdump.dumpfile import (DataFileError, DumpFileReader, DumpFileWriter, RawObject,
                               Record)
from icatdump.types import format_datetime

__version__ = "0.1.0"

#: Column types by ICAT attribute type; anything else (enums) is TEXT.
SQL_TYPES = {"String": "TEXT", "Integer": "INTEGER", "Long": "INTEGER",
             "Double": "REAL", "boolean": "INTEGER", "Date": "TEXT"}

#: The bookkeeping columns every entity table has, before the fields.
META_COLUMNS = ("_seq", "_chunk", "_key", "_parent", "_relation")

#: SQLite's application id of these dumps (``PRAGMA application_id``, bytes
#: 68-71 of the file), which tells them from other SQLite files.
APPLICATION_ID = b"ICDS"


def q(name: str) -> str:
    """An SQL identifier, quoted (``user`` and ``type`` are fine then)."""
    return '"%s"' % name.replace('"', '""')


def sql_value(value):
    """A Python attribute value as stored: dates as UTC ISO text, booleans 0/1.

    Doubles are stored as REAL, so they come back exactly (a NaN, which
    SQLite turns into NULL, is the one value that does not).
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime.datetime):
        return format_datetime(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


class SQLiteDumpFileWriter(DumpFileWriter):
    """Write all chunks into one SQLite database, then copy it to the output."""

    mode = "wb"

    def __init__(self, client, outfile):
        super().__init__(client, outfile)
        # Build next to the final file when there is one: a big dump may
        # not fit into /tmp, and the copy stays on one file system.
        tmpdir = os.path.dirname(self._tmp_name) if self._final_name else None
        fd, self._db_path = tempfile.mkstemp(prefix=".icatdump-sqlite-", suffix=".tmp",
                                             dir=tmpdir)
        os.close(fd)
        self.db = sqlite3.connect(self._db_path)
        # A scratch file: no journal, no syncs; the base class syncs the output.
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        # Every table takes at least a page: small pages keep small dumps small.
        self.db.execute("PRAGMA page_size = 1024")
        self.db.execute("PRAGMA application_id = %d" % int.from_bytes(APPLICATION_ID, "big"))
        self.tables: dict[str, tuple] = {}  # tag -> (INSERT, field columns)
        self.seq = 0
        self.chunk = 0
        self._chunk_open = False

    def head(self):
        self.db.execute("CREATE TABLE header (date TEXT, service TEXT, apiversion TEXT, "
                        "generator TEXT)")
        self.db.execute("INSERT INTO header VALUES (?, ?, ?, ?)",
                        (datetime.datetime.now(datetime.timezone.utc).isoformat(),
                         self.client.url, str(self.client.apiversion), icatdump.GENERATOR))

    def startdata(self):
        # Numbered when its first object arrives: empty chunks leave no gap.
        self._chunk_open = False

    def write_record(self, key: str, record: Record):
        if not self._chunk_open:
            self.chunk += 1
            self._chunk_open = True
        self._insert(record, key, None, None)

    def _insert(self, record: Record, key, parent, relation):
        """One row for the object, then its children, each pointing back to it."""
        self.seq += 1
        seq = self.seq
        sql, fields = self._table(record.type)
        values = {name: sql_value(value) for name, value in record.attrs}
        values.update(record.refs)
        self.db.execute(sql, [seq, self.chunk, key, parent, relation]
                        + [values.get(name) for name in fields])
        for rel, children in record.children:
            for child in children:
                self._insert(child, None, seq, rel)

    def _table(self, etype) -> tuple[str, list[str]]:
        """The INSERT of a type's table and its field columns; the table is
        created on first use.

        Columns come from the schema, not from the first object, so every
        object of the type fits; fields an object lacks stay NULL.
        """
        table = self.tables.get(etype.instance_name)
        if table is None:
            fields = list(etype.attrs) + list(etype.ones)
            columns = ["_seq INTEGER PRIMARY KEY", "_chunk INTEGER NOT NULL", "_key TEXT",
                       "_parent INTEGER", "_relation TEXT"]
            columns += ["%s %s" % (q(n), SQL_TYPES.get(f.type, "TEXT"))
                        for n, f in etype.attrs.items()]
            columns += ["%s TEXT" % q(n) for n in etype.ones]
            name = q(etype.instance_name)
            self.db.execute("CREATE TABLE %s (%s)" % (name, ", ".join(columns)))
            sql = "INSERT INTO %s VALUES (%s)" % (name, ", ".join("?" * len(columns)))
            table = self.tables[etype.instance_name] = (sql, fields)
        return table

    def finalize(self):
        self.db.commit()
        self.db.close()
        with open(self._db_path, "rb") as db_file:
            shutil.copyfileobj(db_file, self.outfile, 1 << 20)
        os.unlink(self._db_path)

    def abort(self):
        self.db.close()
        try:
            os.unlink(self._db_path)
        except FileNotFoundError:
            pass
        super().abort()


class SQLiteDumpFileReader(DumpFileReader):
    """Read a dump written by :class:`SQLiteDumpFileWriter`, chunk by chunk."""

    mode = "rb"

    def getdata(self):
        """The chunk numbers, in order; each is read by :meth:`parse_chunk`."""
        path, tmp_path = _real_path(self.infile), None
        if path is None:
            fd, tmp_path = tempfile.mkstemp(suffix=".sqlite")
            with os.fdopen(fd, "wb") as tmp:
                shutil.copyfileobj(self.infile, tmp, 1 << 20)
            path = tmp_path
        self.db = sqlite3.connect(pathlib.Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            try:
                self.chunk_tables = self._layout()
            except sqlite3.DatabaseError as exc:
                raise DataFileError("not an icatdump SQLite file: %s" % exc) from None
            yield from sorted(self.chunk_tables)
        finally:
            self.db.close()
            if tmp_path:
                os.unlink(tmp_path)

    def _layout(self) -> dict[int, list]:
        """chunk → [(table, first _seq, last _seq)] of the tables it has rows in.

        Rows are numbered in file order, so a chunk's rows of a table are one
        ``_seq`` range: reading a chunk is a range scan of its own tables.
        """
        self.db.execute("SELECT date FROM header").fetchall()   # is it one of ours?
        layout: dict[int, list] = {}
        for (table,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name != 'header' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'").fetchall():
            for chunk, first, last in self.db.execute(
                    "SELECT _chunk, min(_seq), max(_seq) FROM %s GROUP BY _chunk" % q(table)):
                layout.setdefault(chunk, []).append((table, first, last))
        return layout

    def parse_chunk(self, chunk: int):
        """The chunk's top-level objects in file order, children embedded.

        The chunk's rows of every table are merged by ``_seq``; a child's
        row always comes after its parent's, so its parent is built by then.
        """
        rows = []
        for table, first, last in self.chunk_tables[chunk]:
            cursor = self.db.execute("SELECT * FROM %s WHERE _seq BETWEEN ? AND ?" % q(table),
                                     (first, last))
            names = [d[0] for d in cursor.description]
            rows.extend((row[0], table, dict(zip(names, row))) for row in cursor)
        rows.sort(key=lambda r: r[0])
        objects: dict[int, RawObject] = {}      # _seq -> object
        lists: dict[tuple, list] = {}           # (parent _seq, relation) -> children
        for seq, tag, row in rows:
            fields = [(n, v) for n, v in row.items()
                      if v is not None and n not in META_COLUMNS]
            obj = objects[seq] = RawObject(tag, row["_key"], fields)
            parent = row["_parent"]
            if parent is None:
                continue
            if parent not in objects:
                raise DataFileError("%s row %d: parent %d is not in chunk %d"
                                    % (tag, seq, parent, chunk))
            siblings = lists.get((parent, row["_relation"]))
            if siblings is None:
                siblings = lists[parent, row["_relation"]] = []
                objects[parent].fields.append((row["_relation"], siblings))
            siblings.append(obj)
        # Embedded children are yielded inside their parents only.
        yield from (objects[seq] for seq, _, row in rows if row["_parent"] is None)


def _real_path(stream) -> str | None:
    """The path of a stream that is a plain file on disk, opened at its start.

    Checked by inode, so a name that merely looks like a path (``<stdin>``)
    or a file replaced since it was opened is not taken for the stream.
    """
    name = getattr(stream, "name", None)
    try:
        if isinstance(name, str) and stream.tell() == 0 and \
                os.path.samestat(os.fstat(stream.fileno()), os.stat(name)):
            return name
    except (OSError, ValueError, AttributeError):
        pass
    return None


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are a dump of this format: an SQLite
    database with this format's application id (not any SQLite file: an
    embedded ICAT catalogue is one too).

    With this hook icatdump recognizes the format without ``-f`` (and a
    gzip-compressed dump too) in ``icatingest`` and ``icatdata``.  A
    ``read_header(stream)`` hook is left out: SQLite needs the whole
    database to read the header row, not just the first bytes icatdump
    hands to that hook, so the file tools read a dump with the default
    schema unless ``--schema-version`` is given.
    """
    return head.startswith(b"SQLite format 3\0") and head[68:72] == APPLICATION_ID


reader = SQLiteDumpFileReader
writer = SQLiteDumpFileWriter
