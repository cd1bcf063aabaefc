"""The backend registry: which data file formats exist and where they came from.

A format is a (reader class, writer class) pair, registered in code
(:func:`register_backend`) or found through the ``icatdump.backends``
entry-point group (:func:`discover_backends`).  It knows nothing of what
readers and writers do, so any module can look a format up without
importing them.  Which format a file is, is asked of the formats here too
(:func:`open_input`: each backend's optional ``sniff``).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import MutableMapping
from typing import IO, Any

from .client import Client
from .errors import DataFileError
from .inputs import DataInput, FormatMismatch, format_hook, open_binary
from .streams import refuse_other_encoding

#: Known backends: format name (as registered) → (reader class, writer class).
_known: dict[str, tuple[type[Any], type[Any]]] = {}


class _DiscoveringRegistry(MutableMapping):
    """python-icat's ``Backends``: the formats by name, read as a dict.

    python-icat fills its ``Backends`` when its backends are imported;
    ours come from entry points, loaded (:func:`discover_backends`) the
    first time the mapping is read, so ``sorted(Backends)`` lists them
    with no call before it.  Writing registers without loading anything.
    """

    def __getitem__(self, name):
        return discover_backends()[name]

    def __iter__(self):
        return iter(list(discover_backends()))

    def __len__(self):
        return len(discover_backends())

    def __setitem__(self, name, backend):
        _known[name] = backend

    def __delitem__(self, name):
        del _known[name]

    def __repr__(self):
        return "Backends(%r)" % dict(self)


Backends = _DiscoveringRegistry()

#: Where each backend came from (for ``--list-formats``).
BackendOrigins: dict[str, str] = {}

ENTRY_POINT_GROUP = "icatdump.backends"

_discovered = False
_log = logging.getLogger("icatdump.plugins")


def _find_name(formatname: str) -> str | None:
    """The registered spelling of a format name, matched case-insensitively."""
    if formatname in _known:
        return formatname
    folded = formatname.casefold()
    return next((n for n in _known if n.casefold() == folded), None)


def register_backend(formatname: str, reader: type[Any], writer: type[Any]) -> None:
    """Register a backend in code.

    It wins over an entry point of the same name (in any letter case),
    whether discovery has run yet or not: code that registers a format
    explicitly means that one.
    """
    old = _find_name(formatname)
    if old is not None:
        del _known[old]
        BackendOrigins.pop(old, None)
    _known[formatname] = (reader, writer)
    BackendOrigins[formatname] = "registered in code by %s" % getattr(reader, "__module__", "?")


def discover_backends(warn: bool = True) -> dict[str, tuple[type[Any], type[Any]]]:
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
        return _known
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
        _known[ep.name] = (reader, writer)
        BackendOrigins[ep.name] = "%s (%s)" % (ep.value, dist.name if dist else "entry point")
    return _known


def get_backend(formatname: str) -> tuple[type[Any], type[Any]]:
    """The (reader, writer) of a format; the name's letter case does not matter."""
    discover_backends()
    name = _find_name(formatname)
    if name is None:
        raise ValueError("unknown data file format '%s' (known: %s)"
                         % (formatname, ", ".join(sorted(_known))))
    return _known[name]


# -- which format a file is ------------------------------------------------------

def _sniffing_order() -> list[str]:
    """The formats that can sniff, the built-in ones first: a plugin's
    sniff that claims too much must not take XML or YAML files."""
    def builtin(n):
        return not Backends[n][0].__module__.startswith("icatdump.")
    return [n for n in sorted(Backends, key=lambda n: (builtin(n), n))
            if format_hook(Backends[n][0], "sniff") is not None]


def sniff(head: bytes) -> str | None:
    """The registered format whose backend recognizes ``head``, or None."""
    for fmt in _sniffing_order():
        if format_hook(Backends[fmt][0], "sniff")(head):
            return fmt
    return None


def settle_format(head: bytes, formatname: str | None, name: str) -> str:
    """The format to read a file as, from its first bytes.

    Without ``formatname`` it is sniffed.  A named format whose backend can
    sniff must recognize the file (else :class:`FormatMismatch` if another
    format does, or "not an ICAT data file"); one that cannot sniff is
    taken as given.
    """
    if not head.strip():
        raise DataFileError("file is empty", name)
    if formatname is not None:
        formatname = registered_name(formatname)
        own = format_hook(get_backend(formatname)[0], "sniff")
        if own is None or own(head):
            return formatname
    sniffed = sniff(head)
    if sniffed is None:
        refuse_other_encoding(head, name)       # named, rather than "not an ICAT data file"
        known = _sniffing_order() if formatname is None else [formatname]
        raise DataFileError("not an ICAT data file (%s)" % _neither(known), name)
    if formatname is not None:
        raise FormatMismatch(name, formatname, sniffed)
    return sniffed


def registered_name(formatname: str) -> str:
    """A format name as registered (``xml`` -> ``XML``); unknown: ValueError."""
    reader = get_backend(formatname)
    return next(n for n, classes in Backends.items() if classes == reader)


def _neither(names: list[str]) -> str:
    if len(names) == 1:
        return "not %s" % names[0]
    if len(names) == 2:
        return "neither %s nor %s" % tuple(names)
    return "none of %s" % ", ".join(names)


def open_input(f, formatname: str | None = None, name: str | None = None) -> DataInput:
    """Open a data file (path, ``"-"`` or binary stream) for reading:
    decompressed (see :mod:`icatdump.inputs`), its format sniffed or
    checked (see :func:`settle_format`)."""
    stream, name, head = open_binary(f, name)
    try:
        fmt = settle_format(head, formatname, name)
    except BaseException:
        if stream is not f:
            stream.close()
        raise
    return DataInput(fmt, get_backend(fmt)[0], stream, name, head, owned=not hasattr(f, "read"))


def open_dumpfile(client: Client, f: str | os.PathLike[str] | IO[Any],
                  formatname: str | None = None, mode: str = "r", *,
                  format: str | None = None) -> Any:
    """Open a data file for reading (``mode="r"``) or writing (``"w"``).

    python-icat's call ``open_dumpfile(client, f, formatname, mode)`` works
    as it always did; ``format=`` may name the format instead.  For
    reading, ``f`` is a path, ``"-"`` or a file object.  A path or ``"-"``
    is read through if gzip-compressed, and its format is sniffed if none
    is named -- or checked, if the named format's backend can sniff (see
    :func:`open_input`).  A file object is read as it is in the format
    named, or, with none named, sniffed as a path is (it must be binary).
    Writing needs a format.
    """
    if format is not None:
        if formatname is not None and formatname != format:
            raise ValueError("two formats given: %s and %s" % (formatname, format))
        formatname = format
    if mode == "r":
        if formatname is not None and hasattr(f, "read"):
            return get_backend(formatname)[0](client, f)    # read as it is
        if isinstance(f, io.TextIOBase):
            raise ValueError("the format of a text stream cannot be detected: name it")
        return open_input(f, formatname).reader(client)
    if mode == "w":
        if formatname is None:
            raise ValueError("a format is needed to write a data file")
        return get_backend(formatname)[1](client, f)
    raise ValueError("invalid file mode '%s'" % mode)
