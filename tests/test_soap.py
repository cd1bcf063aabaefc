"""SOAP: SoapClient against the local ICAT server, over real HTTP on 127.0.0.1.

The whole Client contract runs through suds → HTTP → server → embedded
catalogue; then what only SOAP has: ICAT's fault format, sessions, the WSDL,
getEntityInfo("Parameter"), secure parsing, concurrency.
"""

import datetime as dt
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from lxml import etree

from contract import ClientContract, grant_everything, populate
from icatdump.client import (ObjectExistsError, ParameterError, SessionError,
                             ValidationError)
from icatdump.schema import Schema
from icatdump.soap import codec, wsdl
from icatdump.soap.client import SoapClient, service_urls, ssl_context
from icatdump.soap.server import is_loopback, serve
from icatdump.store import EmbeddedClient, init_catalogue

CRED = {"username": "root", "password": "secret"}
UTC = dt.timezone.utc


def start(tmp_path, version="6.2", name="icat", **kw):
    path = str(tmp_path / ("%s-%s.sqlite" % (name, version)))
    init_catalogue(path, version)
    return serve(lambda: EmbeddedClient(path), **kw)


@pytest.fixture
def server(tmp_path):
    srv = start(tmp_path)
    yield srv
    srv.shutdown()


@pytest.fixture
def client(server):
    c = SoapClient(server.url)
    c.login("simple", CRED)
    yield c
    c.close()


@pytest.fixture(params=["root", "user"])
def client_factory(request, tmp_path):
    """Clients of new servers: logged in as root, or as a non-root user to
    whom root has granted everything by rules."""
    made = []

    def make(version="6.2"):
        srv = start(tmp_path, version, "c%d" % len(made),
                    accounts={"root": "secret", "db/writer": "pw-w"})
        c = SoapClient(srv.url)
        c.login("simple", CRED)
        made.append((srv, c))
        if request.param == "user":
            grant_everything(c, "db/writer")
            c = SoapClient(srv.url)
            c.login("db", {"username": "writer", "password": "pw-w"})
            made.append((srv, c))
        return c
    yield make
    for srv, c in made:
        c.close()
    for srv in {id(srv): srv for srv, c in made}.values():
        srv.shutdown()


class TestSoapContract(ClientContract):
    """The contract every Client keeps, through SOAP, as root and as a user."""


def post(url, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, body, {"Content-Type": "text/xml; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def envelope(op, inner) -> bytes:
    return ('<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:t="http://icatproject.org" xmlns:xsi="%s"><S:Body><t:%s>%s</t:%s>'
            '</S:Body></S:Envelope>' % (codec.XSI, op, inner, op)).encode()


# -- documents and schema ---------------------------------------------------------

def test_wsdl_and_xsd(server):
    with urllib.request.urlopen(server.url + "?wsdl") as r:
        w = etree.fromstring(r.read())
    ns = {"w": "http://schemas.xmlsoap.org/wsdl/"}
    assert w.xpath("/w:definitions/w:service/@name", namespaces=ns) == ["ICATService"]
    assert w.xpath("//w:port/@name", namespaces=ns) == ["ICATPort"]
    ops = set(w.xpath("//w:portType/w:operation/@name", namespaces=ns))
    assert {"login", "search", "createMany", "getEntityInfo", "getAuthenticatorInfo"} <= ops
    with urllib.request.urlopen(server.url + "?xsd=1") as r:
        xsd = etree.fromstring(r.read())
    etree.XMLSchema(xsd)        # a valid schema document
    x = {"xs": "http://www.w3.org/2001/XMLSchema"}
    ext = xsd.xpath("//xs:complexType[@name='dataset']//xs:extension/@base", namespaces=x)
    assert ext == ["tns:entityBaseBean"]
    complete = xsd.xpath("//xs:complexType[@name='dataset']//xs:element[@name='complete']",
                         namespaces=x)[0]
    assert complete.get("minOccurs") is None            # a required primitive boolean
    ret = xsd.xpath("//xs:complexType[@name='searchResponse']//xs:element", namespaces=x)[0]
    assert ret.get("maxOccurs") == "unbounded"


@pytest.mark.parametrize("version", ["5.0", "6.2"])
def test_schema_read_from_server_is_the_builtin(tmp_path, version):
    srv = start(tmp_path, version)
    try:
        c = SoapClient(srv.url)
        builtin = Schema.for_version(version)
        assert c.apiversion == version + ".0"
        assert sorted(e.name for e in c.schema) == sorted(e.name for e in builtin)
        for et in builtin:
            assert c.schema[et.name].fields == et.fields, et.name
            assert c.schema[et.name].constraint == et.constraint, et.name
    finally:
        srv.shutdown()


def test_entity_info_parameter_and_unknown(client):
    info = client._entity_info("Parameter")
    names = {f["name"] for f in info["fields"]}
    assert {"id", "type", "stringValue", "numericValue", "dateTimeValue"} <= names
    assert "datafile" not in names
    with pytest.raises(ParameterError) as e:
        client._entity_info("Nonsense")
    assert e.value.message == "Nonsense is not an ICAT entity"


# -- sessions ----------------------------------------------------------------------

def test_wrong_password(server):
    c = SoapClient(server.url)
    with pytest.raises(SessionError) as e:
        c.login("simple", {"username": "root", "password": "wrong"})
    assert str(e.value) == "SESSION: The username and password do not match"
    with pytest.raises(SessionError, match="Authenticator mnemonic ldap not recognised"):
        c.login("ldap", CRED)


def test_db_authenticator_and_user_name(server):
    c = SoapClient(server.url)
    c.login("db", CRED)
    assert c.get_user_name() == "db/root"
    c.create(c.new("Facility", name="F"))
    assert c.search("SELECT o.createId FROM Facility o") == ["db/root"]
    c.close()


def test_invalid_session(client):
    client.renew_session = False        # see test_faults.py for renewal
    client.session_id = "bogus"
    with pytest.raises(SessionError) as e:
        client.search("SELECT o FROM Facility o")
    assert e.value.message == "Unable to find user by sessionid: bogus"
    assert "\n" not in str(e.value)


def test_expired_session_and_refresh(tmp_path):
    srv = start(tmp_path, lifetime_minutes=0.002)        # 0.12 s
    try:
        c = SoapClient(srv.url)
        c.renew_session = False         # see test_faults.py for renewal
        c.login("simple", CRED)
        sid = c.session_id
        c.refresh()                     # < 30 minutes left: refreshes
        assert srv.service.calls["refresh"] == 1
        threading.Event().wait(0.3)
        with pytest.raises(SessionError, match="Unable to find user by sessionid: " + sid):
            c.search("SELECT o FROM Facility o")
        c.close()                       # logout of an expired session is fine
    finally:
        srv.shutdown()


def test_refresh_only_when_needed(client, server):
    client.refresh()
    assert server.service.calls["refresh"] == 0     # 120 minutes left
    client.logout()
    with pytest.raises(SessionError, match="Session Id cannot be null or empty."):
        client.search("SELECT o FROM Facility o")


def test_password_never_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    c = SoapClient(server.url)
    c.login("simple", CRED)
    with pytest.raises(SessionError):
        c.login("simple", {"username": "root", "password": "s3cr3t-wrong"})
    assert "secret" not in caplog.text and "s3cr3t" not in caplog.text


# -- errors ------------------------------------------------------------------------

def test_duplicate_and_validation(client):
    client.create(client.new("Facility", name="F"))
    with pytest.raises(ObjectExistsError) as e:
        client.create(client.new("Facility", name="F"))
    assert str(e.value) == "OBJECT_ALREADY_EXISTS: Facility exists with name = 'F'"
    with pytest.raises(ObjectExistsError) as e:
        client.create_many([client.new("Facility", name="G"), client.new("Facility", name="F")])
    assert e.value.offset == 1
    with pytest.raises(ValidationError) as e:
        client.create(client.new("Facility", name="x" * 300))
    assert e.value.message == "Facility: name cannot have length > 255"
    with pytest.raises(ParameterError):
        client.search("SELECT o FROM Nonsense o")


def test_fault_format(server, client):
    client.create(client.new("Facility", name="F"))
    bean = '<beans xsi:type="t:facility"><name>%s</name></beans>'
    status, body = post(server.url, envelope("createMany", "<sessionId>%s</sessionId>%s%s" % (
        client.session_id, bean % "G", bean % "F")))
    assert status == 500
    root = etree.fromstring(body)
    fault = root.find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault.findtext("faultcode") == "S:Server"
    assert fault.findtext("faultstring") == "Facility exists with name = 'F'"
    exc = fault.find("detail/{http://icatproject.org}IcatException")
    assert [(c.tag, c.text) for c in exc] == [
        ("message", "Facility exists with name = 'F'"), ("offset", "1"),
        ("type", "OBJECT_ALREADY_EXISTS")]


def test_unknown_operation_and_malformed_requests(server):
    status, body = post(server.url, envelope("frobnicate", ""))
    assert status == 500 and b"Cannot find dispatch method" in body
    status, body = post(server.url, b"<not-xml")
    assert status == 500 and b"Malformed request" in body
    evil = (b'<?xml version="1.0"?><!DOCTYPE S [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + envelope("getApiVersion", "&x;"))
    status, body = post(server.url, evil)
    assert status == 500 and b"root:" not in body


def test_connection_error(tmp_path):
    with pytest.raises(ConnectionError):
        SoapClient("http://127.0.0.1:9/ICATService/ICAT")


# -- encoding ----------------------------------------------------------------------

def test_search_result_types(server, client):
    populate(client)
    status, body = post(server.url, envelope("search", "<sessionId>%s</sessionId><query>%s"
                                             "</query>" % (client.session_id,
                                                           "SELECT COUNT(o) FROM Datafile o")))
    ret = etree.fromstring(body).find(".//return")
    assert ret.get(codec.XSI_TYPE) == "xs:long" and ret.text == "3"
    q = "SELECT o FROM Facility o"
    status, body = post(server.url, envelope(
        "search", "<sessionId>%s</sessionId><query>%s</query>" % (client.session_id, q)))
    assert b'xsi:type="ns2:facility"' in body
    assert client.search("SELECT o.name, o.daysUntilRelease FROM Facility o") == [("ESNF", 1095)]
    assert client.search("SELECT o FROM Facility o WHERE o.name = 'none'") == []


def test_children_carry_no_back_reference(client):
    data = populate(client)
    (inv,) = client.search("SELECT o FROM Investigation o WHERE o.id = %d "
                           "INCLUDE o.keywords, o.facility" % data["inv"].id)
    assert {k.name for k in inv.keywords} == {"Foo", "It's"}
    assert all(k.get("investigation") is None for k in inv.keywords)
    assert inv.facility.name == "ESNF"


def test_included_objects_shared_within_a_response(client):
    """A related object included by many results is decoded once per
    response and relation path (as the embedded catalogue shares it), not
    once per result; one reached by another path is decoded on its own."""
    populate(client)
    files = client.search("SELECT o FROM Datafile o INCLUDE o.dataset.investigation.facility, "
                          "o.datafileFormat.facility")
    assert len(files) == 3
    assert len({id(f.dataset) for f in files}) == len({f.dataset.id for f in files})
    assert len({id(f.dataset.investigation) for f in files}) == 1
    assert files[0].dataset.investigation.facility.name == "ESNF"
    with_format = [f for f in files if f.datafileFormat is not None]
    via_format = {id(f.datafileFormat.facility) for f in with_format}
    via_dataset = {id(f.dataset.investigation.facility) for f in with_format}
    assert len(via_format) == len(via_dataset) == 1 and via_format != via_dataset
    again = client.search("SELECT o FROM Datafile o INCLUDE o.dataset")
    assert {id(f.dataset) for f in again}.isdisjoint({id(f.dataset) for f in files})


def test_shared_and_cyclic_includes_in_the_reply(server, client):
    """The server writes an object shared by many results once per place it
    is included, each copy whole and alike, every bean with its audit
    fields in JAXB's order; an object met again on its own path (a cyclic
    include) is written without its relations."""
    populate(client)

    def reply(query):
        status, body = post(server.url, envelope(
            "search", "<sessionId>%s</sessionId><query>%s</query>" % (client.session_id, query)))
        assert status == 200, body
        return etree.fromstring(body).findall(".//return")

    files = reply("SELECT o FROM Datafile o INCLUDE o.dataset.investigation.facility")
    assert len(files) == 3
    datasets = [f.find("dataset") for f in files]
    for bean in [el for f in files for el in f.iter() if el.find("id") is not None]:
        assert [c.tag for c in bean][:5] == ["createId", "createTime", "id", "modId", "modTime"]
        assert bean.findtext("createId") == "simple/root"
        assert dt.datetime.fromisoformat(bean.findtext("modTime")).utcoffset() == dt.timedelta(0)
    by_id: dict = {}
    for ds in datasets:
        assert ds.find("investigation/facility/name").text == "ESNF"
        by_id.setdefault(ds.findtext("id"), set()).add(etree.tostring(ds))
    assert len(by_id) < len(datasets)        # some dataset is shared by two results ...
    assert all(len(copies) == 1 for copies in by_id.values())    # ... and written alike

    (ds,) = reply("SELECT o FROM Dataset o WHERE o.id = %s INCLUDE o.datafiles.dataset"
                  % next(iter(by_id)))
    inner = [f.find("dataset") for f in ds.findall("datafiles")]
    assert inner and all(d.findtext("id") == ds.findtext("id") for d in inner)
    assert all(d.find("datafiles") is None and d.findtext("name") == ds.findtext("name")
               for d in inner)
    assert len(ds.findall("datafiles")) == len(inner)


def test_empty_boolean_is_false_and_values_round_trip(client):
    data = populate(client)
    when = dt.datetime(2020, 2, 29, 12, 30, 15, 123000, tzinfo=UTC)
    ds = client.new("Dataset", name="Ä <&> \"'\r\nx", investigation=data["inv"],
                    type=data["dst"], startDate=when)
    client.create(ds)
    got = client.get("Dataset", ds.id)
    assert got.complete is False
    assert got.name == "Ä <&> \"'\r\nx"
    assert got.startDate == when
    p = client.new("DatasetParameter", dataset=ds, type=data["ptn"], numericValue=1e300)
    client.create(p)
    assert client.get("DatasetParameter", p.id).numericValue == 1e300


# -- concurrency -------------------------------------------------------------------

def test_concurrent_requests(server):
    clients = []
    for _ in range(6):
        c = SoapClient(server.url)
        c.login("simple", CRED)
        clients.append(c)
    errors = []

    def work(i, c):
        try:
            for j in range(5):
                c.create_many([c.new("Facility", name="f%d-%d-%d" % (i, j, k)) for k in range(4)])
                c.search("SELECT COUNT(o) FROM Facility o")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert clients[0].search("SELECT COUNT(o) FROM Facility o") == [6 * 5 * 4]
    for c in clients:
        c.close()


# -- helpers and configuration ---------------------------------------------------------

def test_service_urls():
    assert service_urls("https://icat.example.org") == (
        "https://icat.example.org/ICATService/ICAT",
        "https://icat.example.org/ICATService/ICAT?wsdl")
    assert service_urls("http://h:8080/ICATService/ICAT?wsdl")[0] == \
        "http://h:8080/ICATService/ICAT"


def test_ssl_and_proxy_configuration():
    import ssl

    class Cfg:
        check_cert = False
        proxies = {"https": "http://proxy.invalid:3128"}
    assert ssl_context(Cfg()).verify_mode == ssl.CERT_NONE
    assert ssl_context(None).verify_mode == ssl.CERT_REQUIRED
    from icatdump.soap.client import Http
    t = Http(ssl_context(Cfg()), Cfg.proxies, 10, 1 << 20)
    handlers = [h for h in t.opener.handlers if isinstance(h, urllib.request.ProxyHandler)]
    assert handlers and handlers[0].proxies == Cfg.proxies


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_entity_info_of_every_entity_has_meta_fields():
    s = Schema.for_version("6.2")
    for et in s:
        info = wsdl.entity_info(s, et.name)
        names = [f["name"] for f in info["fields"]]
        assert names[:5] == ["id", "createId", "createTime", "modId", "modTime"]


def test_run_server_prints_url_and_stops(tmp_path):
    path = str(tmp_path / "serve.sqlite")
    init_catalogue(path, "5.0")
    # faulthandler: if it does not stop, SIGUSR1 shows where its threads are.
    code = ("import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1); "
            "from icatdump.soap.server import run_server; "
            "run_server(sys.argv[1], '127.0.0.1', 0, {'root': 'secret'}, True)")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ICATService/ICAT")
        c = SoapClient(url)
        assert c.apiversion == "5.0.0"
        c.login("simple", CRED)
        c.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            pytest.fail("the server did not stop on SIGINT:\n" + proc.communicate()[1])
    assert proc.returncode == 0, proc.stderr.read()


# -- the whole pipeline through SOAP ---------------------------------------------------

@pytest.mark.parametrize("version,fmt", [("5.0", "XML"), ("6.2", "YAML")])
def test_own_ingest_and_dump_through_soap(tmp_path, version, fmt):
    """icatdump's ingest and dump over SoapClient reproduce python-icat's example."""
    import pathlib
    from icatdump.dump import dump
    from icatdump.dumpfile import open_dumpfile
    from icatdump.ingest import ingest
    from test_pyicat_interop import EXAMPLES, body

    example = pathlib.Path(EXAMPLES) / ("icatdump-%s.%s" % (version, fmt.lower()))
    if not example.exists():
        pytest.skip("python-icat examples not unpacked")
    srv = start(tmp_path, version)
    try:
        c = SoapClient(srv.url, learn_child_ids=False)
        c.login("simple", CRED)
        with open_dumpfile(c, str(example), fmt, "r") as reader:
            ingest(c, reader)
        assert srv.service.calls["create"] == 0
        assert 0 < srv.service.calls["createMany"] < 40     # python-icat: 316 creates
        out = tmp_path / ("out." + fmt.lower())
        with open_dumpfile(c, str(out), fmt, "w") as writer:
            dump(c, writer)
        c.close()
    finally:
        srv.shutdown()
    assert body(out.read_bytes()) == body(example.read_bytes())
