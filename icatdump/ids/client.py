"""A small client of an ICAT Data Service, for ``icatingest --upload-datafiles``.

Only what an upload and ``icatdump --with-data`` need: ``version`` (is it
an IDS at all), ``put`` (the file streamed from disk a block at a time with
a Content-Length, its CRC32 computed on the way), ``get_data`` (one file,
streamed) and ``delete`` (to take back an upload whose checksum does not
match).  An IDS error reply (``{"code": ..., "message": ...}``)
becomes :class:`IdsServerError`; a connection problem a ServerError (both exit 3).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import zlib

from ..errors import ServerError
from .store import BLOCK, blocks_of, copy_counted

#: Largest reply body read (replies of put, version and errors are small).
MAX_REPLY = 1024 * 1024


class IdsServerError(ServerError):
    """An error reply of the IDS: ``code`` is ids.server's exception name.

    A server's refusal (exit 3) unless the uploader turns it into a problem
    of the data file (a datafile's own put refused with a 4xx)."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__("%s: %s" % (code, message))
        self.code, self.message, self.status = code, message, status


class IdsClient:
    """The IDS at ``url`` (e.g. ``https://host:8181/ids``), used with an
    ICAT session id (read from ``session()`` at each call: it may be renewed)."""

    def __init__(self, url: str, session, context=None, timeout: float = 600.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("idsurl %r is not an http(s) URL" % url)
        self.url = url
        self._parts = parts
        self._base = parts.path.rstrip("/") + "/"
        self._session = session
        self._context = context
        self._timeout = timeout

    def _connection(self):
        # http.client sends a file body in pieces of ``blocksize`` (8 KiB
        # unless told): a BLOCK each is an eighth of the calls.
        p = self._parts
        if p.scheme == "https":
            return http.client.HTTPSConnection(p.hostname, p.port, timeout=self._timeout,
                                               context=self._context, blocksize=BLOCK)
        return http.client.HTTPConnection(p.hostname, p.port, timeout=self._timeout,
                                          blocksize=BLOCK)

    def _request(self, method, op, params=None, body=None, headers=None) -> bytes:
        target = self._base + op + ("?" + urllib.parse.urlencode(params) if params else "")
        conn = self._connection()
        try:
            try:
                conn.request(method, target, body=body, headers=headers or {})
                reply = conn.getresponse()
                data = reply.read(MAX_REPLY)
            except (OSError, http.client.HTTPException) as exc:
                raise ServerError("IDS %s: %s: %s" % (self.url, op, exc)) from None
        finally:
            conn.close()
        if reply.status >= 400:
            try:
                err = json.loads(data)
                raise IdsServerError(err["code"], err["message"], reply.status)
            except (ValueError, KeyError, TypeError):
                raise ServerError("IDS %s: %s: HTTP %d %s" % (
                    self.url, op, reply.status, reply.reason)) from None
        return data

    def version(self) -> str:
        try:
            return json.loads(self._request("GET", "version"))["version"]
        except (ValueError, KeyError, TypeError):
            raise ServerError("%s does not answer as an IDS" % self.url) from None

    def put(self, fileobj, size: int, name: str, dataset_id: int, format_id: int,
            **optional) -> tuple[int, int, int]:
        """Upload ``size`` bytes of ``fileobj`` as a new Datafile.

        Returns ``(datafile id, crc32 sent, crc32 the IDS computed)``.
        ``optional``: description, doi, datafileCreateTime/ModTime (ms).
        """
        params = {"sessionId": self._session(), "name": name, "datasetId": str(dataset_id),
                  "datafileFormatId": str(format_id)}
        params.update({k: str(v) for k, v in optional.items() if v not in (None, "")})
        reader = _Crc(fileobj, size)
        data = self._request("PUT", "put", params, body=reader, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if reader.sent != size:
            raise ServerError("%s changed size while it was uploaded" % name)
        try:
            reply = json.loads(data)
            return int(reply["id"]), reader.crc, int(reply["checksum"])
        except (ValueError, KeyError, TypeError):
            raise ServerError("IDS %s: put: unexpected reply %r" % (self.url, data[:200])) \
                from None

    def get_data(self, datafile_id: int, out) -> tuple[int, int]:
        """Write one datafile's content to ``out`` a block at a time;
        returns ``(size, crc32)`` of what arrived."""
        params = {"sessionId": self._session(), "datafileIds": str(datafile_id)}
        conn = self._connection()
        try:
            try:
                conn.request("GET", self._base + "getData?" + urllib.parse.urlencode(params))
                reply = conn.getresponse()
                if reply.status >= 400:
                    data = reply.read(MAX_REPLY)
                else:
                    return copy_counted(blocks_of(reply), out)
            except (OSError, http.client.HTTPException) as exc:
                raise ServerError("IDS %s: getData: %s" % (self.url, exc)) from None
        finally:
            conn.close()
        try:
            err = json.loads(data)
            raise IdsServerError(err["code"], err["message"], reply.status)
        except (ValueError, KeyError, TypeError):
            raise ServerError("IDS %s: getData: HTTP %d %s" % (
                self.url, reply.status, reply.reason)) from None

    def delete(self, datafile_ids) -> None:
        self._request("DELETE", "delete", {"sessionId": self._session(),
                                           "datafileIds": ",".join(map(str, datafile_ids))})


class _Crc:
    """A file read a block at a time for http.client, at most ``size``
    bytes, with the CRC32 of what went out."""

    def __init__(self, fileobj, size):
        self.f, self.left, self.crc, self.sent = fileobj, size, 0, 0

    def read(self, n=-1):
        n = BLOCK if n is None or n < 0 else min(n, BLOCK)
        block = self.f.read(min(n, self.left))
        self.left -= len(block)
        self.sent += len(block)
        self.crc = zlib.crc32(block, self.crc)
        return block
