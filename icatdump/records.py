"""Record: one object as a writer hands it to a backend to serialize.

The backend's whole view of an object: values in python-icat's order,
references already turned into keys, so a backend only formats.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import EntityType


@dataclass
class Record:
    """One object ready to serialize: the backend's whole view of it.

    ``attrs``: ``(name, value)`` sorted by name, None left out, values as
    Python values.  ``refs``: ``(name, key)`` sorted by name.  ``children``:
    ``(relation, [Record, ...])`` sorted by name, items in python-icat's order.
    """
    type: EntityType
    attrs: list
    refs: list
    children: list
