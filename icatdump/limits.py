"""Ceilings on what a reader holds at once: one value, one chunk.

The parsers build a whole text node, attribute, comment or YAML scalar
before they hand out anything, and a YAML document (= one chunk) as a whole
node tree.  A small compressed file can expand to gigabytes of one value,
so the readers measure their input before the parser sees it and refuse
past these ceilings (backends/xml.py, backends/yaml.py), with one line
naming file, line and limit, well before memory runs out.

Each ceiling is a reader attribute (``DumpFileReader.max_value_size``,
``max_chunk_size``); left at None it comes from the environment
(``ICATDUMP_MAX_VALUE_SIZE``, ``ICATDUMP_MAX_CHUNK_SIZE``: a number of
bytes, with an optional K, M or G suffix), else the default here.
"""

from __future__ import annotations

import os
import re

#: A single value, attribute, comment, or run of input without markup.
#: ICAT's longest string columns hold a few thousand characters; libxml2
#: refuses a text node past 10 MB on its own, so this is below that.
DEFAULT_MAX_VALUE_SIZE = 8 << 20

#: A single chunk (an XML ``<data>`` element, a YAML document).  A chunk is
#: parsed as a whole; this many bytes of one take about 1-2 GiB as a tree.
DEFAULT_MAX_CHUNK_SIZE = 256 << 20

VALUE_ENV = "ICATDUMP_MAX_VALUE_SIZE"
CHUNK_ENV = "ICATDUMP_MAX_CHUNK_SIZE"

_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)i?B?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``"16M"`` -> 16777216; ValueError if not a positive size."""
    m = _SIZE.fullmatch(text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError("%r is not a size (a positive number of bytes, "
                         "optionally with K, M or G)" % text)
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _ceiling(setting, env: str, default: int) -> int:
    if setting is not None:
        return int(setting)
    text = os.environ.get(env)
    if not text:
        return default
    try:
        return parse_size(text)
    except ValueError as exc:
        from .config import ConfigError
        raise ConfigError("%s: %s" % (env, exc)) from None


def value_size(setting=None) -> int:
    """The value ceiling: ``setting`` if given, else the environment's, else the default."""
    return _ceiling(setting, VALUE_ENV, DEFAULT_MAX_VALUE_SIZE)


def chunk_size(setting=None) -> int:
    """The chunk ceiling: ``setting`` if given, else the environment's, else the default."""
    return _ceiling(setting, CHUNK_ENV, DEFAULT_MAX_CHUNK_SIZE)


def describe(n: int) -> str:
    """A ceiling as the error messages give it: ``16 MiB``, ``1000 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, unit)
    return "%d bytes" % n
