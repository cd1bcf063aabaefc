"""Authorization in the local IDS, as ids.server applies it.

A real server on 127.0.0.1 with an IDS beside it: root puts the files and
creates the rules (plain catalogue objects), then a non-root user reads,
prepares, puts and deletes only what the rules allow.  The refusals are
checked as ids.server sends them (HTTP status, JSON body ``code`` and
``message``) and as python-icat's ``icat.ids`` raises them; the files are
checked on disk.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import pytest

icat = pytest.importorskip("icat")
from icat.exception import IDSInsufficientPrivilegesError, IDSNotFoundError  # noqa: E402
from icat.ids import DataSelection  # noqa: E402

from icatdump.soap.server import serve  # noqa: E402
from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402

ACCOUNTS = {"root": "secret", "db/acord": "pw-a"}
MEMBER = ("JOIN i.investigationGroups ig JOIN ig.grouping g JOIN g.userGroups ug "
          "JOIN ug.user u WHERE u.name = :user")


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "c.sqlite")
    init_catalogue(path, "6.2")
    srv = serve(lambda: EmbeddedClient(path), accounts=ACCOUNTS, data_dir=path + ".data")
    yield srv
    srv.shutdown()


def login(server, plugin, name, password):
    c = icat.Client(server.url + "?wsdl", idsurl=server.ids_url)
    c.login(plugin, {"username": name, "password": password})
    return c


@pytest.fixture
def data(server):
    """Investigation i1 (acord's, through the grouping 'readers') with
    datasets ds1 (a.dat, b.dat, secret.dat) and i2 with ds3 (c.dat,
    shared.dat).  acord reads i1, its datasets and their datafiles but
    secret.dat, and shared.dat (not its dataset); nothing else but the
    public Facility and DatafileFormat."""
    root = login(server, "simple", "root", "secret")
    new = root.new
    acord = new("user", name="db/acord")
    acord.create()
    readers = new("grouping", name="readers")
    readers.create()
    new("userGroup", user=acord, grouping=readers).create()
    fac = new("facility", name="F")
    fac.create()
    it = new("investigationType", name="T", facility=fac)
    it.create()
    dt = new("datasetType", name="D", facility=fac)
    dt.create()
    fmt = new("datafileFormat", name="x", version="1", facility=fac)
    fmt.create()
    inv = {}
    for name in ("i1", "i2"):
        inv[name] = new("investigation", name=name, visitId="v", title=name, facility=fac,
                        type=it)
        inv[name].create()
    new("investigationGroup", investigation=inv["i1"], grouping=readers, role="r").create()
    ds = {}
    for name, i in (("ds1", "i1"), ("ds3", "i2")):
        ds[name] = new("dataset", name=name, investigation=inv[i], type=dt)
        ds[name].create()
    files = {}
    for name, d in (("a.dat", "ds1"), ("b.dat", "ds1"), ("secret.dat", "ds1"),
                    ("c.dat", "ds3"), ("shared.dat", "ds3")):
        df_id = root.ids.put(io.BytesIO(name.encode() * 10), name, ds[d].id, fmt.id)
        files[name] = root.get("Datafile", df_id)
    rules = [new("rule", crudFlags="R", what="Facility"),
             new("rule", crudFlags="R", what="DatafileFormat"),
             new("rule", crudFlags="R", what="SELECT df FROM Datafile df "
                 "WHERE df.name = 'shared.dat'")]
    for what in ("SELECT i FROM Investigation i " + MEMBER,
                 "SELECT ds FROM Dataset ds JOIN ds.investigation i " + MEMBER,
                 "SELECT df FROM Datafile df JOIN df.dataset ds JOIN ds.investigation i "
                 + MEMBER + " AND df.name <> 'secret.dat'"):
        rules.append(new("rule", crudFlags="R", what=what, grouping=readers))
    root.createMany(rules)
    yield dict(root=root, inv=inv, ds=ds, files=files, fmt=fmt, readers=readers)
    root.logout()


@pytest.fixture
def acord(server, data):
    c = login(server, "db", "acord", "pw-a")
    yield c
    c.logout()


def call(server, method, op, **params):
    """``(HTTP status, body)`` of one raw IDS request."""
    url = "%s/%s?%s" % (server.ids_url, op, urllib.parse.urlencode(params))
    req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def refusal(server, method, op, **params):
    status, body = call(server, method, op, **params)
    return status, json.loads(body)


def ids_of(data, *names):
    return ",".join(str(data["files"][n].id) for n in names)


FORBIDDEN_DF = (403, {"code": "InsufficientPrivilegesException",
                      "message": "READ access to this Datafile is not allowed."})
FORBIDDEN_DS = (403, {"code": "InsufficientPrivilegesException",
                      "message": "READ access to this Dataset is not allowed."})


def test_read_operations_refuse_as_ids_server(server, data, acord):
    sid = acord.sessionId
    c_dat, ds3 = ids_of(data, "c.dat"), str(data["ds"]["ds3"].id)
    for method, op in (("GET", "getData"), ("GET", "getStatus"), ("POST", "prepareData"),
                       ("GET", "getDatafileIds")):
        assert refusal(server, method, op, sessionId=sid, datafileIds=c_dat) == FORBIDDEN_DF, op
        assert refusal(server, method, op, sessionId=sid, datasetIds=ds3) == FORBIDDEN_DS, op
        # A readable Datafile of an unreadable Dataset: ids.server's own 404.
        shared = data["files"]["shared.dat"].id
        assert refusal(server, method, op, sessionId=sid, datafileIds=str(shared)) == \
            (404, {"code": "NotFoundException", "message": "Datafile %d" % shared}), op
        # ICAT's get: what does not exist is a 404, for anyone.
        assert refusal(server, method, op, sessionId=sid, datafileIds="999999") == \
            (404, {"code": "NotFoundException", "message": "Datafile[id:999999] not found."})
        # One refused id refuses the whole selection.
        assert refusal(server, method, op, sessionId=sid,
                       datafileIds=ids_of(data, "a.dat", "c.dat")) == FORBIDDEN_DF, op
    # getSize of several ids checks them as the others do; of one id it is
    # ids.server's "fast computation": ICAT's refusal becomes a 404.
    assert refusal(server, "GET", "getSize", sessionId=sid,
                   datafileIds=ids_of(data, "a.dat", "c.dat")) == FORBIDDEN_DF
    assert refusal(server, "GET", "getSize", sessionId=sid, datafileIds=c_dat) == \
        (404, {"code": "NotFoundException", "message": "READ access to this Datafile is not "
               "allowed."})
    # ... and is the size of what the user may read of it, shared.dat here,
    # even in a Dataset the user may not read.
    assert call(server, "GET", "getSize", sessionId=sid, datasetIds=ds3) == (200, b"100")
    # The service status is for root users only.
    assert refusal(server, "GET", "getServiceStatus", sessionId=sid) == \
        (403, {"code": "InsufficientPrivilegesException",
               "message": "db/acord is not included in the ids rootUserNames set."})
    # python-icat raises the classes a real IDS causes.
    with pytest.raises(IDSInsufficientPrivilegesError, match="READ access to this Datafile"):
        acord.ids.getData(DataSelection([data["files"]["c.dat"]]))
    with pytest.raises(IDSInsufficientPrivilegesError, match="READ access to this Dataset"):
        acord.ids.prepareData(DataSelection([data["ds"]["ds3"]]))
    with pytest.raises(IDSNotFoundError, match="Datafile %d" % data["files"]["shared.dat"].id):
        acord.ids.getStatus(DataSelection([data["files"]["shared.dat"]]))


def test_readable_data_is_served_and_the_rest_left_out(server, data, acord):
    ids, files = acord.ids, data["files"]
    assert ids.getData(DataSelection([files["a.dat"]])).read() == b"a.dat" * 10
    ds1 = DataSelection([data["ds"]["ds1"]])
    # secret.dat is in ds1, which acord reads; ICAT's search leaves it out.
    want = sorted([files["a.dat"].id, files["b.dat"].id])
    assert sorted(ids.getDatafileIds(ds1)) == want
    assert ids.getSize(ds1) == 50 + 50 and ids.getStatus(ds1) == "ONLINE"
    names = zipfile.ZipFile(io.BytesIO(ids.getData(ds1).read())).namelist()
    assert sorted(names) == ["ids/F/i1/v/ds1/a.dat", "ids/F/i1/v/ds1/b.dat"]
    # An investigation acord cannot read selects nothing, without an error,
    # as in ids.server.
    i2 = DataSelection([data["inv"]["i2"]])
    assert ids.getDatafileIds(i2) == []
    assert zipfile.ZipFile(io.BytesIO(ids.getData(i2).read())).namelist() == []
    i1 = DataSelection([data["inv"]["i1"]])
    assert sorted(ids.getDatafileIds(i1)) == want
    # Root gets everything.
    root = data["root"].ids
    assert len(root.getDatafileIds(DataSelection([data["ds"]["ds1"]]))) == 3
    assert root.getSize(DataSelection([files["c.dat"]])) == 50


def test_prepared_data_is_what_the_user_could_read(server, data, acord):
    ds1 = DataSelection([data["ds"]["ds1"]])
    pid = acord.ids.prepareData(ds1)
    acord.logout()
    # Served on behalf of no session, as ids.server's reader account serves
    # it -- but only what acord could read when it was prepared.
    files = data["files"]
    status, body = call(server, "GET", "getDatafileIds", preparedId=pid)
    assert status == 200 and json.loads(body) == {
        "zip": True, "compress": False, "ids": sorted([files["a.dat"].id, files["b.dat"].id])}
    status, body = call(server, "GET", "getData", preparedId=pid)
    assert status == 200
    assert sorted(zipfile.ZipFile(io.BytesIO(body)).namelist()) == \
        ["ids/F/i1/v/ds1/a.dat", "ids/F/i1/v/ds1/b.dat"]
    assert call(server, "GET", "getSize", preparedId=pid) == (200, b"100")
    assert call(server, "GET", "getStatus", preparedId=pid) == (200, b"ONLINE")


def stored(server):
    root = server.ids.store.root
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0].startswith("."))


def datafile_names(data):
    return sorted(df.name for df in data["root"].search("SELECT df FROM Datafile df"))


def test_put_needs_create_on_the_datafile(server, data, acord):
    before, names = stored(server), datafile_names(data)
    ds1, fmt = data["ds"]["ds1"], data["fmt"]
    with pytest.raises(IDSInsufficientPrivilegesError,
                       match="CREATE access to this Datafile is not allowed"):
        acord.ids.put(io.BytesIO(b"new"), "new.dat", ds1.id, fmt.id)
    # A Dataset acord may not read: ICAT's get refuses before anything is stored.
    with pytest.raises(IDSInsufficientPrivilegesError,
                       match="READ access to this Dataset is not allowed"):
        acord.ids.put(io.BytesIO(b"new"), "new.dat", data["ds"]["ds3"].id, fmt.id)
    assert stored(server) == before and datafile_names(data) == names
    # The same put as raw HTTP: ids.server's status and body.
    url = "%s/put?%s" % (server.ids_url, urllib.parse.urlencode(dict(
        sessionId=acord.sessionId, name="new.dat", datasetId=ds1.id, datafileFormatId=fmt.id)))
    req = urllib.request.Request(url, data=b"new", method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 403 and json.loads(err.value.read()) == {
        "code": "InsufficientPrivilegesException",
        "message": "CREATE access to this Datafile is not allowed."}
    assert stored(server) == before and datafile_names(data) == names
    # With a CREATE rule for the datasets of acord's investigations, it goes in.
    root = data["root"]
    root.new("rule", crudFlags="C", grouping=data["readers"],
             what="SELECT df FROM Datafile df JOIN df.dataset ds JOIN ds.investigation i "
             + MEMBER).create()
    df_id = acord.ids.put(io.BytesIO(b"new"), "new.dat", ds1.id, fmt.id)
    df = root.get("Datafile", df_id)
    assert df.createId == "db/acord" and stored(server) == sorted(before + [df.location])


def test_delete_needs_delete_on_every_datafile(server, data, acord):
    before, names, files = stored(server), datafile_names(data), data["files"]
    assert refusal(server, "DELETE", "delete", sessionId=acord.sessionId,
                   datafileIds=ids_of(data, "a.dat")) == \
        (403, {"code": "InsufficientPrivilegesException",
               "message": "DELETE access to this Datafile is not allowed."})
    assert stored(server) == before and datafile_names(data) == names
    # DELETE on a.dat only: a selection with b.dat too is refused as a
    # whole, before any file goes.
    data["root"].new("rule", crudFlags="D", grouping=data["readers"],
                     what="SELECT df FROM Datafile df WHERE df.name = 'a.dat'").create()
    with pytest.raises(IDSInsufficientPrivilegesError, match="DELETE access"):
        acord.ids.delete(DataSelection([data["ds"]["ds1"]]))
    assert stored(server) == before and datafile_names(data) == names
    # What acord cannot read is not acord's to delete either.
    with pytest.raises(IDSInsufficientPrivilegesError, match="READ access to this Datafile"):
        acord.ids.delete(DataSelection([files["c.dat"]]))
    acord.ids.delete(DataSelection([files["a.dat"]]))
    assert stored(server) == sorted(set(before) - {files["a.dat"].location})
    assert datafile_names(data) == sorted(set(names) - {"a.dat"})
