"""The backend registry: which data file formats exist and where they came from.

A format is a (reader class, writer class) pair, registered in code
(:func:`register_backend`) or found through the ``icatdump.backends``
entry-point group (:func:`discover_backends`).  It knows nothing of what
readers and writers do, so any module can look a format up without
importing them.
"""

from __future__ import annotations

import logging

from .client import Client

#: Known backends: format name (as registered) → (reader class, writer class).
Backends: dict[str, tuple[type, type]] = {}

#: Where each backend came from (for ``--list-formats``).
BackendOrigins: dict[str, str] = {}

ENTRY_POINT_GROUP = "icatdump.backends"

_discovered = False
_log = logging.getLogger("icatdump.plugins")


def _find_name(formatname: str) -> str | None:
    """The registered spelling of a format name, matched case-insensitively."""
    if formatname in Backends:
        return formatname
    folded = formatname.casefold()
    return next((n for n in Backends if n.casefold() == folded), None)


def register_backend(formatname: str, reader, writer):
    """Register a backend in code.

    It wins over an entry point of the same name (in any letter case),
    whether discovery has run yet or not: code that registers a format
    explicitly means that one.
    """
    old = _find_name(formatname)
    if old is not None:
        del Backends[old]
        BackendOrigins.pop(old, None)
    Backends[formatname] = (reader, writer)
    BackendOrigins[formatname] = "registered in code by %s" % getattr(reader, "__module__", "?")


def discover_backends(warn: bool = True) -> dict[str, tuple[type, type]]:
    """Load the backends of the ``icatdump.backends`` entry-point group.

    Lazy and once per process: nothing is imported until a format is first
    looked up or listed.  Each entry point names a module (or any object)
    with the attributes ``reader`` and ``writer``.  A plugin that fails to
    load is skipped with a single one-line warning on the
    ``icatdump.plugins`` logger (stderr unless logging is configured; not
    with ``warn=False``), so a broken third-party package never takes the
    other formats down with it.
    """
    global _discovered
    if _discovered:
        return Backends
    _discovered = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _find_name(ep.name) is not None:
            continue        # registered in code (which wins), or a second copy
        dist = getattr(ep, "dist", None)
        source = "%s = %s (%s)" % (ep.name, ep.value, dist.name if dist else "entry point")
        try:
            obj = ep.load()
            reader, writer = obj.reader, obj.writer
        except Exception as exc:  # a broken plugin must not break the others
            cause = " ".join(str(exc).split()) or "-"
            if warn:
                _log.warning("icatdump: format plugin %s skipped: %s: %s",
                             source, type(exc).__name__, cause)
            continue
        if _find_name(ep.name) is not None:
            continue        # the module registered itself in code while loading
        Backends[ep.name] = (reader, writer)
        BackendOrigins[ep.name] = "%s (%s)" % (ep.value, dist.name if dist else "entry point")
    return Backends


def get_backend(formatname: str) -> tuple[type, type]:
    """The (reader, writer) of a format; the name's letter case does not matter."""
    discover_backends()
    name = _find_name(formatname)
    if name is None:
        raise ValueError("unknown data file format '%s' (known: %s)"
                         % (formatname, ", ".join(sorted(Backends))))
    return Backends[name]


def open_dumpfile(client: Client, f, formatname: str, mode: str):
    """Open a data file for reading (``mode="r"``) or writing (``"w"``)."""
    reader, writer = get_backend(formatname)
    if mode == "r":
        return reader(client, f)
    if mode == "w":
        return writer(client, f)
    raise ValueError("invalid file mode '%s'" % mode)
