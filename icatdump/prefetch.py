"""Searching ahead: the next pages of a chunk fetched in a thread while the
writer writes the current ones.

Over the network a search is mostly waiting for the server, and writing
objects is mostly computing: the two overlap.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator


def fetched_ahead(items: Iterable, pages_of: Callable[[Any], Iterator[list]],
                  depth: int) -> Iterator[tuple[Any, Iterator]]:
    """Each item with an iterator over its objects, as the writer reads them.

    One thread iterates over ``items`` and searches (``pages_of(item)``;
    ``items`` may search too: one query per dataset), so the client is
    never used from two threads at once; it runs at most ``depth`` pages
    ahead, so memory stays bounded however big a group is.
    """
    pages: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                pages.put(message, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in items:
                if not put(("item", item)):
                    return
                for page in pages_of(item):
                    if not put(("page", page)):
                        return
                if not put(("end", None)):
                    return
            put(("done", None))
        except BaseException as exc:
            put(("error", exc))

    def objects():
        while True:
            kind, value = pages.get()
            if kind == "page":
                yield from value
            elif kind == "end":
                return
            else:
                raise value

    worker = threading.Thread(target=produce, name="icatdump-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = pages.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            found = objects()
            yield value, found
            # The writer reads every object of an item; if it did not,
            # the rest of the item is skipped here.
            for _ in found:
                pass
    finally:
        stop.set()
        worker.join()
