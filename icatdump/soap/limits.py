"""The local ICAT server's ceilings, apart so the CLI can show their
defaults without importing the server."""

from __future__ import annotations

import dataclasses

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's ceilings; each default is documented in doc/guide.md
    ("Limits and guarantees") and is an ``icatdata serve`` option."""

    #: Seconds in which a request (line, headers and body) must arrive in
    #: full, counted from when the server starts waiting for it, so a client
    #: that dribbles bytes is cut off as surely as an idle one; also how long
    #: an idle keep-alive connection stays open.  Big requests must come at
    #: max_request / read_timeout bytes/s at least (32 MiB in 30 s: 1.1 MB/s).
    read_timeout: float = 30.0
    #: Connections open at once (one thread each); more are answered 503.
    max_connections: int = 500
    #: Bytes of one request body; more are answered 413 without being read.
    #: (Parsed, a body takes about eight times its size.)
    max_request: int = 32 * MIB
    #: Bytes of request bodies held at once over all connections, from
    #: reading to answering: many big requests wait for each other (within
    #: their read timeout, else 503) instead of adding up.
    max_pending: int = 64 * MIB
    #: Connections the kernel queues before they are accepted (capped by
    #: net.core.somaxconn): a burst of clients waits instead of being reset.
    backlog: int = 1024
