"""``icatingest --upload-datafiles``: each new Datafile goes in through IDS.

python-icat puts each Datafile object of the file through IDS ``put`` with
the file ``DIR/<name>``, and keeps only what ``put`` carries (name, dataset,
format, description, doi, dates).  Here, for the same call:

* the file is ``DIR/<location>`` when the Datafile has a location and that
  file exists, else ``DIR/<name>`` (python-icat's rule); two datafiles of a
  run that both fall back to the same ``DIR/<name>`` are an error naming
  both, never one file uploaded twice;
* the size and checksum the dump records (a checksum only when it is a
  CRC32 as IDS writes it) must be the file's, and the checksum IDS computed
  and the size and checksum it catalogued must be what was sent; any
  mismatch is an error, and an upload found wrong is deleted again;
* after the put, the attributes ``put`` cannot carry exactly (dates to the
  millisecond, any others the schema has) are updated, and the embedded
  children (DatafileParameters, ...) are created.

With an embedded catalogue the IDS is a :class:`~icatdump.ids.local.LocalIds`:
the same calls, no HTTP, the files in the catalogue's data directory and the
Datafiles created in the ingest's own transaction; every rule here applies
unchanged.

The location stays the one IDS chose: an IDS finds a Datafile's file by its
location, so writing the dump's old one over it would cut the Datafile off
from its content.

Order and resumption: IDS creates the Datafile only once its file is
stored, and the children are created after it, so a run killed at any
point leaves no Datafile without its file; running again with ``--duplicate
IGNORE`` (or CHECK, OVERWRITE) finds the Datafiles that went in, skips
their upload and creates whatever children are missing (the ingest engine's
duplicate handling, :mod:`icatdump.ingest`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .client import Client, IcatError
from .entity import Entity
from .errors import DataFileError, ServerError
from .ids.client import IdsClient, IdsServerError
from .ids.local import LocalIds
from .ids.store import BadLocation, checksum_text, data_dir_of, location_path, recorded_crc
from .ingest import _same
from .store import EmbeddedClient

#: What IDS ``put`` carries besides name and dataset (python-icat's putData).
PUT_FIELDS = ("description", "doi", "datafileCreateTime", "datafileModTime")
#: What the upload itself decides: compared, never copied from the file.
FROM_UPLOAD = ("location", "fileSize", "checksum")


class Uploader:
    """Create Datafiles through ``ids`` with the files under ``datafile_dir``.

    ``ids``: an :class:`IdsClient`, or for an embedded catalogue a
    :class:`LocalIds` (the same calls over the catalogue's data directory).
    Used as a context manager: at its end, the IDS side settles what a
    failed run left (:meth:`LocalIds.close`).
    """

    def __init__(self, client: Client, ids: IdsClient | LocalIds, datafile_dir, where):
        self.client = client
        self.ids = ids
        self.dir = Path(datafile_dir)
        #: ``where()``: (file name, chunk number) of the data file, for errors.
        self.where = where
        # DIR/<name> -> the datafile that was uploaded from it in this run.
        self._by_name: dict[str, str] = {}
        self.bytes = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if isinstance(self.ids, LocalIds):
            self.ids.close()

    @staticmethod
    def kept_fields(type_name: str) -> tuple:
        """Fields of an existing object that a duplicate check leaves alone:
        an uploaded Datafile's location is the one IDS chose."""
        return ("location",) if type_name == "Datafile" else ()

    def _error(self, label, message):
        name, chunk = self.where()
        return DataFileError(message, name, chunk, None, label)

    def _local_file(self, label, obj: Entity) -> Path:
        location = obj.values.get("location")
        if location:
            try:
                path = location_path(self.dir, location.lstrip("/"))
            except BadLocation:
                path = None         # not a path under DIR: python-icat's rule
            if path is not None and path.is_file():
                return path
        name = obj.values.get("name")
        if not name:
            raise self._error(label, "a Datafile to upload needs a name")
        path = self.dir / name
        first = self._by_name.setdefault(str(path), label)
        if first != label:
            raise self._error(label, "%s is the file of two datafiles, %s and %s: give "
                              "them locations (files DIR/<location>) to tell them apart"
                              % (path, first, label))
        return path

    def upload(self, key, obj: Entity) -> int:
        """Upload one new Datafile (its dataset created already); set its id."""
        values = obj.values
        dataset, fmt = values.get("dataset"), values.get("datafileFormat")
        label = key or "Datafile %s of dataset %s" % (
            values.get("name"), dataset.values.get("name") if dataset else None)
        if fmt is None or fmt.id is None:
            raise self._error(label, "IDS put needs the Datafile's datafileFormat")
        if dataset is None or dataset.id is None:
            raise self._error(label, "IDS put needs the Datafile's dataset")
        path = self._local_file(label, obj)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise self._error(label, "cannot read %s: %s" % (path, exc.strerror)) from None
        # Uploads can take long: the session is kept alive before each one
        # (a local check; a refresh call only when it runs short).
        self.client.refresh()
        with f:
            size = os.fstat(f.fileno()).st_size
            recorded = values.get("fileSize")
            if recorded is not None and int(recorded) != size:
                raise self._error(label, "%s has %d bytes, the file says fileSize %s"
                                  % (path, size, recorded))
            optional = {k: _millis(values.get(k)) if k.startswith("datafile") else values.get(k)
                        for k in PUT_FIELDS}
            try:
                df_id, sent_crc, ids_crc = self.ids.put(f, size, values["name"], dataset.id,
                                                        fmt.id, **optional)
            except IdsServerError as exc:
                raise self._put_error(label, exc) from None
            except IcatError as exc:     # the embedded catalogue's own refusal (LocalIds)
                err = self._error(label, "%s: %s" % (exc.type, exc.message))
                err.icat_type = exc.type
                raise err from None
        self.bytes += size
        obj.id = df_id
        try:
            stored = self._check(label, path, obj, df_id, size, sent_crc, ids_crc)
            self._complete(obj, stored)
        except IcatError as exc:
            raise self._error(label, "%s: %s" % (exc.type, exc.message)) from None
        return df_id

    def _put_error(self, label, exc: IdsServerError):
        # ids.server reports ICAT's refusal of a duplicate as InternalException.
        if exc.message.startswith("OBJECT_ALREADY_EXISTS"):
            err = self._error(label, exc.message)
            err.icat_type = "OBJECT_ALREADY_EXISTS"
            return err
        if exc.status >= 500 and exc.code != "NotImplementedException":
            return ServerError("IDS %s: %s" % (self.ids.url, exc))
        return self._error(label, "IDS put: %s" % exc)

    def _check(self, label, path, obj: Entity, df_id: int, size, sent_crc, ids_crc) -> Entity:
        """Sent, received and catalogued must agree, and agree with what the
        dump records; an upload that does not is deleted again.  Returns the
        Datafile as catalogued."""
        crc = checksum_text(sent_crc)
        stored = self.client.get("Datafile", df_id)
        problems = []
        if ids_crc != sent_crc & 0xFFFFFFFF:
            problems.append("IDS computed checksum %s, %s was sent" % (checksum_text(ids_crc), crc))
        if stored.values.get("fileSize") not in (None, size):
            problems.append("IDS catalogued fileSize %s, %d bytes were sent"
                            % (stored.values.get("fileSize"), size))
        if stored.values.get("checksum") not in (None, crc):
            problems.append("IDS catalogued checksum %s, the file's is %s"
                            % (stored.values.get("checksum"), crc))
        recorded = recorded_crc(obj.values.get("checksum"))
        if recorded is not None and recorded != int(crc, 16):
            problems.append("%s has checksum %s, the file says %s"
                            % (path, crc, obj.values["checksum"]))
        if problems:
            self.ids.delete([df_id])
            obj.id = None
            raise self._error(label, "; ".join(problems) + " (the upload was deleted)")
        return stored

    def _complete(self, obj: Entity, stored: Entity):
        """What put could not carry: exact attributes, then the children."""
        etype = obj.type
        changed = False
        for name in etype.attrs:
            value = obj.values.get(name)
            if name in FROM_UPLOAD or value is None:
                continue
            if not _same(etype.fields[name], value, stored.values.get(name)):
                stored.values[name] = value
                changed = True
        if changed:
            stored.values.setdefault("dataset", obj.values["dataset"])
            stored.values.setdefault("datafileFormat", obj.values["datafileFormat"])
            self.client.update(stored)
        children = []
        for relname, child in obj.children():
            child.values[etype.manys[relname].mapped_by] = obj
            children.append(child)
        if children:
            self.client.create_many(children)


def _millis(value):
    """A date as the milliseconds since the epoch that IDS put takes."""
    if value is None or not hasattr(value, "timestamp"):
        return None
    return int(value.timestamp() * 1000)


def open_uploader(client, idsurl, datafile_dir, cfg, where) -> Uploader:
    """The uploader of ``icatingest``: the IDS at ``idsurl``, with the
    session of ``client`` (a server's); for an embedded catalogue, its own
    data directory, where ``icatdata serve`` on it keeps the files."""
    if isinstance(client, EmbeddedClient):
        return Uploader(client, LocalIds(client, data_dir_of(client.url)), datafile_dir, where)
    from .soap.client import ssl_context
    ids = IdsClient(idsurl, lambda: client.session_id, ssl_context(cfg))
    ids.version()
    return Uploader(client, ids, datafile_dir, where)
