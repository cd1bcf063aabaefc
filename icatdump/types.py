"""Attribute values: conversion by schema type, and their text in dump files.

Files carry values as text (XML) or as YAML scalars whose YAML type may not be
the ICAT type (YAML 1.1 reads ``1e+300`` as a string, ``'7.3'`` is quoted on
purpose).  Every value is therefore converted by the *schema* type of its
attribute, never by the type the parser happened to give it.  The rest of
a field's rules (length, not-null, defaults) and the table that ties them to
each field are in :mod:`icatdump.rules`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re

from .errors import ValueProblem
from .schema import ENUMS, Field

UTC = _dt.timezone.utc

_TRUE = {"1", "yes", "y", "true", "t", "on"}
_FALSE = {"0", "no", "n", "false", "f", "off"}


#: The values of ICAT's integral types: Java's ``Long`` and ``Integer``.  A
#: server cannot take a value outside (the SOAP message does not parse),
#: nor can the embedded catalogue (SQLite integers are 64-bit).
INT_RANGES = {"Long": (-2 ** 63, 2 ** 63 - 1), "Integer": (-2 ** 31, 2 ** 31 - 1)}


#: xs:dateTime as JAXB writes it (``2019-12-30T23:00:00Z``, ``...:00.120+01:00``)
#: and ISO 8601 as files carry it: what :meth:`datetime.fromisoformat` of
#: Python 3.11 reads, but 3.10's does not (``Z``, fractions of other than 3 or
#: 6 digits, ``+0100``).
_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?", re.ASCII)


def parse_datetime(value, naive=UTC) -> _dt.datetime:
    """ISO 8601 text (offset or ``Z``) → aware UTC datetime.

    A value without offset (a date alone, too) is read in ``naive``: UTC
    unless told otherwise; None is the machine's local time, as a Java
    server reads such values in its own zone.  The same on every Python the
    package supports: text that ``fromisoformat`` refuses (on 3.10 a ``Z``
    suffix, which every ICAT in a UTC JVM sends) is read by
    :data:`_ISO_DATETIME`.
    """
    if isinstance(value, _dt.datetime):
        dt = value
    elif isinstance(value, _dt.date):
        dt = _dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            dt = _dt.datetime.fromisoformat(text)
        except ValueError:
            dt = _iso_datetime(text)
    if dt.tzinfo is None and naive is not None:
        dt = dt.replace(tzinfo=naive)
    return dt.astimezone(UTC)


def _iso_datetime(text: str) -> _dt.datetime:
    m = _ISO_DATETIME.fullmatch(text)
    if m is None:
        raise ValueProblem("invalid date/time %r" % text)
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = None
    if zone == "Z":
        tz = UTC
    elif zone:
        digits = zone[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
        tz = _dt.timezone(_dt.timedelta(minutes=-minutes if zone[0] == "-" else minutes))
    try:
        return _dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                            int(second or 0), int((fraction or "0")[:6].ljust(6, "0")), tz)
    except ValueError:
        raise ValueProblem("invalid date/time %r" % text) from None


def to_python(f: Field, value, entity: str = "?"):
    """Convert a file or wire value to the canonical Python value of field ``f``.

    ``None`` and the empty string (an empty XML element) give ``None``.
    """
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise ValueProblem("%s.%s: expected a single value, got a %s"
                           % (entity, f.name, type(value).__name__))
    t = f.type
    if t == "String":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, _dt.datetime):
            return format_datetime(value)
        return value if isinstance(value, str) else str(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
    else:
        text = None
    try:
        if t in INT_RANGES:
            if isinstance(value, bool):
                raise ValueError
            integer: int
            if isinstance(value, int):
                integer = value
            elif isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                integer = int(value)
            else:
                integer = int(text)
            lowest, highest = INT_RANGES[t]
            if not lowest <= integer <= highest:
                raise ValueProblem("%r is out of the range of a Java %s" % (value, t))
            return integer
        if t == "Double":
            if isinstance(value, bool):
                raise ValueError
            result = float(value if text is None else text)
            if math.isnan(result) and text is not None and text.lower() != "nan":
                raise ValueError
            return result
        if t == "boolean":
            if isinstance(value, bool):
                return value
            low = str(value).strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if t == "Date":
            if isinstance(value, str):
                refuse_finer_than_microseconds(value)
            return parse_datetime(value)
    except ValueProblem as exc:
        raise ValueProblem("%s.%s: %s" % (entity, f.name, exc)) from None
    except (ValueError, TypeError, OverflowError):
        raise ValueProblem("%s.%s: %r is not a valid %s"
                           % (entity, f.name, value, t)) from None
    if t in ENUMS:
        text = str(value).strip()
        if text.startswith("org.icatproject."):
            text = text.rsplit(".", 1)[1]
        if text not in ENUMS[t]:
            raise ValueProblem("%s.%s: %r is not one of %s"
                               % (entity, f.name, value, ", ".join(ENUMS[t])))
        return text
    return value


def format_datetime(dt: _dt.datetime) -> str:
    """A datetime as python-icat writes it: UTC, ``isoformat()``, ``+00:00``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def to_text(value) -> str:
    """An attribute value as python-icat's XML writer writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _dt.datetime):
        return format_datetime(value)
    return str(value)


def to_yaml(value):
    """An attribute value as python-icat's YAML writer passes it to PyYAML."""
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, _dt.datetime):
        return format_datetime(value)
    return str(value)


_BOOL_WORDS = {"true": True, "false": False}


#: A time with more than 6 fractional second digits.
_FINER_THAN_MICROSECONDS = re.compile(r"\d:\d\d[.,]\d{7}")


def refuse_finer_than_microseconds(text: str):
    """Refuse a time written with more than 6 fractional second digits.

    Python's datetime holds microseconds, and both ``fromisoformat`` (3.11+)
    and PyYAML's timestamps drop further digits without a word; a value
    is not changed silently on its way into the catalogue.
    """
    if _FINER_THAN_MICROSECONDS.search(text):
        raise ValueProblem("%r has more than 6 fractional second digits "
                           "(the finest a date here holds is a microsecond)" % text)


def converter(f: Field, entity: str = "?"):
    """A function doing :func:`to_python` for field ``f``, made once per field.

    Readers convert every attribute of every object; deciding by the type
    name each time costs more than the conversion.  Values in the form data
    files carry (text, or the YAML scalar of the right type) take a short
    path; anything else goes through :func:`to_python`, so the result and
    the errors are the same.
    """
    t = f.type
    if t == "String":
        def conv(v):
            return v if v.__class__ is str else to_python(f, v, entity)
    elif t in INT_RANGES:
        low, high = INT_RANGES[t]

        def conv(v):
            cls = v.__class__
            if cls is int:
                if low <= v <= high:
                    return v
            elif cls is str and v.isascii() and v.isdigit():
                n = int(v)
                if n <= high:
                    return n
            return to_python(f, v, entity)
    elif t == "Double":
        def conv(v):
            cls = v.__class__
            if cls is float:
                return v
            if cls is str:
                try:
                    r = float(v)
                except ValueError:
                    return to_python(f, v, entity)
                if r == r:          # NaN: to_python decides whether it was meant
                    return r
            return to_python(f, v, entity)
    elif t == "boolean":
        def conv(v):
            if v.__class__ is bool:
                return v
            b = _BOOL_WORDS.get(v) if v.__class__ is str else None
            return b if b is not None else to_python(f, v, entity)
    elif t == "Date":
        def conv(v):
            if v.__class__ is str:
                if len(v) > 26 and _FINER_THAN_MICROSECONDS.search(v):
                    return to_python(f, v, entity)      # which refuses it
                try:
                    dt = _dt.datetime.fromisoformat(v)
                except ValueError:
                    return to_python(f, v, entity)
                if dt.tzinfo is UTC:
                    return dt       # what parse_datetime makes of it, spared a copy
            return to_python(f, v, entity)
    elif t in ENUMS:
        allowed = frozenset(ENUMS[t])

        def conv(v):
            return v if v.__class__ is str and v in allowed else to_python(f, v, entity)
    else:
        def conv(v):
            return to_python(f, v, entity)
    return conv
