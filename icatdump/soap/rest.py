"""icat.server's REST resources under ``/icat`` that the local server has:
``port`` (export and import, the format is :mod:`icatdump.port`) and
``version``.

What a client observes is icat.server's (``ICATRest.exportData`` and
``importData``, ``Porter``): ``GET /icat/port?json={"sessionId":...,
"query":..., "attributes":"USER"|"ALL"}`` answers the file as
``text/plain`` (an attachment named ``icat.export``), or 204 for a query
that selects no objects; ``POST /icat/port`` takes a multipart form, a
``json`` field (sessionId, duplicate, attributes) and then the file, and
answers 204.  Errors are icat.server's JSON bodies ``{"code": <ICAT
exception type>, "message": ..., "offset": <line>}`` with the type's HTTP
status; python-icat's ``translateError`` reads them.

Authorization is the catalogue's, as the session's user: an export holds
the objects that user may read (a root user: all), each reference written
by key whether or not the user may read its target, as icat.server writes
it; an import creates as that user, so the catalogue's CREATE rules
decide, and only a root user may import with ``attributes=ALL``.

An import is one transaction of the catalogue (all or nothing), through
the ingest engine and its duplicate modes.  Both directions spool the file
to a temporary file, so the catalogue worker never waits for the network
and memory stays bounded.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import tempfile

from ..client import IcatError
from ..errors import DataFileError, ValueProblem
from ..ids.server import Request
from ..ingest import DUPLICATE_MODES, Ingester
from ..port import PortReader, collect_ids, export

log = logging.getLogger(__name__)

PREFIX = "/icat/"

#: HTTP status of each ICAT exception type (icat.server's IcatExceptionType).
STATUS = {"BAD_PARAMETER": 400, "INTERNAL": 500, "INSUFFICIENT_PRIVILEGES": 403,
          "NO_SUCH_OBJECT_FOUND": 404, "OBJECT_ALREADY_EXISTS": 412, "SESSION": 403,
          "VALIDATION": 412, "NOT_IMPLEMENTED": 501}

#: Ids of one type read as the exporting user per search.
ID_PAGE = 1000
#: Largest form field (the json) and header line of a multipart body.
MAX_FIELD = 1024 * 1024
_LINE = 64 * 1024
_BLOCK = 1024 * 1024


class RestError(Exception):
    """An answer in icat.server's error shape."""

    def __init__(self, type_: str, message: str, offset: int | None = None):
        super().__init__(message)
        self.type, self.message, self.offset = type_, message, offset


class RestService:
    """The ``/icat`` resources over an :class:`~icatdump.soap.server.IcatService`
    (its sessions, its catalogue and the single worker thread)."""

    def __init__(self, icat):
        self.icat = icat

    # -- dispatch -----------------------------------------------------------------
    def handle(self, req: Request) -> None:
        name = req.path[len(PREFIX):]
        try:
            if name == "port" and req.command == "GET":
                return self.export(req)
            if name == "port" and req.command == "POST":
                return self.import_(req)
            if name == "version" and req.command == "GET":
                body = json.dumps({"version": self.icat.apiversion}).encode()
                return req.send(200, "application/json", body)
        except RestError as exc:
            return self._error(req, exc)
        except IcatError as exc:
            return self._error(req, RestError(exc.type, exc.message))
        req.drain()
        return req.send(404, "text/plain", b"Not found\n")

    @staticmethod
    def _error(req: Request, exc: RestError) -> None:
        if req.started:
            raise exc
        req.drain()
        body: dict = {"code": exc.type, "message": exc.message}
        if exc.offset is not None and exc.offset >= 0:
            body["offset"] = exc.offset
        return req.send(STATUS.get(exc.type, 500), "application/json",
                        json.dumps(body).encode("utf-8"))

    def _json(self, text: str | None, keys: tuple) -> dict:
        """The ``json`` parameter: its keys as icat.server accepts them."""
        if text is None:
            raise RestError("BAD_PARAMETER", "json must not be null")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RestError("BAD_PARAMETER", "json is not valid JSON: %s" % exc) from None
        if not isinstance(data, dict):
            raise RestError("BAD_PARAMETER", "json must be a JSON object")
        out = {}
        for key, value in data.items():
            if key not in keys:
                raise RestError("BAD_PARAMETER", "%s is not an expected key in the json" % key)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                out[key] = str(value)
        for key, allowed in (("attributes", ("ALL", "USER")), ("duplicate", DUPLICATE_MODES)):
            if key in out:
                if out[key].upper() not in allowed:
                    raise RestError("BAD_PARAMETER", "%s is not a valid value for '%s'"
                                    % (out[key], key))
                out[key] = out[key].upper()
        return out

    # -- export -------------------------------------------------------------------
    def export(self, req: Request) -> None:
        params = self._json(req.params().get("json"), ("sessionId", "query", "attributes"))
        user = self.icat.sessions.user(params.get("sessionId"))
        all_attributes = params.get("attributes") == "ALL"
        with tempfile.TemporaryFile() as spool:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="\n")
            wrote = self.icat._call(user, self._export, text, user, params.get("query"),
                                    all_attributes)
            text.flush()
            if not wrote:
                req.drain()
                return req.send(204, "text/plain", b"")
            size = spool.tell()
            spool.seek(0)
            req.start_reply(200, "text/plain", size, 'attachment; filename="icat.export"')
            shutil.copyfileobj(spool, req.wfile, _BLOCK)
            text.detach()
        return None

    def _export(self, out, user: str, query: str | None, all_attributes: bool) -> bool:
        """On the catalogue worker: the file into ``out``, from one state of
        the catalogue; False when a query selects no objects."""
        client = self.icat.client
        as_user = hasattr(client, "user")

        def search(q, who):
            if as_user:
                client.user = who
            return client.search(q)

        def readable_ids(name):
            last = 0
            while True:
                page = search("SELECT o.id FROM %s o WHERE o.id > %d ORDER BY o.id LIMIT 0, %d"
                              % (name, last, ID_PAGE), user)
                if page:
                    yield page
                if len(page) < ID_PAGE:
                    return
                last = page[-1]

        with client.snapshot():
            only = None
            if query is not None:
                only = collect_ids(search(query, user))
                if not only:
                    return False
            export(out, client.schema, user, readable_ids, lambda q: search(q, None),
                   client.max_entities, all_attributes, self.icat.timezone, only)
        return True

    # -- import -------------------------------------------------------------------
    def import_(self, req: Request) -> None:
        ctype = req.headers.get("Content-Type") or ""
        m = re.match(r'\s*multipart/form-data\s*;.*?boundary\s*=\s*("?)([^";]+)\1', ctype, re.I)
        if m is None:
            raise RestError("BAD_PARAMETER", "Multipart content expected")
        boundary = m.group(2).strip().encode("latin-1")
        body = io.BufferedReader(_Blocks(req.body_blocks()), _BLOCK)
        json_text = None
        try:
            for name, filename, spool in _parts(body, boundary):
                if filename is None:
                    if name != "json":
                        spool.close()
                        raise RestError("BAD_PARAMETER",
                                        "Form field '%s' is not recognised" % name)
                    json_text = spool.read().decode("utf-8", "replace")
                    spool.close()
                    continue
                with spool:
                    self._import_file(json_text, spool)
        except (RestError, IcatError):
            # What is left of the body goes, so that the connection can
            # take the next request.
            while body.read(_BLOCK):
                pass
            raise
        req.send(204, "text/plain", b"")

    def _import_file(self, json_text, spool) -> None:
        params = self._json(json_text, ("sessionId", "duplicate", "attributes"))
        user = self.icat.sessions.user(params.get("sessionId"))
        all_attributes = params.get("attributes") == "ALL"
        if all_attributes and not self.icat.sessions.is_root(user):
            raise RestError("INSUFFICIENT_PRIVILEGES",
                            "Only root users may import with Attributes.ALL")
        client = self.icat.client
        if not hasattr(client, "keeping_audit"):
            raise RestError("NOT_IMPLEMENTED", "This catalogue cannot import")
        text = io.TextIOWrapper(spool, encoding="utf-8", errors="strict")
        reader = PortReader(client, text, all_attributes, self.icat.timezone)
        self.icat._call(user, self._ingest, reader, params.get("duplicate", "THROW"),
                        all_attributes)

    @staticmethod
    def _ingest(reader: PortReader, duplicate: str, all_attributes: bool) -> None:
        """On the catalogue worker: the whole file in one transaction."""
        client = reader.client
        try:
            with client.transaction():
                if all_attributes:
                    with getattr(client, "keeping_audit")():
                        Ingester(client, reader, duplicate).run()
                else:
                    Ingester(client, reader, duplicate).run()
        except DataFileError as exc:
            line = exc.line or reader.lines.get(exc.key or "") or reader.lineno
            raise _at_line(exc.icat_type or "BAD_PARAMETER", exc.one_line_cause(), line) \
                from None
        except IcatError as exc:
            raise _at_line(exc.type, exc.message, reader.lineno) from None
        except (ValueProblem, UnicodeDecodeError) as exc:
            raise _at_line("BAD_PARAMETER", " ".join(str(exc).split()),
                           reader.lineno) from None


def _at_line(type_: str, message: str, line: int) -> RestError:
    """icat.server's import error: the cause, ``at line N``, offset N."""
    head, sep, rest = message.partition(": ")
    if sep and head in STATUS:
        message = rest          # the engine's "TYPE: message"
    return RestError(type_, "%s at line %d" % (message, line), line)


class _Blocks(io.RawIOBase):
    """A raw stream over an iterator of byte blocks (a request body)."""

    def __init__(self, blocks):
        self._blocks = iter(blocks)
        self._rest = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._rest:
            self._rest = next(self._blocks, b"")
            if not self._rest:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _parts(body, boundary: bytes):
    """``(name, filename or None, spooled content)`` for each part of a
    multipart body, read a line at a time; each content is a temporary
    file positioned at its start (form fields are at most MAX_FIELD)."""
    delimiter = b"--" + boundary
    while True:                          # the preamble
        line = body.readline(_LINE)
        if not line:
            raise RestError("BAD_PARAMETER", "Multipart content expected")
        if line.rstrip(b"\r\n") == delimiter:
            break
    while True:
        headers = {}
        for _ in range(100):
            line = body.readline(_LINE)
            if not line:
                raise RestError("BAD_PARAMETER", "Multipart content ends in a part's headers")
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        fname = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        spool = tempfile.TemporaryFile()
        size, pending, at_start, last = 0, b"", True, False
        while True:
            line = body.readline(_LINE)
            if not line:
                spool.close()
                raise RestError("BAD_PARAMETER", "Multipart content ends before its last "
                                "boundary")
            if at_start and line.startswith(delimiter):
                tail = line[len(delimiter):].rstrip(b"\r\n")
                if tail in (b"", b"--"):
                    last = tail == b"--"
                    break
            data = pending + line
            pending = b""
            if data.endswith(b"\r\n"):
                data, pending = data[:-2], b"\r\n"
            elif data.endswith(b"\n"):
                data, pending = data[:-1], b"\n"
            at_start = line.endswith(b"\n")
            size += len(data)
            if filename is None and size > MAX_FIELD:
                spool.close()
                raise RestError("BAD_PARAMETER", "Form field larger than %d bytes" % MAX_FIELD)
            spool.write(data)
        spool.seek(0)
        yield (fname.group(1) if fname else ""), \
            (filename.group(1) if filename else None), spool
        if last:
            return
