"""The local IDS: ids.server's REST API over a :class:`~.store.FileStore`.

It answers under ``/ids/`` on the same HTTP server as the local ICAT (see
:mod:`icatdump.soap.server`, which hands it every such request), and uses
that server's sessions and catalogue: an IDS session is an ICAT session,
and every catalogue call runs on the ICAT service's single worker thread.

What a client observes is ids.server's (2.x), as python-icat's ``icat.ids``
uses it: paths and parameters, reply bodies (``IdsOK``, JSON, plain text),
error bodies ``{"code": "<Exception class>", "message": ...}`` with that
exception's HTTP status, ``crc32`` checksums.  It behaves as a single-level
IDS (no archive storage): every file is ONLINE, prepared data is ready at
once, and archive, restore and write answer NotImplementedException.

Authorization: every request that touches data goes through
:meth:`IdsService.authorize` -- the one place for a check against the
catalogue's rules.  Today it allows everything, as the local ICAT does.

Memory: request and reply bodies are streamed a block at a time, never
read whole; selections are read from the catalogue a page at a time.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import urllib.parse
import uuid
import zipfile

from ..client import IcatError
from .local import put_datafile
from .store import BLOCK, BadLocation, FileStore

log = logging.getLogger(__name__)

PREFIX = "/ids/"
#: The ids.server version this one answers as (its ``version`` call).
VERSION = "2.1.1"
#: Largest form body (POST parameters) accepted.
MAX_FORM = 1024 * 1024
#: Datafiles read from the catalogue per search when a selection is resolved.
PAGE = 1000

_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
_IDS = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")


class IdsError(Exception):
    """An ids.server exception: its class name is the error code."""

    status = 500

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return type(self).__name__


class BadRequestException(IdsError):
    status = 400


class InsufficientPrivilegesException(IdsError):
    status = 403


class NotFoundException(IdsError):
    status = 404


class InternalException(IdsError):
    status = 500


class NotImplementedException(IdsError):
    status = 501


class DataNotOnlineException(IdsError):
    status = 503


def _from_icat(exc: IcatError) -> IdsError:
    """An ICAT error as ids.server reports it (its IcatException mapping)."""
    if exc.type in ("SESSION", "INSUFFICIENT_PRIVILEGES"):
        return InsufficientPrivilegesException(exc.message)
    if exc.type == "NO_SUCH_OBJECT_FOUND":
        return NotFoundException(exc.message)
    if exc.type in ("VALIDATION", "BAD_PARAMETER"):
        return BadRequestException(exc.message)
    return InternalException("%s %s" % (exc.type, exc.message))


class Selection:
    """The investigation, dataset and datafile ids of a request."""

    KINDS = (("investigationIds", "Investigation", "df.dataset.investigation.id"),
             ("datasetIds", "Dataset", "df.dataset.id"),
             ("datafileIds", "Datafile", "df.id"))

    def __init__(self, params: dict):
        self.ids: dict[str, list[int]] = {}
        for param, _, _ in self.KINDS:
            text = params.get(param)
            if text is None or text == "":
                self.ids[param] = []
                continue
            if not _IDS.match(text):
                raise BadRequestException(
                    "The %s parameter '%s' is not a valid string representation of a "
                    "comma separated list of longs" % (param, text))
            self.ids[param] = sorted({int(i) for i in text.split(",")})

    def as_dict(self) -> dict:
        return dict(self.ids)

    @classmethod
    def from_dict(cls, data: dict) -> "Selection":
        sel = cls({})
        sel.ids = {k: list(data.get(k, [])) for k, _, _ in cls.KINDS}
        return sel

    def must_zip(self) -> bool:
        """ids.server's rule: anything but exactly one datafile id is zipped."""
        ids = self.ids
        return len(ids["datafileIds"]) != 1 or bool(ids["datasetIds"] or ids["investigationIds"])

    def condition(self) -> str:
        parts = ["%s IN (%s)" % (path, ", ".join(map(str, self.ids[param])))
                 for param, _, path in self.KINDS if self.ids[param]]
        return "(%s)" % " OR ".join(parts) if parts else "(1 = 0)"


class IdsService:
    """ids.server's operations over ``store``, with ``icat``'s sessions and
    catalogue (an :class:`icatdump.soap.server.IcatService`)."""

    def __init__(self, icat, store: FileStore, readonly: bool = False):
        self.icat = icat
        self.store = store
        self.readonly = readonly
        self.prepared_dir = store.root / ".prepared"
        self.prepared_dir.mkdir(exist_ok=True)

    # -- the one place for authorization ------------------------------------------
    def authorize(self, user: str, action: str, what) -> None:
        """Raise InsufficientPrivilegesException if ``user`` may not do
        ``action`` ("read", "create", "delete") on ``what`` (a Dataset for
        create, else a list of Datafiles).  The local ICAT evaluates no
        rules yet, so every logged-in user may do everything."""

    # -- catalogue access -----------------------------------------------------------
    def _catalogue(self, user, fn, *args):
        try:
            return self.icat._call(user, fn, *args)
        except IcatError as exc:
            raise _from_icat(exc) from None

    def _user(self, sid, required=True) -> str | None:
        if sid is None and not required:
            return None
        if sid is None or not _UUID.match(sid):
            raise BadRequestException("The sessionId parameter '%s' is not a valid UUID" % sid)
        try:
            return self.icat.sessions.user(sid)
        except IcatError as exc:
            raise _from_icat(exc) from None

    def _check_exist(self, user, sel: Selection):
        client = self.icat.client
        for param, entity, _ in Selection.KINDS:
            wanted = sel.ids[param]
            for start in range(0, len(wanted), PAGE):
                part = wanted[start:start + PAGE]
                found = set(self._catalogue(user, client.search, "SELECT x.id FROM %s x WHERE "
                                            "x.id IN (%s)" % (entity, ", ".join(map(str, part)))))
                for i in part:
                    if i not in found:
                        raise NotFoundException("%s[id:%d] not found." % (entity, i))

    def _datafiles(self, user, sel: Selection, include=True):
        """The selection's Datafiles in id order, a page (one search) at a
        time, each with its dataset, investigation and facility."""
        client = self.icat.client
        last = 0
        while True:
            query = ("SELECT df FROM Datafile df WHERE %s AND df.id > %d ORDER BY df.id LIMIT 0, %d"
                     % (sel.condition(), last, PAGE))
            if include:
                query += " INCLUDE df.dataset.investigation.facility"
            page = self._catalogue(user, client.search, query)
            if not page:
                return
            yield page
            last = page[-1].id

    def _resolve(self, params, session_required=True):
        """``(user, Selection, zip, compress)`` of a request by preparedId
        or by sessionId and ids; the ids are checked to exist."""
        prepared = params.get("preparedId")
        if prepared is not None:
            data = self._prepared(prepared)
            return None, Selection.from_dict(data), data["zip"], data["compress"]
        user = self._user(params.get("sessionId"), session_required)
        sel = Selection(params)
        self._check_exist(user, sel)
        return user, sel, _flag(params, "zip"), _flag(params, "compress")

    def _prepared(self, prepared_id) -> dict:
        if not _UUID.match(prepared_id):
            raise BadRequestException("The preparedId parameter '%s' is not a valid UUID"
                                      % prepared_id)
        try:
            return json.loads((self.prepared_dir / prepared_id).read_text())
        except FileNotFoundError:
            raise NotFoundException("The preparedId %s is not known" % prepared_id) from None

    # -- operations -------------------------------------------------------------------
    def op_ping(self, req, params):
        return "IdsOK"

    def op_version(self, req, params):
        return {"version": VERSION}

    def op_getApiVersion(self, req, params):
        return VERSION

    def op_isReadOnly(self, req, params):
        return "true" if self.readonly else "false"

    def op_isTwoLevel(self, req, params):
        return "false"

    def op_getIcatUrl(self, req, params):
        return req.base_url()

    def op_getServiceStatus(self, req, params):
        self._user(params.get("sessionId"))
        return {"opsQueue": [], "lockCount": 0, "locks": [], "failures": []}

    def op_getSize(self, req, params):
        user, sel, _, _ = self._resolve(params)
        total = 0
        for page in self._datafiles(user, sel, include=False):
            self.authorize(user, "read", page)
            total += sum(df.values.get("fileSize") or 0 for df in page)
        return str(total)

    def op_getStatus(self, req, params):
        user, sel, _, _ = self._resolve(params, session_required=False)
        if user is not None:
            for page in self._datafiles(user, sel, include=False):
                self.authorize(user, "read", page)
        return "ONLINE"

    def op_getDatafileIds(self, req, params):
        user, sel, zip_, compress = self._resolve(params)
        ids = [df.id for page in self._datafiles(user, sel, include=False) for df in page]
        if "preparedId" in params:
            return {"zip": zip_, "compress": compress, "ids": ids}
        return {"ids": ids}

    def op_prepareData(self, req, params):
        user, sel, zip_, compress = self._resolve(params)
        for page in self._datafiles(user, sel, include=False):
            self.authorize(user, "read", page)
        prepared_id = str(uuid.uuid4())
        data = dict(sel.as_dict(), zip=zip_, compress=compress)
        tmp = self.store.tmp / prepared_id
        tmp.write_text(json.dumps(data))
        tmp.replace(self.prepared_dir / prepared_id)
        return prepared_id

    def op_isPrepared(self, req, params):
        self._prepared(params.get("preparedId"))
        return "true"       # single level: everything is online at once

    def op_reset(self, req, params):
        self._resolve(params)
        return None

    def _single_level(self, req, params):
        user, sel, _, _ = self._resolve(params)
        raise NotImplementedException("This operation is unavailable for single level storage")

    op_archive = op_restore = op_write = _single_level

    def op_delete(self, req, params):
        if self.readonly:
            raise NotImplementedException("This operation has been configured to be unavailable")
        user, sel, _, _ = self._resolve(params)
        client = self.icat.client
        while True:
            # The catalogue objects go first: a crash in between leaves a
            # stray file, never a Datafile without its file.
            page = next(self._datafiles(user, sel, include=False), [])
            if not page:
                return None
            self.authorize(user, "delete", page)
            self._catalogue(user, client.delete_many, page)
            for df in page:
                if df.values.get("location"):
                    try:
                        self.store.delete(df.values["location"])
                    except BadLocation:
                        pass        # never ours: nothing to remove

    def op_put(self, req, params):
        if self.readonly:
            raise NotImplementedException("This operation has been configured to be unavailable")
        user = self._user(params.get("sessionId"))
        name = params.get("name")
        if not name:
            raise BadRequestException("The name parameter must be set")
        format_id = _number(params, "datafileFormatId", required=True)
        dataset_id = _number(params, "datasetId", required=True)
        times = {key: _number(params, key) for key in ("datafileCreateTime", "datafileModTime")}
        client = self.icat.client
        dataset = self._catalogue(user, client.get, "Dataset", dataset_id)
        self.authorize(user, "create", dataset)
        fmt = self._catalogue(user, client.get, "DatafileFormat", format_id)
        try:
            df_id, crc = put_datafile(
                self.store, client, lambda df: self._catalogue(user, client.create, df),
                self.store.new_location(dataset_id), req.body_blocks(), name, dataset, fmt,
                params.get("description"), params.get("doi"), times)
        except BadLocation as exc:
            raise BadRequestException("Illegal filename or dataset: %s" % exc) from None
        return 201, {"id": df_id, "checksum": crc & 0xFFFFFFFF}

    def op_getData(self, req, params):
        user, sel, zip_, compress = self._resolve(params)
        offset = _range_offset(req.headers.get("Range"))
        zipped = zip_ or sel.must_zip()
        outname = params.get("outname")
        if not zipped:
            (page,) = list(self._datafiles(user, sel))
            df = page[0]
            self.authorize(user, "read", page)
            location = df.values.get("location")
            if not location or not self.store.exists(location):
                raise NotFoundException("One of the data files requested has been deleted")
            size = self.store.path(location).stat().st_size
            name = outname or df.values["name"]
            req.start_reply(206 if offset else 200, "application/octet-stream",
                            max(0, size - offset), _disposition(name))
            if offset < size:
                self.store.copy_to(location, req.wfile, offset)
            return None
        if outname:
            name = outname if outname.rpartition(".")[2] == "zip" else outname + ".zip"
        else:
            name = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S") + ".zip"
        # Every file must be there before the reply starts: a missing one
        # found halfway could only cut the zip short.
        for page in self._datafiles(user, sel, include=False):
            self.authorize(user, "read", page)
            for df in page:
                location = df.values.get("location")
                if not location or not self.store.exists(location):
                    raise NotFoundException("One of the data files requested has been deleted")
        req.start_reply(206 if offset else 200, "application/zip", None, _disposition(name))
        out = _Skip(req.wfile, offset)
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(out, "w", method) as zf:
            for page in self._datafiles(user, sel):
                for df in page:
                    with self.store.open(df.values["location"]) as src, \
                            zf.open(_zip_name(df), "w", force_zip64=True) as dst:
                        while True:
                            block = src.read(BLOCK)
                            if not block:
                                break
                            dst.write(block)
        return None

    # -- dispatch ---------------------------------------------------------------------
    METHODS = {"put": "PUT", "delete": "DELETE", "archive": "POST", "restore": "POST",
               "write": "POST", "reset": "POST", "prepareData": "POST"}

    def handle(self, req) -> None:
        """Answer one request; ``req`` is the HTTP handler (see
        :class:`Request`).  Errors become ids.server's JSON error bodies."""
        name = req.path[len(PREFIX):]
        method = getattr(self, "op_" + name, None) if re.match(r"^\w+$", name) else None
        if method is None:
            req.drain()
            return req.send(404, "text/plain", b"Not found\n")
        wanted = self.METHODS.get(name, "GET")
        if req.command != wanted:
            req.drain()
            return req.send(405, "text/plain", ("Use %s for %s\n" % (wanted, name)).encode())
        try:
            params = req.params()
            result = method(req, params)
        except IdsError as exc:
            return self._error(req, exc)
        except IcatError as exc:
            return self._error(req, _from_icat(exc))
        except Exception as exc:  # noqa: BLE001 - report, don't kill the server
            if req.started:
                raise
            log.exception("internal error in IDS operation %s", name)
            return self._error(req, InternalException("%s: %s" % (type(exc).__name__, exc)))
        if req.started:
            return None
        status = 200
        if isinstance(result, tuple):
            status, result = result
        if result is None:
            req.drain()
            return req.send(204, "text/plain", b"")
        if isinstance(result, dict):
            return req.send(status, "application/json", json.dumps(result).encode())
        return req.send(status, "text/plain", str(result).encode("utf-8"))

    @staticmethod
    def _error(req, exc: IdsError):
        if req.started:
            raise exc
        req.drain()
        body = json.dumps({"code": exc.code, "message": exc.message}).encode("utf-8")
        return req.send(exc.status, "application/json", body)


def _flag(params, name) -> bool:
    return (params.get(name) or "").lower() == "true"


def _number(params, name, required=False):
    text = params.get(name)
    if text is None:
        if required:
            raise BadRequestException("The %s parameter must be set" % name)
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequestException("The %s parameter must be numeric" % name) from None


def _range_offset(header) -> int:
    if not header:
        return 0
    m = re.match(r"^bytes=(\d+)-$", header.strip())
    if not m:
        raise BadRequestException("The range must match bytes=(\\d+)-")
    return int(m.group(1))


def _disposition(name: str) -> str:
    """ids.server's Content-Disposition for a plain ASCII name.  Any other
    name also goes as RFC 6266's ``filename*`` (UTF-8, percent-encoded),
    with ``_`` for its other characters in ``filename``: a header is
    Latin-1 on the wire (http.server refuses anything else), and a line
    break in a name must not end the header."""
    name = name.replace('"', "")
    plain = "".join(c if " " <= c <= "~" else "_" for c in name)
    header = 'attachment; filename="%s"' % plain
    if plain != name:
        header += "; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    return header


def _zip_name(df) -> str:
    """ids/<facility>/<investigation>/<visit>/<dataset>/<file>, as ids.server's
    default zip mapper lays an archive out."""
    ds = df.values["dataset"]
    inv = ds.values["investigation"]
    return "/".join(["ids", inv.values["facility"].values["name"], inv.values["name"],
                     inv.values["visitId"], ds.values["name"], df.values["name"]])


class _Skip:
    """A write-only stream that drops its first ``offset`` bytes (a Range
    request on a zip that is made on the fly)."""

    def __init__(self, out, offset):
        self.out, self.offset = out, offset

    def write(self, data):
        n = len(data)
        if self.offset:
            if n <= self.offset:
                self.offset -= n
                return n
            data, self.offset = data[self.offset:], 0
        self.out.write(data)
        return n

    def flush(self):
        self.out.flush()


class Request:
    """What :class:`IdsService` needs of one HTTP request, over the
    ``BaseHTTPRequestHandler`` that received it."""

    def __init__(self, handler, tls: bool):
        self.h = handler
        self.tls = tls
        url = urllib.parse.urlsplit(handler.path)
        self.path = url.path
        self.query = url.query
        self.command = handler.command
        self.headers = handler.headers
        self.wfile = handler.wfile
        self.started = False
        self._body_read = False

    def base_url(self) -> str:
        host = self.headers.get("Host") or "%s:%d" % self.h.server.server_address[:2]
        return "%s://%s" % ("https" if self.tls else "http", host)

    def params(self) -> dict:
        """Query parameters, and for a form POST the form's too (first value wins)."""
        pairs = urllib.parse.parse_qsl(self.query, keep_blank_values=True)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.command == "POST" and ctype == "application/x-www-form-urlencoded":
            length = self._length()
            if length is None or length > MAX_FORM:
                raise BadRequestException("The form must have a Content-Length of at most %d"
                                          % MAX_FORM)
            self._body_read = True
            pairs += urllib.parse.parse_qsl(self.h.rfile.read(length).decode("utf-8", "replace"),
                                            keep_blank_values=True)
        out: dict[str, str] = {}
        for key, value in pairs:
            out.setdefault(key, value)
        return out

    def _length(self):
        try:
            return int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None

    def body_blocks(self):
        """The request body a block at a time (chunked or Content-Length)."""
        self._body_read = True
        rfile = self.h.rfile
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                line = rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.h.close_connection = True
                    raise BadRequestException("Malformed chunked request body") from None
                if size == 0:
                    while rfile.readline(1024).strip():
                        pass        # trailers
                    return
                yield from self._exactly(size)
                rfile.readline(3)
        else:
            yield from self._exactly(self._length() or 0)

    def _exactly(self, n):
        rfile = self.h.rfile
        while n > 0:
            block = rfile.read(min(BLOCK, n))
            if not block:
                self.h.close_connection = True
                raise ConnectionError("the client closed the connection mid-request")
            n -= len(block)
            yield block

    def drain(self):
        """Read and drop an unread body, so the connection can be reused;
        one that cannot be read cleanly closes it."""
        if self._body_read:
            return
        if self._length() is None and "chunked" not in (
                self.headers.get("Transfer-Encoding") or "").lower():
            return
        try:
            for _ in self.body_blocks():
                pass
        except (IdsError, ConnectionError):
            self.h.close_connection = True

    def start_reply(self, status, ctype, length, disposition=None):
        """Send the status line and headers of a streamed reply; without a
        length the connection closes at its end."""
        self.drain()
        h = self.h
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Accept-Ranges", "bytes")
        if disposition:
            h.send_header("Content-Disposition", disposition)
        if length is None:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(length))
        h.end_headers()
        self.started = True

    def send(self, status, ctype, body: bytes):
        self.start_reply(status, ctype, len(body))
        self.wfile.write(body)
