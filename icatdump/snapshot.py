"""Consistent dumps: a dump reads one state of the catalogue, or says it did not.

A backup is only worth something if it can be restored.  A dump that reads
half of an ingest that ran meanwhile can hold references to objects it never
wrote, so every dump runs inside :meth:`Client.snapshot`:

- the embedded catalogue reads the whole dump in one SQLite read transaction
  (the file is in WAL mode: an ingest goes on committing, the dump keeps
  seeing the state of its first read);
- an ICAT server keeps no snapshot across calls, so :class:`ChangeWatch`
  takes a fingerprint of the catalogue before and after the dump -- per
  entity type, how many objects there are and the latest ``modTime`` (ICAT
  sets it on every create and update) -- and raises
  :class:`CatalogueChanged` if the two differ, which names the types that
  changed.  The dump then fails as on any error: no file is left under the
  output's name, since one that may not restore is worse than none.

A change that leaves both the count and the latest ``modTime`` of every type
as they were (an object deleted and another created within the server's
clock resolution) goes unseen; ICAT's ``modTime`` has milliseconds.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from .errors import CatalogueChanged


def fingerprint(client) -> dict[str, tuple]:
    """Per entity type: the number of objects and the latest modTime."""
    prints = {}
    for etype in client.schema:
        name = etype.name
        count = client.search("SELECT COUNT(o) FROM %s o" % name)
        latest = client.search("SELECT MAX(o.modTime) FROM %s o" % name) if count[0] else [None]
        prints[name] = (count[0], latest[0])
    return prints


def differences(before: dict, after: dict) -> list[str]:
    """The types whose fingerprint changed, each with what changed."""
    changed = []
    for name, (count, latest) in before.items():
        now_count, now_latest = after.get(name, (0, None))
        if now_count != count:
            changed.append("%s: %d objects, then %d" % (name, count, now_count))
        elif now_latest != latest:
            changed.append("%s: modified" % name)
    return changed


@contextlib.contextmanager
def change_watch(client) -> Iterator[None]:
    """For a server: fingerprint before and after, :class:`CatalogueChanged`
    if they differ.  Nothing is checked when the block fails anyway."""
    before = fingerprint(client)
    yield
    changed = differences(before, fingerprint(client))
    if changed:
        raise CatalogueChanged(changed)
