"""The local IDS, driven by python-icat 1.7.0's own ``icat.ids.IDSClient``.

The server is the real one (``serve(..., data_dir=...)``, HTTP on 127.0.0.1);
python-icat is the reference client of ids.server, so its calls, its
parsing of the replies and its mapping of error bodies to exception classes
check the API's shape.  The files are checked on disk too.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

import pytest
from hypothesis import given, strategies as st

icat = pytest.importorskip("icat")
from icat.exception import (IDSBadRequestError, IDSInsufficientPrivilegesError,  # noqa: E402
                            IDSNotFoundError, IDSNotImplementedError, IDSInternalError)
from icat.ids import DataSelection  # noqa: E402

from icatdump.ids import server as ids_server  # noqa: E402
from icatdump.soap.server import serve  # noqa: E402
from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "c.sqlite")
    init_catalogue(path, "6.2")
    srv = serve(lambda: EmbeddedClient(path), data_dir=path + ".data")
    yield srv
    srv.shutdown()


@pytest.fixture
def client(server):
    c = icat.Client(server.url + "?wsdl", idsurl=server.ids_url)
    c.login("simple", {"username": "root", "password": "secret"})
    yield c
    c.logout()


@pytest.fixture
def data(client):
    """Facility, investigation, two datasets and a format to put files into."""
    f = client.new("facility", name="F")
    f.create()
    it = client.new("investigationType", name="T", facility=f)
    it.create()
    inv = client.new("investigation", name="I", visitId="v", title="t", facility=f, type=it)
    inv.create()
    dt = client.new("datasetType", name="D", facility=f)
    dt.create()
    ds1 = client.new("dataset", name="ds1", investigation=inv, type=dt)
    ds1.create()
    ds2 = client.new("dataset", name="ds2", investigation=inv, type=dt)
    ds2.create()
    fmt = client.new("datafileFormat", name="x", version="1", facility=f)
    fmt.create()
    return dict(inv=inv, ds1=ds1, ds2=ds2, fmt=fmt)


def put(client, data, name, content: bytes, ds="ds1"):
    df_id = client.ids.put(io.BytesIO(content), name, data[ds].id, data["fmt"].id,
                           description="d of " + name)
    return client.get("Datafile", df_id)


def stored_files(server):
    root = server.ids.store.root
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).parts[0].startswith("."))


def test_service_calls(client, server):
    ids = client.ids
    ids.ping()
    assert ids.version() == {"version": "2.1.1"}
    assert ids.isReadOnly() is False and ids.isTwoLevel() is False
    assert ids.getIcatUrl() == server.url.rsplit("/ICATService", 1)[0]
    status = ids.getServiceStatus()
    assert status["opsQueue"] == [] and status["locks"] == []


def test_put_catalogues_and_stores(client, server, data):
    content = b"0123456789" * 1000
    df = put(client, data, "a.dat", content)
    assert df.fileSize == len(content)
    assert df.checksum == "%x" % zlib.crc32(content)
    assert df.description == "d of a.dat"
    assert stored_files(server) == [df.location]
    assert (server.ids.store.root / df.location).read_bytes() == content
    assert df.location.startswith("%d/" % data["ds1"].id)


def test_get_data_single_zip_range(client, data):
    a = put(client, data, "a.dat", b"A" * 5000)
    b = put(client, data, "b.dat", b"bee\n" * 7, ds="ds2")
    one = client.ids.getData(DataSelection([a]))
    assert one.read() == b"A" * 5000
    assert one.headers["Content-Disposition"] == 'attachment; filename="a.dat"'
    assert one.headers["Content-Length"] == "5000"
    part = client.ids.getData(DataSelection([b]), offset=4)
    assert part.status == 206 and part.read() == b"bee\n" * 6
    for compress in (False, True):
        reply = client.ids.getData(DataSelection([data["inv"]]), compressFlag=compress)
        zf = zipfile.ZipFile(io.BytesIO(reply.read()))
        assert sorted(zf.namelist()) == ["ids/F/I/v/ds1/a.dat", "ids/F/I/v/ds2/b.dat"]
        assert zf.read("ids/F/I/v/ds2/b.dat") == b"bee\n" * 7
        kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        assert {i.compress_type for i in zf.infolist()} == {kind}
    # One datafile asked to be zipped is zipped; outname gets .zip.
    reply = client.ids.getData(DataSelection([a]), zipFlag=True, outname="mine")
    assert reply.headers["Content-Disposition"] == 'attachment; filename="mine.zip"'
    assert zipfile.ZipFile(io.BytesIO(reply.read())).namelist() == ["ids/F/I/v/ds1/a.dat"]


def test_names_beyond_ascii_in_replies(client, data):
    """A name with spaces, non-ASCII letters or a line break: the file
    itself comes back, with the name in RFC 6266's filename* and a
    stand-in of its ASCII in filename (a header is Latin-1 on the wire)."""
    content = b"\x00\xff" * 3000
    odd = put(client, data, "run 1 \u00fc \u65e5\u672c.dat", content)
    reply = client.ids.getData(DataSelection([odd]))
    assert (reply.status, reply.read()) == (200, content)
    assert reply.headers["Content-Disposition"] == (
        "attachment; filename=\"run 1 _ __.dat\"; "
        "filename*=UTF-8''run%201%20%C3%BC%20%E6%97%A5%E6%9C%AC.dat")
    broken = put(client, data, "a\r\nX-Injected: 1", b"x")
    reply = client.ids.getData(DataSelection([broken]))
    assert reply.read() == b"x" and "X-Injected" not in reply.headers
    zf = zipfile.ZipFile(io.BytesIO(client.ids.getData(DataSelection([data["ds1"]])).read()))
    assert zf.read("ids/F/I/v/ds1/run 1 \u00fc \u65e5\u672c.dat") == content


def test_selections_are_read_a_page_at_a_time(client, server, data, monkeypatch):
    """Every datafile of a selection that spans pages, and no search past a
    last page that is not full (one that is full needs one more to know)."""
    monkeypatch.setattr(ids_server, "PAGE", 2)
    five = [put(client, data, "f%d" % i, b"x" * i) for i in range(1, 6)]
    four = [put(client, data, "g%d" % i, b"y" * i, ds="ds2") for i in range(1, 5)]
    catalogue = server.ids.icat.client
    searches = []
    real = catalogue.search

    def search(query, *args, **kwargs):
        if str(query).startswith("SELECT df.id FROM Datafile df") and "LIMIT" in str(query):
            searches.append(query)      # a page of a selection's datafile ids
        return real(query, *args, **kwargs)
    monkeypatch.setattr(catalogue, "search", search)
    for made, ds in ((five, "ds1"), (four, "ds2")):
        searches.clear()
        assert client.ids.getDatafileIds(DataSelection([data[ds]])) == [df.id for df in made]
        assert len(searches) == 3, searches     # pages of 2, 2, 1 and of 2, 2, 0
    searches.clear()
    assert sorted(client.ids.getDatafileIds(DataSelection([data["inv"]]))) == \
        sorted(df.id for df in five + four)
    assert len(searches) == 5, searches         # pages of 2, 2, 2, 2 and 1
    searches.clear()
    assert client.ids.getData(DataSelection([five[2]])).read() == b"xxx"
    assert len(searches) == 1, searches


def test_prepare_size_status_ids(client, data):
    a = put(client, data, "a.dat", b"x" * 10)
    b = put(client, data, "b.dat", b"y" * 32, ds="ds2")
    ids = client.ids
    sel = DataSelection([data["ds1"], data["ds2"]])
    assert ids.getSize(sel) == 42
    assert ids.getStatus(sel) == "ONLINE"
    assert sorted(ids.getDatafileIds(sel)) == sorted([a.id, b.id])
    pid = ids.prepareData(sel, zipFlag=True)
    assert ids.isPrepared(pid) is True
    assert ids.getSize(pid) == 42 and ids.getStatus(pid) == "ONLINE"
    assert sorted(ids.getDatafileIds(pid)) == sorted([a.id, b.id])
    zf = zipfile.ZipFile(io.BytesIO(ids.getData(pid).read()))
    assert len(zf.namelist()) == 2
    ids.reset(pid)
    ids.reset(sel)


def test_delete_removes_datafiles_and_files(client, server, data):
    a = put(client, data, "a.dat", b"x")
    b = put(client, data, "b.dat", b"y", ds="ds2")
    client.ids.delete(DataSelection([data["ds1"]]))
    assert [df.id for df in client.search("SELECT df FROM Datafile df")] == [b.id]
    assert stored_files(server) == [b.location]
    with pytest.raises(IDSNotFoundError):
        client.ids.getSize(DataSelection([a]))


def test_errors(client, server, data):
    ids = client.ids
    a = put(client, data, "a.dat", b"x")
    with pytest.raises(IDSNotFoundError, match=r"Datafile\[id:999999\] not found"):
        ids.getData(DataSelection({"datafileIds": [999999]}))
    with pytest.raises(IDSNotFoundError, match="preparedId"):
        ids.isPrepared("00000000-0000-0000-0000-000000000000")
    with pytest.raises(IDSBadRequestError, match="not a valid UUID"):
        ids.isPrepared("nonsense")
    for op in (ids.archive, ids.restore, ids.write):
        with pytest.raises(IDSNotImplementedError, match="single level"):
            op(DataSelection([a]))
    # Duplicate (dataset, name): ICAT's refusal, reported as ids.server does.
    with pytest.raises(IDSInternalError, match="OBJECT_ALREADY_EXISTS"):
        put(client, data, "a.dat", b"again")
    assert len(stored_files(server)) == 1      # the refused file is gone again
    with pytest.raises(IDSNotFoundError):
        ids.put(io.BytesIO(b"z"), "z.dat", 999999, data["fmt"].id)
    ids.sessionId = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(IDSInsufficientPrivilegesError):
        ids.getDatafileIds(DataSelection([a]))
    with pytest.raises(IDSInternalError):       # ids.server's getSize of one id
        ids.getSize(DataSelection([a]))
    ids.sessionId = "not-a-uuid"
    with pytest.raises(IDSBadRequestError, match="sessionId"):
        ids.getSize(DataSelection([a]))


def test_raw_http_codes_and_bodies(server, client, data):
    base = server.ids_url
    sid = client.sessionId

    def call(method, path, body=None):
        req = urllib.request.Request(base + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    assert call("GET", "/ping") == (200, b"IdsOK")
    assert call("GET", "/nothing")[0] == 404
    assert call("GET", "/archive")[0] == 405
    status, body = call("GET", "/getSize?sessionId=%s&datafileIds=1,x" % sid)
    assert status == 400
    assert json.loads(body) == {"code": "BadRequestException", "message":
                                "The datafileIds parameter '1,x' is not a valid string "
                                "representation of a comma separated list of longs"}
    status, body = call("PUT", "/put?sessionId=%s&name=n&datasetId=1" % sid, b"abc")
    assert status == 400 and json.loads(body)["message"] == \
        "The datafileFormatId parameter must be set"
    status, body = call("PUT", "/put?sessionId=%s&name=n&datasetId=%d&datafileFormatId=%d"
                        % (sid, data["ds1"].id, data["fmt"].id), b"abc")
    assert status == 201
    assert json.loads(body)["checksum"] == zlib.crc32(b"abc")


def http_call(base, method, path, body=None):
    """``(status, JSON body or text)`` of one request to the IDS at ``base``."""
    req = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


@pytest.mark.parametrize("text, ids", [
    ("{df}", "{df}"), ("{df} , {df}", "{df}"), ("{df},", "{df}"), ("+{df}", "{df}"),
    (",", ""), ("9223372036854775807", None), ("-5", None),
    ("", "bad"), (" {df}", "bad"), ("{df},,{df}", "bad"), (",{df}", "bad"), ("1.0", "bad"),
    ("9223372036854775808", "bad"), ("-9223372036854775809", "bad"), ("0x1f", "bad")])
def test_id_lists_are_read_as_ids_server_reads_them(server, client, data, text, ids):
    """DataSelection.getValidIds: Java's split at commas with blanks
    (trailing empty parts dropped, other empty parts kept) and
    Long.parseLong of each part (a sign, a Java long, no blank)."""
    df = put(client, data, "a", b"x").id
    text = text.format(df=df)
    status, body = http_call(server.ids_url, "GET", "/getDatafileIds?sessionId=%s&datafileIds=%s"
                             % (client.sessionId, urllib.parse.quote(text, safe=",")))
    if ids == "bad":
        assert (status, body) == (400, {
            "code": "BadRequestException",
            "message": "The datafileIds parameter '%s' is not a valid string representation "
                       "of a comma separated list of longs" % text})
    elif ids is None:           # a well-formed id of no Datafile
        assert status == 404 and body["code"] == "NotFoundException", body
    else:
        assert (status, body["ids"]) == (200, [int(i) for i in ids.format(df=df).split(",") if i])


def test_an_unknown_session_is_answered_as_ids_server_does(server, client, data):
    """ids.server (IdsBean.java, DataSelection.java) checks a sessionId's
    form first, then the other parameters, and meets an unknown or
    expired session at its first ICAT call, reported as that call's
    errors are: 403 but for getSize of one id (500), and archive and
    restore of a single-level IDS ask ICAT nothing (501)."""
    a = put(client, data, "a.dat", b"x")
    b = put(client, data, "b.dat", b"y")
    gone = icat.Client(server.url + "?wsdl", idsurl=server.ids_url)
    gone.login("simple", {"username": "root", "password": "secret"})
    expired = gone.sessionId
    gone.logout()
    unknown = "11111111-2222-3333-4444-555555555555"
    message = "Unable to find user by sessionid: "
    for sid in (unknown, expired):
        def call(method, op, **params):
            query = urllib.parse.urlencode(dict(params, sessionId=sid))
            if method == "POST":
                return http_call(server.ids_url, method, "/" + op, query.encode())
            return http_call(server.ids_url, method, "/%s?%s" % (op, query),
                             b"abc" if method == "PUT" else None)
        refused = (403, {"code": "InsufficientPrivilegesException", "message": message + sid})
        internal = (500, {"code": "InternalException", "message": "SESSION " + message + sid})
        assert call("GET", "getSize", datafileIds=a.id) == internal
        assert call("GET", "getSize", datasetIds=data["ds1"].id) == internal
        assert call("GET", "getSize", datafileIds="%d,%d" % (a.id, b.id)) == refused
        for method, op in (("GET", "getData"), ("GET", "getDatafileIds"), ("GET", "getStatus"),
                           ("POST", "prepareData"), ("POST", "reset"), ("POST", "write"),
                           ("DELETE", "delete")):
            assert call(method, op, datafileIds=a.id) == refused, op
        for op in ("archive", "restore"):
            assert call("POST", op, datafileIds="x")[0] == 501
        assert call("PUT", "put", name="n", datasetId=data["ds1"].id,
                    datafileFormatId=data["fmt"].id) == refused
        assert call("GET", "getServiceStatus") == refused
        # The other parameters are checked before the session.
        assert call("GET", "getSize", datafileIds="1,x")[0] == 400
        assert call("PUT", "put", name="n", datasetId=1) == (400, {
            "code": "BadRequestException", "message": "The datafileFormatId parameter must be set"})
    assert http_call(server.ids_url, "GET", "/getSize?datafileIds=1") == (400, {
        "code": "BadRequestException", "message": "The sessionId parameter 'null' is not a valid UUID"})
    # getServiceStatus asks ICAT at once, without looking at the form.
    assert http_call(server.ids_url, "GET", "/getServiceStatus?sessionId=x") == (403, {
        "code": "InsufficientPrivilegesException", "message": message + "x"})
    assert stored_files(server) == sorted([a.location, b.location])
    assert client.ids.getSize(DataSelection([a, b])) == 2


def test_a_bad_prepared_id_is_answered_as_ids_server_does(server, client, data):
    """ids.server checks a preparedId's form (400), then looks for its
    file in the prepared directory (404), in every call that takes one."""
    unknown = "00000000-0000-0000-0000-000000000000"
    calls = [("GET", "getDatafileIds"), ("GET", "getSize"), ("GET", "getStatus"),
             ("GET", "getData"), ("GET", "isPrepared"), ("POST", "reset")]
    for method, op in calls:
        for pid, expected in (
                ("nonsense", (400, {"code": "BadRequestException", "message":
                                    "The preparedId parameter 'nonsense' is not a valid UUID"})),
                (unknown, (404, {"code": "NotFoundException", "message":
                                 "The preparedId %s is not known" % unknown}))):
            query = "preparedId=" + pid
            got = (http_call(server.ids_url, method, "/" + op, query.encode())
                   if method == "POST" else
                   http_call(server.ids_url, method, "/%s?%s" % (op, query)))
            assert got == expected, op
    assert http_call(server.ids_url, "GET", "/isPrepared") == (400, {
        "code": "BadRequestException",
        "message": "The preparedId parameter 'null' is not a valid UUID"})


LARGE = textwrap.dedent("""
    import resource, sys, zlib
    import icat
    from icat.ids import DataSelection
    from icatdump.soap.server import serve
    from icatdump.store import EmbeddedClient, init_catalogue

    size, path = int(sys.argv[1]), sys.argv[2]
    init_catalogue(path, "6.2")
    srv = serve(lambda: EmbeddedClient(path), data_dir=path + ".data")
    c = icat.Client(srv.url + "?wsdl", idsurl=srv.ids_url)
    c.login("simple", {"username": "root", "password": "secret"})
    f = c.new("facility", name="F"); f.create()
    it = c.new("investigationType", name="T", facility=f); it.create()
    inv = c.new("investigation", name="I", visitId="v", title="t", facility=f, type=it)
    inv.create()
    dt = c.new("datasetType", name="D", facility=f); dt.create()
    ds = c.new("dataset", name="ds", investigation=inv, type=dt); ds.create()
    fmt = c.new("datafileFormat", name="x", version="1", facility=f); fmt.create()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    class Source:
        # size bytes, made up as they are read: no file, no big buffer
        def __init__(self):
            self.left, self.crc = size, 0
        def read(self, n):
            block = (b"0123456789abcdef" * (n // 16 + 1))[:min(n, self.left)]
            self.left -= len(block)
            self.crc = zlib.crc32(block, self.crc)
            return block

    src = Source()
    df_id = c.ids.put(src, "big.bin", ds.id, fmt.id)
    reply = c.ids.getData(DataSelection({"datafileIds": [df_id]}))
    got = crc = 0
    while True:
        block = reply.read(1 << 20)
        if not block:
            break
        got += len(block)
        crc = zlib.crc32(block, crc)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(got, crc == src.crc, c.get("Datafile", df_id).checksum == "%x" % src.crc,
          (peak - base) // 1024)
    c.logout()
    srv.shutdown()
""")


def test_large_file_streams_with_bounded_memory(tmp_path):
    """1 GiB up and down in one process (server and python-icat client):
    its peak RSS grows by far less than the file."""
    size = 1 << 30
    proc = subprocess.run([sys.executable, "-c", LARGE, str(size), str(tmp_path / "c.sqlite")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, crc_ok, catalogued_ok, grown_mib = proc.stdout.split()
    assert int(got) == size and crc_ok == "True" and catalogued_ok == "True"
    assert int(grown_mib) < 64, "peak RSS grew by %s MiB for a 1 GiB file" % grown_mib


@given(st.text())
def test_every_datafile_name_makes_a_header_http_can_send(name):
    """Whatever a Datafile is called, its Content-Disposition passes the
    check made before a reply's status line goes out, and the exact name
    can be read back from it (``filename*``, or ``filename`` for ASCII)."""
    from icatdump.ids.server import _HEADER_VALUE, _disposition
    header = _disposition(name)
    assert _HEADER_VALUE.match(header)
    plain = name.replace('"', "")
    # The quoted filename ends the header unless filename* follows it (a
    # name may contain "filename*=" itself).
    if not header.endswith('"'):
        assert urllib.parse.unquote(header.rsplit("; filename*=UTF-8''", 1)[1]) == plain
    else:
        assert header == 'attachment; filename="%s"' % plain
