"""Attribute values between Python and SQLite.

Dates are stored as UTC text in one fixed-width form,
``YYYY-MM-DD HH:MM:SS.ffffff``, so that SQLite's text comparison is time
comparison and equality does not depend on how a file spelled the offset.
Booleans are 0/1.  Everything else is stored as its Python value.

Values arrive in every shape a dump file or a caller produces (``"true"``,
``"7.3"``, ``"2012-07-30T01:10:08+00:00"``, ``…Z``, real Python values);
they are converted by the field's rule (:mod:`icatdump.rules`).
"""

from __future__ import annotations

import datetime as _dt

from ..rules import field_rule
from ..schema import ENUMS, Field
from ..types import UTC, ValueProblem, parse_datetime, to_python


def date_to_sql(dt: _dt.datetime) -> str:
    """An aware (or naive = UTC) datetime as stored text."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat(sep=" ", timespec="microseconds")


def date_from_sql(text: str) -> _dt.datetime:
    # The offset parsed along is cheaper than a replace() afterwards.
    return _dt.datetime.fromisoformat(text + "+00:00")


def now_sql() -> str:
    return date_to_sql(_dt.datetime.now(UTC))


def writer(f: Field, entity: str):
    """A function converting a value of field ``f`` to its SQL value.

    It returns None for None/empty values and raises ValueProblem for values
    that are not of the field's type.  The conversion is the field's rule
    (:mod:`icatdump.rules`, the one the file readers apply), so the store
    accepts exactly what a reader or ``icatdata check`` accepts; only the
    SQL form of booleans and dates is added here.
    """
    conv = field_rule(entity, f).convert
    t = f.type
    if t == "boolean":
        def to_sql(v):
            if v is True:
                return 1
            if v is False:
                return 0
            v = conv(v)
            return None if v is None else int(v)
        return to_sql
    if t == "Date":
        def to_sql(v):
            if v.__class__ is not _dt.datetime:
                v = conv(v)
                if v is None:
                    return None
            if v.tzinfo is UTC:
                # What readers make of a file's date: no conversion needed.
                return v.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            return date_to_sql(v)
        return to_sql
    return conv


def reader(f: Field):
    """A function converting a stored value of ``f`` back to Python, or None
    when the stored value is already the Python value."""
    if f.type == "Date":
        return date_from_sql
    if f.type == "boolean":
        return bool
    return None


def literal_for(f: Field, value, zone=UTC):
    """A query literal compared with field ``f``, as the SQL value to bind.

    python-icat quotes every value (``o.fileSize = '42'``), and dates come as
    ISO strings or ``{ts …}``; both must compare like the stored values.  A
    date without offset is read in ``zone`` (None: the machine's), the zone
    of the server the query was sent to.
    """
    if value is None:
        return None
    if f.type == "Date":
        return date_to_sql(parse_datetime(value, zone))
    if f.type == "boolean":
        v = to_python(f, value)
        return None if v is None else int(v)
    if f.type in ENUMS and isinstance(value, str) and value.startswith("org.icatproject."):
        value = value.rsplit(".", 1)[1]
    if f.type == "String":
        return value if isinstance(value, str) else str(value)
    return to_python(f, value)


__all__ = ["ValueProblem", "date_to_sql", "date_from_sql", "now_sql", "writer", "reader",
           "literal_for"]
