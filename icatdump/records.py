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
    ``id``: the object's id in the catalogue it was read from, if known --
    never written to a file (ids are not portable), but what a step beside
    the writer needs to ask that catalogue about it again (``--with-data``
    fetches a Datafile's content by its id).
    """
    type: EntityType
    attrs: list
    refs: list
    children: list
    id: int | None = None
