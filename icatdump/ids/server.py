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

Authorization is ids.server's: the IDS asks the catalogue, as the
session's user, and the catalogue applies its rules (``store/authz.py``).
:meth:`IdsService.authorize` checks a selection as ids.server's
``DataSelection`` does; ``put`` creates the Datafile as the user, so ICAT's
CREATE rule decides; ``delete`` needs DELETE on every Datafile before any
file goes.  Prepared data keeps the datafile ids the user could read when
it was prepared and is served on behalf of no session, as ids.server
serves it with its reader account.

Files: ``put`` stores a file before its Datafile is created and
``delete`` deletes the Datafiles before their files, each location written
first to the upload journal (:class:`~.local.UploadJournal`), which the
service sweeps when it is made, before the server accepts a request: a
server killed in between leaves no file that no Datafile names.

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
from .local import UploadJournal, put_datafile
from .store import BLOCK, BadLocation, FileStore

log = logging.getLogger(__name__)

PREFIX = "/ids/"
#: The ids.server version this one answers as (its ``version`` call).
VERSION = "2.1.1"
#: Largest form body (POST parameters) accepted.
MAX_FORM = 1024 * 1024
#: Datafiles read from the catalogue per search when a selection is resolved.
PAGE = 1000

#: A header value http.server can send: Latin-1, no line break.
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\xa0-\xff\t]*$")
_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
_ID_SEPARATOR = re.compile(r"\s*,\s*")
_JAVA_LONG = re.compile(r"[+-]?\d+")


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
    return _internal(exc)


def _internal(exc: IcatError) -> IdsError:
    """An ICAT error that ids.server reports as its own failure."""
    return InternalException("%s %s" % (exc.type, exc.message))


def _valid_ids(param: str, text: str | None) -> list[int]:
    """The ids of a ``*Ids`` parameter as ids.server's
    ``DataSelection.getValidIds`` reads them: split at commas with the
    blanks around them (Java's ``split``, which drops trailing empty
    parts only), each part a ``Long.parseLong`` -- a sign allowed, no
    blank, within a Java long; an empty parameter is one empty part."""
    if text is None:
        return []
    parts = _ID_SEPARATOR.split(text)
    if len(parts) > 1:
        while parts and parts[-1] == "":
            parts.pop()
    ids = []
    for part in parts:
        value = int(part) if _JAVA_LONG.fullmatch(part) else None
        if value is None or not -2 ** 63 <= value < 2 ** 63:
            raise BadRequestException(
                "The %s parameter '%s' is not a valid string representation of a "
                "comma separated list of longs" % (param, text))
        ids.append(value)
    return ids


class Selection:
    """The investigation, dataset and datafile ids of a request."""

    KINDS = (("investigationIds", "Investigation", "df.dataset.investigation.id"),
             ("datasetIds", "Dataset", "df.dataset.id"),
             ("datafileIds", "Datafile", "df.id"))

    def __init__(self, params: dict):
        self.ids: dict[str, list[int]] = {}
        for param, _, _ in self.KINDS:
            self.ids[param] = sorted(set(_valid_ids(param, params.get(param))))

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

    def count(self) -> int:
        return sum(len(ids) for ids in self.ids.values())


#: The datafiles of a selection as a user may read them: a JOIN variable is
#: limited by the user's READ rules (icat.server's search), so a Datafile
#: counts only with its Dataset readable too; a Datafile without a location
#: has no file (ids.server leaves it out).
_SELECTED = ("FROM Datafile df JOIN df.dataset ds WHERE %s AND df.location IS NOT NULL")


class Prepared:
    """A prepared selection in ``.prepared/<id>``: a first line
    ``{"zip": .., "compress": ..}``, then the datafile ids the user could
    read at prepareData, one JSON list (a page) per line -- read a line at a
    time, as they are written.  A file of an earlier version holds the
    selection itself (one line with its ids), resolved on behalf of no one."""

    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            head = json.loads(f.readline())
        self.zip = bool(head["zip"])
        self.compress = bool(head["compress"])
        self.selection = Selection.from_dict(head) if "datafileIds" in head else None

    def must_zip(self) -> bool:
        # ids.server stores zip as mustZip made it at prepareData.
        return self.selection.must_zip() if self.selection is not None else False

    def id_pages(self):
        with open(self.path, encoding="utf-8") as f:
            f.readline()
            for line in f:
                yield json.loads(line)


class IdsService:
    """ids.server's operations over ``store``, with ``icat``'s sessions and
    catalogue (an :class:`icatdump.soap.server.IcatService`)."""

    def __init__(self, icat, store: FileStore, readonly: bool = False):
        self.icat = icat
        self.store = store
        self.readonly = readonly
        self.prepared_dir = store.root / ".prepared"
        self.prepared_dir.mkdir(exist_ok=True)
        # Each create commits at once: a location settles when put or
        # delete is done with it.  The sweep runs before any request.
        self.journal = UploadJournal(
            store, lambda jpql: icat._call(None, icat.client.search, jpql), settles=True)
        self.journal.sweep()

    def close(self) -> None:
        """The server stops: its journal goes, unless a put or delete is
        still in flight (then the next start sweeps it)."""
        self.journal.close()

    # -- the one place for authorization ------------------------------------------
    def authorize(self, user: str | None, sel: Selection, access: str = "READ") -> Selection:
        """Check ``sel`` as ids.server's DataSelection does, asking the
        catalogue as ``user`` (None: on behalf of no one, as ids.server's
        reader account), and return it with the investigations ``user``
        cannot read left out.

        A datafile id is a 404 ``NotFoundException`` when no Datafile has it,
        a 403 ``InsufficientPrivilegesException`` when the user may not read
        it (ICAT's get), a 404 ``"Datafile <id>"`` when they may but not its
        Dataset, or it has no location.  A dataset id is ICAT's get: 404 or
        403.  An investigation id is never an error: one that does not exist
        or the user cannot read selects nothing.  Within a dataset or an
        investigation, Datafiles and Datasets the user cannot read are left
        out silently (ICAT's search).  ``access="DELETE"`` also needs DELETE
        on every Datafile selected, checked before anything is deleted.
        One search per 1000 ids of each kind; the error path asks more.
        """
        client = self.icat.client
        for part in _pages(sel.ids["datafileIds"]):
            ok = set(self._catalogue(user, client.search, "SELECT df.id " + _SELECTED % (
                "df.id IN (%s)" % _join(part))))
            for i in part:
                if i not in ok:
                    self._catalogue(user, client.get, "Datafile", i)    # ICAT's 404 or 403
                    raise NotFoundException("Datafile %d" % i)
        for part in _pages(sel.ids["datasetIds"]):
            ok = set(self._catalogue(user, client.search, "SELECT ds.id FROM Dataset ds "
                                     "WHERE ds.id IN (%s)" % _join(part)))
            for i in part:
                if i not in ok:
                    self._catalogue(user, client.get, "Dataset", i)
                    raise NotFoundException("Dataset %d" % i)
        readable = []
        for part in _pages(sel.ids["investigationIds"]):
            readable += self._catalogue(user, client.search, "SELECT inv.id FROM Investigation "
                                        "inv WHERE inv.id IN (%s) ORDER BY inv.id" % _join(part))
        sel = Selection.from_dict(dict(sel.ids, investigationIds=readable))
        check = getattr(client, "check_access", None)
        if access != "READ" and check is not None:
            for ids in self._datafile_ids(user, sel):
                self._catalogue(user, check, access, "Datafile", ids)
        return sel

    # -- catalogue access -----------------------------------------------------------
    def _catalogue(self, user, fn, *args):
        try:
            return self.icat._call(user, fn, *args)
        except IcatError as exc:
            raise _from_icat(exc) from None

    @staticmethod
    def _session(params, required=True) -> str | None:
        """The request's sessionId, which must be a UUID: ids.server checks
        that before anything else, the session itself only when it first
        asks ICAT (see :meth:`_user`).  None: absent where it may be."""
        sid = params.get("sessionId")
        if sid is None and not required:
            return None
        _check_uuid("sessionId", sid)
        return sid

    def _user(self, sid, unknown=_from_icat) -> str:
        """The user of the session ``sid``.  One unknown or expired is
        ICAT's SESSION error where ids.server first asks ICAT with it,
        and reported as that call's errors are: 403
        ``InsufficientPrivilegesException`` everywhere but ``getSize`` of
        one id, which passes ``unknown=_internal`` (500)."""
        try:
            return self.icat.sessions.user(sid)
        except IcatError as exc:
            raise unknown(exc) from None

    def _datafile_ids(self, user, sel: Selection):
        """The ids of the selection's Datafiles ``user`` may read, in id
        order, a page (one search) at a time.  A page that is not full is
        the last (the catalogue applies the user's rules before the LIMIT),
        so a request needs no search that finds nothing."""
        client = self.icat.client
        last = 0
        while True:
            page = self._catalogue(user, client.search, "SELECT df.id " + _SELECTED % (
                "%s AND df.id > %d" % (sel.condition(), last)) + " ORDER BY df.id LIMIT 0, %d"
                % PAGE)
            if page:
                yield page
            if len(page) < PAGE:
                return
            last = page[-1]

    def _id_pages(self, user, what):
        if isinstance(what, Prepared):
            if what.selection is not None:
                yield from self._datafile_ids(None, what.selection)
            else:
                yield from what.id_pages()
        else:
            yield from self._datafile_ids(user, what)

    def _datafiles(self, user, what, include=True):
        """The Datafiles of ``what`` (an authorized Selection or a Prepared)
        in id order, a page at a time, each with its dataset, investigation
        and facility: the ids as ``user`` may read them, then the objects
        read on behalf of no one, as ids.server reads a selection it has
        checked (its includes are not the user's to see)."""
        client = self.icat.client
        for ids in self._id_pages(user, what):
            query = "SELECT df FROM Datafile df WHERE df.id IN (%s) ORDER BY df.id" % _join(ids)
            if include:
                query += " INCLUDE df.dataset.investigation.facility"
            page = self._catalogue(None, client.search, query)
            if len(page) != len(ids):
                raise NotFoundException("One of the data files requested has been deleted")
            yield page

    def _resolve(self, params, session_required=True):
        """``(user, selection, zip, compress)`` of a request: a
        :class:`Prepared` by preparedId, or by sessionId and ids an
        authorized :class:`Selection`."""
        prepared = params.get("preparedId")
        if prepared is not None:
            data = self._prepared(prepared)
            return None, data, data.zip, data.compress
        sid = self._session(params, session_required)
        sel = Selection(params)
        user = self._user(sid) if sid is not None else None
        sel = self.authorize(user, sel)
        return user, sel, _flag(params, "zip"), _flag(params, "compress")

    def _prepared(self, prepared_id) -> Prepared:
        _check_uuid("preparedId", prepared_id)
        try:
            return Prepared(self.prepared_dir / prepared_id)
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
        # ids.server asks ICAT for the user name at once, no UUID check.
        user = self._user(params.get("sessionId"))
        if not self.icat.sessions.is_root(user):
            raise InsufficientPrivilegesException(
                "%s is not included in the ids rootUserNames set." % user)
        return {"opsQueue": [], "lockCount": 0, "locks": [], "failures": []}

    def op_getSize(self, req, params):
        client = self.icat.client
        total = 0
        if "preparedId" in params:
            for ids in self._id_pages(None, self._prepared(params["preparedId"])):
                total += self._size(None, "df.id IN (%s)" % _join(ids))
            return str(total)
        sid = self._session(params)
        sel = Selection(params)
        if sel.count() != 1:
            user = self._user(sid)
            sel = self.authorize(user, sel)
            return str(self._size(user, sel.condition(), join=True))
        # ids.server's "fast computation" of one id: the size of what the
        # user may read of it, a search whose failure, an unknown session
        # included, is an InternalException; when that is 0, any refusal
        # of ICAT's get is a NotFoundException.
        user = self._user(sid, _internal)
        ((param, entity, path),) = [k for k in Selection.KINDS if sel.ids[k[0]]]
        (one,) = sel.ids[param]
        total = self._size(user, "%s = %d" % (path, one))
        if not total:
            try:
                obj = self.icat._call(user, client.get, entity, one)
            except IcatError as exc:
                raise NotFoundException(exc.message) from None
            if entity == "Datafile" and not obj.values.get("location"):
                raise NotFoundException("Datafile not found")
        return str(total)

    def _size(self, user, condition, join=False) -> int:
        """The sum of the fileSizes of the Datafiles with a location that
        match ``condition`` and ``user`` may read, in one search."""
        query = ("SELECT SUM(df.fileSize) " + _SELECTED % condition if join else
                 "SELECT SUM(df.fileSize) FROM Datafile df WHERE %s AND df.location IS NOT NULL"
                 % condition)
        result = self._catalogue(user, self.icat.client.search, query)
        return int(result[0] or 0) if result else 0

    def op_getStatus(self, req, params):
        self._resolve(params, session_required=False)
        return "ONLINE"

    def op_getDatafileIds(self, req, params):
        user, what, zip_, compress = self._resolve(params)
        ids = [i for page in self._id_pages(user, what) for i in page]
        if isinstance(what, Prepared):
            return {"zip": zip_, "compress": compress, "ids": ids}
        return {"ids": ids}

    def op_prepareData(self, req, params):
        sid = self._session(params)
        sel = Selection(params)
        user = self._user(sid)
        sel = self.authorize(user, sel)
        prepared_id = str(uuid.uuid4())
        head = {"zip": _flag(params, "zip") or sel.must_zip(), "compress": _flag(params, "compress")}
        with self.store.temporary() as (tmp, f):
            f.write(json.dumps(head).encode("utf-8") + b"\n")
            for ids in self._datafile_ids(user, sel):
                f.write(json.dumps(ids).encode("utf-8") + b"\n")
            f.flush()
            tmp.replace(self.prepared_dir / prepared_id)
        return prepared_id

    def op_isPrepared(self, req, params):
        self._prepared(params.get("preparedId"))
        return "true"       # single level: everything is online at once

    def op_reset(self, req, params):
        self._resolve(params)
        return None

    # As a single-level ids.server: archive and restore look at nothing
    # but the form of the sessionId, write (enabled) checks the selection.
    def op_archive(self, req, params):
        self._session(params)
        raise _single_level()

    op_restore = op_archive

    def op_write(self, req, params):
        self._resolve(params)
        raise _single_level()

    def op_delete(self, req, params):
        if self.readonly:
            raise NotImplementedException("This operation has been configured to be unavailable")
        sid = self._session(params)
        sel = Selection(params)
        user = self._user(sid)
        sel = self.authorize(user, sel, "DELETE")
        client = self.icat.client
        while True:
            # The catalogue objects go first, their locations journaled: a
            # crash in between leaves a file that the next start's sweep
            # removes, never a Datafile without its file.
            page = next(self._datafiles(user, sel, include=False), [])
            if not page:
                return None
            locations = [df.values["location"] for df in page if df.values.get("location")]
            self.journal.note(*locations)
            try:
                self._catalogue(user, client.delete_many, page)
                for location in locations:
                    try:
                        self.store.delete(location)
                    except BadLocation:
                        pass        # never ours: nothing to remove
            finally:
                self.journal.settle(*locations)

    def op_put(self, req, params):
        if self.readonly:
            raise NotImplementedException("This operation has been configured to be unavailable")
        sid = self._session(params)
        name = params.get("name")
        if not name:
            raise BadRequestException("The name parameter must be set")
        format_id = _number(params, "datafileFormatId", required=True)
        dataset_id = _number(params, "datasetId", required=True)
        times = {key: _number(params, key) for key in ("datafileCreateTime", "datafileModTime")}
        user = self._user(sid)
        client = self.icat.client
        # As ids.server: the Dataset as the user may read it, and the
        # Datafile created as the user, so that ICAT's CREATE rule decides.
        dataset = self._catalogue(user, client.get, "Dataset", dataset_id)
        fmt = self._catalogue(user, client.get, "DatafileFormat", format_id)
        try:
            df_id, crc = put_datafile(
                self.journal, client, lambda df: self._catalogue(user, client.create, df),
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
            page = next(self._datafiles(user, sel), None)
            if not page:
                raise NotFoundException("One of the data files requested has been deleted")
            df = page[0]
            location = df.values.get("location")
            if not location or not self.store.exists(location):
                raise NotFoundException("One of the data files requested has been deleted")
            size = self.store.path(location).stat().st_size
            name = outname or df.values["name"]
            req.start_reply(206 if offset else 200, "application/octet-stream",
                            max(0, size - offset), _disposition(name))
            if offset < size:
                self.store.copy_to(location, req.output(), offset)
            return None
        if outname:
            name = outname if outname.rpartition(".")[2] == "zip" else outname + ".zip"
        else:
            name = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S") + ".zip"
        # Every file must be there before the reply starts: a missing one
        # found halfway could only cut the zip short.
        for page in self._datafiles(user, sel, include=False):
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


def _single_level() -> IdsError:
    return NotImplementedException("This operation is unavailable for single level storage")


def _check_uuid(param, text) -> None:
    """ids.server's check of a sessionId or preparedId parameter (Java
    writes an absent one as null)."""
    if text is None or not _UUID.match(text):
        raise BadRequestException("The %s parameter '%s' is not a valid UUID"
                                  % (param, "null" if text is None else text))


def _pages(ids):
    for start in range(0, len(ids), PAGE):
        yield ids[start:start + PAGE]


def _join(ids) -> str:
    return ", ".join(str(int(i)) for i in ids)


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

    def output(self):
        """Where a reply's body goes once started: a plain connection's
        socket itself (``wfile`` buffers nothing in front of it), so that a
        file can go by ``sendfile``; with TLS ``wfile``, written a block at
        a time (a TLS socket's ``sendfile`` would send 8 KiB at a time)."""
        return self.wfile if self.tls else self.h.connection

    def start_reply(self, status, ctype, length, disposition=None):
        """Send the status line and headers of a streamed reply; without a
        length the connection closes at its end."""
        self.drain()
        if disposition and not _HEADER_VALUE.match(disposition):
            # Checked before anything is sent: once the status line is out,
            # an error could only follow it as a second, garbled reply.
            raise InternalException("a reply header that HTTP cannot carry: %r" % disposition)
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
