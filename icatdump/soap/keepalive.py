"""Kept connections: one idle HTTP(S) connection per server, used again.

urllib opens a TCP connection (and for https a TLS session) per request and
closes it after the reply; a dump makes hundreds of requests, and the
handshakes cost more than small requests themselves.  :class:`Pool` keeps
the connection of a finished request for the next one to the same
``(scheme, host, port)``; :func:`exchange` sends a request on it.

The rules, and why:

* **Kept only when clean.**  A connection goes back into the pool only when
  its reply was read to the end, the reply is HTTP/1.1 and the server did
  not say ``Connection: close`` (:meth:`Pool.release`).  A reply left
  half-read (a timeout, a size ceiling, a bad encoding) would leave its rest
  in the socket for the next request to read as its own reply.

* **At most one idle connection per server, taken out while in use.**  Two
  threads (a dump's prefetch thread and the writer) never share one: a
  request takes the connection out of the pool, and it goes back only when
  its reply has been read.  A second request meanwhile opens its own; when
  both are done, the second one back is closed.

* **Not used when the server has closed it.**  Servers close idle
  connections after their keep-alive timeout.  Before a kept connection is
  used, its socket is polled (``select``, no wait): readable means an EOF
  (or a TLS close alert, or a stray reply) is waiting, so it is closed and
  a fresh one opened.

* **Sent again, once, only when the server cannot have acted on it.**  A
  server may close a kept connection at the moment a request goes out on
  it (the poll above came a moment too early).  Then:

  - sending fails (broken pipe, reset): the request did not get out whole,
    and a server acts only on a complete request (``Content-Length``), so
    it is sent again on a fresh connection, reads and writes alike;
  - the request went out whole and the connection ends before a status
    line arrives: a read (``idempotent``) is sent again on a fresh
    connection.  A write is not: an ending connection is no proof that the
    server did not receive and apply it.  It is left to the caller, for
    whom a lost write reply is an error that says it may have been applied
    (``SoapClient._post``).  So that this happens as rarely as with a fresh
    connection, a write goes on a kept connection only if that has been idle
    less than :data:`WRITE_IDLE` seconds, far below any server's keep-alive
    timeout (Payara's default is 30 s, Apache httpd's 5 s).

  A fresh connection is never sent on twice here, and a timeout is never a
  reason to send again: everything else goes to the caller's retries.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
import urllib.error
from typing import Callable, Hashable

#: A write (not idempotent) is sent on a kept connection only if it has been
#: idle for less than this many seconds; else on a fresh one.
WRITE_IDLE = 2.0

#: Errors that mean the peer closed or reset the connection.
LOST = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def alive(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection is still open at the other end: nothing
    is readable on it (an idle HTTP connection receives nothing until it
    sends; an EOF or a close alert makes it readable)."""
    sock = conn.sock
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class Pool:
    """At most one idle connection per key, thread-safe."""

    def __init__(self) -> None:
        self._idle: dict = {}        # key -> (connection, idle since)
        self._lock = threading.Lock()

    def take(self, key: Hashable, max_idle: float | None = None):
        """The idle connection for ``key``, taken out of the pool, if it is
        still open (and idle for less than ``max_idle`` seconds); else None."""
        with self._lock:
            entry = self._idle.pop(key, None)
        if entry is None:
            return None
        conn, since = entry
        if (max_idle is not None and time.monotonic() - since >= max_idle) or not alive(conn):
            conn.close()
            return None
        return conn

    def release(self, key: Hashable, conn, resp, complete: bool) -> None:
        """Keep ``conn`` for the next request if its reply ``resp`` was read
        to its end (``complete`` and the response closed), is HTTP/1.1 and
        does not end the connection; else close it."""
        # A body of known length read to its end leaves the response open
        # (http.client closes it on the next read, which finds nothing).
        ended = resp is not None and (resp.isclosed() or resp.length == 0)
        if (complete and ended and not resp.will_close and resp.version == 11
                and conn.sock is not None):
            resp.close()
            with self._lock:
                if key not in self._idle:
                    self._idle[key] = (conn, time.monotonic())
                    return
        conn.close()

    def idle(self) -> int:
        """Connections kept now."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            entries, self._idle = list(self._idle.values()), {}
        for conn, _ in entries:
            conn.close()


def exchange(pool: Pool, key: Hashable, connect: Callable, arm: Callable, method: str,
             path: str, body: bytes | None, headers: dict, idempotent: bool):
    """Send a request and read the status line and headers of its reply:
    ``(connection, response)``; the caller reads the body and hands both to
    :meth:`Pool.release`.

    ``connect()`` opens a fresh connection (ready for the request);
    ``arm(conn)`` prepares a kept one (its timeout).  A failure to connect
    or to send on a fresh connection is a :class:`urllib.error.URLError`,
    as urllib reports it; a failure while waiting for the reply is raised
    as is.  The rules for sending again are the module's.
    """
    conn = pool.take(key, None if idempotent else WRITE_IDLE)
    kept = conn is not None
    if kept:
        arm(conn)
    else:
        conn = _fresh(connect)
    while True:
        sent = False
        try:
            conn.request(method, path, body, headers)
            sent = True
            return conn, conn.getresponse()
        except LOST as exc:
            conn.close()
            if not kept or (sent and not idempotent):
                if sent:
                    raise
                raise urllib.error.URLError(exc) from None
        except BaseException as exc:
            conn.close()
            if not sent and isinstance(exc, OSError):
                raise urllib.error.URLError(exc) from None
            raise
        kept = False
        conn = _fresh(connect)


def _fresh(connect: Callable):
    try:
        return connect()
    except OSError as exc:
        raise urllib.error.URLError(exc) from None
