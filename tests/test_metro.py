"""SoapClient against replies in the shapes a real icat.server (Metro) sends.

:mod:`metro_server` stands in front of the local server and rewrites its
replies into Metro's shapes (doc/soap.md, "Reply shapes a real icat.server
sends"); its broken modes are servers that fail.  The contract runs through
it; the failure modes run through the real ``icatdump`` command, which must
stop with exit code 3 and one line naming the server, within the timeout.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import urllib.request

import pytest

from contract import ClientContract, populate
from icatdump.client import ObjectExistsError
from icatdump.soap.client import ServerError, SoapClient
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue
from metro_server import SERVICE, MetroServer, jaxb_datetime

CRED = {"username": "root", "password": "secret"}
UTC = dt.timezone.utc


@pytest.fixture
def local(tmp_path):
    path = str(tmp_path / "metro.sqlite")
    init_catalogue(path)
    srv = serve(lambda: EmbeddedClient(path))
    yield srv
    srv.shutdown()


@pytest.fixture
def metro_factory(local):
    made = []

    def make(**kw):
        m = MetroServer(local.url, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def connect(url, **kw) -> SoapClient:
    c = SoapClient(url, **kw)
    c.backoff = 0.01
    c.login("simple", CRED)
    return c


class TestMetroContract(ClientContract):
    """The whole contract through Metro's shapes at once: ``Z`` dates,
    chunked gzip replies, a session cookie, every POST redirected (307) and
    a WSDL whose soap:address is a port where nothing listens."""

    @pytest.fixture
    def client_factory(self, tmp_path):
        made = []

        def make(version="6.2"):
            path = str(tmp_path / ("m%d-%s.sqlite" % (len(made), version)))
            init_catalogue(path, version)
            srv = serve(lambda: EmbeddedClient(path))
            metro = MetroServer(srv.url, zone="UTC", redirect=(307, ("POST",)),
                                soap_address="http://127.0.0.1:1" + SERVICE)
            c = connect(metro.base + "/old" + SERVICE)
            made.append((srv, metro, c))
            return c
        yield make
        for srv, metro, c in made:
            c.close()
            metro.close()
            srv.shutdown()


# -- shapes ----------------------------------------------------------------------------

def test_jaxb_datetime_shapes():
    """The test server prints dates as JAXB does (DatatypeConverterImpl)."""
    import zoneinfo
    when = dt.datetime(2019, 12, 30, 23, 0, tzinfo=UTC)
    assert jaxb_datetime(when, zoneinfo.ZoneInfo("UTC")) == "2019-12-30T23:00:00Z"
    assert jaxb_datetime(when, zoneinfo.ZoneInfo("Europe/Berlin")) == "2019-12-31T00:00:00+01:00"
    assert jaxb_datetime(when.replace(microsecond=120999), zoneinfo.ZoneInfo(
        "America/St_Johns")) == "2019-12-30T19:30:00.120-03:30"


@pytest.mark.parametrize("zone, shown", [
    ("UTC", b"2019-12-30T23:00:00.120Z"), ("Europe/Berlin", b"2019-12-31T00:00:00.120+01:00"),
    ("America/St_Johns", b"2019-12-30T19:30:00.120-03:30")])
def test_dates_in_every_zone(metro_factory, zone, shown):
    metro = metro_factory(zone=zone)
    c = connect(metro.url)
    data = populate(c)
    when = dt.datetime(2019, 12, 30, 23, 0, 0, 120000, tzinfo=UTC)
    ds = c.new("Dataset", name="zoned", investigation=data["inv"], type=data["dst"],
               startDate=when)
    c.create(ds)
    assert c.get("Dataset", ds.id).startDate == when
    assert c.search("SELECT o.startDate FROM Dataset o WHERE o.id = %d" % ds.id) == [when]
    raw = _post_search(metro.url, c.session_id,
                       "SELECT o FROM Dataset o WHERE o.id = %d" % ds.id)
    assert b"<startDate>" + shown + b"</startDate>" in raw
    c.close()


def _post_search(url, sid, query) -> bytes:
    body = ('<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>'
            '<t:search xmlns:t="http://icatproject.org"><sessionId>%s</sessionId>'
            "<query>%s</query></t:search></S:Body></S:Envelope>" % (sid, query)).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "text/xml"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        return r.read()


def test_scalar_and_enum_results(metro_factory):
    """Search results typed as JAXB types them: enums by their own schema
    type, Integer as xs:int, nulls in a fieldSet as xsi:nil."""
    x = 'xmlns:xs="http://www.w3.org/2001/XMLSchema" ' \
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    canned = {
        "SELECT p.valueType FROM ParameterType p":
            '<return %s xsi:type="ns2:parameterValueType">NUMERIC</return>'
            '<return %s xsi:type="ns2:parameterValueType">DATE_AND_TIME</return>' % (x, x),
        "SELECT f.daysUntilRelease FROM Facility f": '<return %s xsi:type="xs:int">1095</return>'
                                                     % x,
        "SELECT MAX(d.startDate) FROM Dataset d":
            '<return %s xsi:type="xs:dateTime">2019-12-30T23:00:00Z</return>' % x,
        "SELECT AVG(d.fileSize) FROM Datafile d": '<return %s xsi:type="xs:double">1.5E3</return>'
                                                  % x,
        "SELECT d.complete FROM Dataset d": '<return %s xsi:type="xs:boolean">true</return>' % x,
        "SELECT p.name, p.valueType, p.units FROM ParameterType p":
            '<return %s xsi:type="ns2:fieldSet"><fields xsi:type="xs:string">Probe</fields>'
            '<fields xsi:type="ns2:parameterValueType">STRING</fields>'
            '<fields xsi:nil="true"/></return>' % x,
        "SELECT s.status FROM Study s": '<return %s xsi:type="ns2:studyStatus">NEW</return>' % x,
    }
    c = connect(metro_factory(canned=canned).url)
    s = c.search
    assert s("SELECT p.valueType FROM ParameterType p") == ["NUMERIC", "DATE_AND_TIME"]
    assert s("SELECT f.daysUntilRelease FROM Facility f") == [1095]
    assert s("SELECT MAX(d.startDate) FROM Dataset d") == [dt.datetime(2019, 12, 30, 23,
                                                                       tzinfo=UTC)]
    assert s("SELECT AVG(d.fileSize) FROM Datafile d") == [1500.0]
    assert s("SELECT d.complete FROM Dataset d") == [True]
    assert s("SELECT p.name, p.valueType, p.units FROM ParameterType p") == [
        ("Probe", "STRING", None)]
    assert s("SELECT s.status FROM Study s") == ["NEW"]
    c.close()


def test_gzip_fault_is_the_icat_error_at_once(metro_factory):
    """A gzip-compressed IcatException fault is that error, after one request."""
    metro = metro_factory()
    c = connect(metro.url)
    c.create(c.new("Facility", name="F"))
    before = len(metro.requests)
    with pytest.raises(ObjectExistsError, match="Facility exists with name = 'F'"):
        c.create(c.new("Facility", name="F"))
    assert len(metro.requests) == before + 1
    assert all(gz for _, _, _, gz in metro.requests)      # every request accepted gzip
    c.close()


def test_cookie_is_sent_back(metro_factory):
    metro = metro_factory()
    c = connect(metro.url)
    c.search("SELECT f FROM Facility f")
    cookies = [had for _, _, had, _ in metro.requests]
    assert cookies[0] is False and all(cookies[1:]), cookies
    c.close()


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("methods", [("GET", "POST"), ("POST",)])
def test_redirects(metro_factory, code, methods):
    """A moved service: the WSDL's redirect is followed and its final URL
    used; a POST that is redirected is sent again, body and all."""
    metro = metro_factory(redirect=(code, methods))
    c = connect(metro.base + "/old" + SERVICE)
    c.create(c.new("Facility", name="moved"))
    assert [f.name for f in c.search("SELECT f FROM Facility f")] == ["moved"]
    posts = [p for m, p, _, _ in metro.requests if m == "POST"]
    if methods == ("POST",):
        assert c.url == metro.base + "/old" + SERVICE
        assert posts.count("/old" + SERVICE) == posts.count(SERVICE) > 0
    else:
        assert c.url == metro.url and all(p == SERVICE for p in posts)
    c.close()


def test_soap_address_elsewhere_is_not_used(metro_factory):
    """Behind a proxy the WSDL may name the server's internal address."""
    metro = metro_factory(soap_address="http://127.0.0.1:1" + SERVICE)
    c = connect(metro.url)
    assert c.url == metro.url
    assert c.search("SELECT COUNT(f) FROM Facility f") == [0]
    c.close()


# -- a server that fails: exit 3, one line naming it, in time ------------------------------

def run_dump(url, tmp_path, *args, timeout=60):
    out = tmp_path / "out" / "dump.xml"
    out.parent.mkdir(exist_ok=True)
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-w", url, "-a", "simple",
                        "-u", "root", "-p", "secret", "-o", str(out), "-q", *args],
                       capture_output=True, timeout=timeout)
    elapsed = time.monotonic() - start
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(out.parent.iterdir()) == []
    return err.strip(), elapsed


@pytest.mark.parametrize("mode, expected", [
    ("wsdl-500", "answered the WSDL request with HTTP 500 Internal Server Error (text/html)"),
    ("wsdl-garbage", "sent no usable WSDL"),
    ("fault-unknown", "answered search with a SOAP fault that is no IcatException (S:Server): "
                      "java.lang.NullPointerException"),
    ("fault-newtype", "answered search with an IcatException of unknown type 'QUOTA': "
                      "quota exceeded"),
    ("html-200", "answered search with HTTP 200 OK (text/html), XML without a SOAP body "
                 "(<html>)"),
])
def test_server_errors_exit_3(metro_factory, tmp_path, mode, expected):
    metro = metro_factory(mode=mode)
    err, _ = run_dump(metro.url, tmp_path)
    assert "ICAT at http://127.0.0.1:%d/ICATService/ICAT" % metro.server_address[1] in err
    assert expected in err, err


@pytest.mark.parametrize("mode", ["silent", "dribble"])
def test_no_complete_answer_gives_up_at_the_timeout(metro_factory, tmp_path, mode):
    """A server that reads a POST and never answers, or answers a byte at a
    time: the command stops after --timeout, not after minutes."""
    metro = metro_factory(mode=mode)
    err, elapsed = run_dump(metro.url, tmp_path, "--timeout", "2")
    assert "did not answer the" in err and "within 2 s (--timeout)" in err, err
    assert 2 <= elapsed < 12, elapsed


def test_endless_reply_stops_at_the_ceiling(metro_factory, tmp_path):
    metro = metro_factory(mode="endless")
    err, elapsed = run_dump(metro.url, tmp_path, "--max-reply-size", "2")
    assert "sent a reply to the search request larger than 2 MiB (--max-reply-size)" in err, err
    assert elapsed < 12


def test_endless_reply_bounded_in_the_library(metro_factory):
    """The same through the API, with the memory it took."""
    import resource
    metro = metro_factory(mode="endless")
    c = connect(metro.url, max_reply_mb=8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ServerError, match="larger than 8 MiB"):
        c.search("SELECT f FROM Facility f")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, grown_mib
    c.close()


def test_retries_stop_within_the_timeout(metro_factory):
    """A 5xx is retried, but not past the timeout: tries at 0, 0.4 and 1.2 s;
    the next would start at 2.8 s, past the timeout of 1.5 s."""
    metro = metro_factory()
    c = connect(metro.url, timeout=1.5)
    c.backoff = 0.4
    metro.mode = "unavailable"
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"answered search with HTTP 503 Service Unavailable "
                                          r"\(text/html\) \(gave up after 3 attempts in"):
        c.search("SELECT f FROM Facility f")
    assert time.monotonic() - start < 1.5


def test_no_redirect_from_https_to_http():
    """A redirect would re-send the body, which may carry a password."""
    import urllib.request
    from icatdump.soap.client import _Redirects
    req = urllib.request.Request("https://icat.example.org/ICATService/ICAT", b"<login/>",
                                 {"Content-Type": "text/xml"})
    handler = _Redirects()
    again = handler.redirect_request(req, None, 307, "Temporary Redirect", {},
                                     "https://icat2.example.org/ICATService/ICAT")
    assert again.data == b"<login/>" and again.get_method() == "POST"
    assert again.get_header("Content-type") == "text/xml"
    with pytest.raises(ServerError, match="redirects \\(HTTP 301\\) to http://icat.example.org"
                                          "/ICATService/ICAT, which is not https: not followed"):
        handler.redirect_request(req, None, 301, "Moved", {},
                                 "http://icat.example.org/ICATService/ICAT")
    assert handler.redirect_request(req, None, 303, "See Other", {}, req.full_url) is None


# -- configuration -----------------------------------------------------------------------

def test_timeout_and_reply_size_are_configured(tmp_path, monkeypatch):
    """``--timeout``/``timeout`` and ``--max-reply-size``/``maxReplySize``
    (the command line wins); a bad value is a config error naming its
    source.  That the client gets them: the ``run_dump`` tests above."""
    from icatdump.config import ConfigError, resolve
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "icat.cfg"
    cfg_file.write_text("[s]\ntimeout = 7.5\nmaxReplySize = 3\n[bad]\ntimeout = soon\n"
                        "[zero]\nmaxreplysize = 0\n")
    search = [cfg_file]
    cfg = resolve({"configsection": "s"}, {}, search_path=search, need_login=False)
    assert (cfg.timeout, cfg.max_reply_mb) == (7.5, 3)
    cfg = resolve({"configsection": "s", "timeout": 2.0, "max_reply_size": 9}, {},
                  search_path=search, need_login=False)
    assert (cfg.timeout, cfg.max_reply_mb) == (2.0, 9)
    assert resolve({}, {}, search_path=search, need_login=False).timeout is None
    with pytest.raises(ConfigError, match=r"timeout: not a positive number: 'soon' "
                                          r"\(.*icat.cfg \[bad\]\)"):
        resolve({"configsection": "bad"}, {}, search_path=search, need_login=False)
    with pytest.raises(ConfigError, match="maxReplySize: not a positive whole number: '0'"):
        resolve({"configsection": "zero"}, {}, search_path=search, need_login=False)
    with pytest.raises(ConfigError, match=r"timeout: not a positive number: -1.0 "
                                          r"\(command line\)"):
        resolve({"timeout": -1.0}, {}, search_path=search, need_login=False)
