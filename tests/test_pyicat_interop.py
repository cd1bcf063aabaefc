"""python-icat 1.7.0, unmodified, against the local ICAT server.

python-icat is the reference client of ICAT: if its ``icat.Client`` and its
own icatingest/icatdump scripts work against our server, the WSDL, the
encodings and the faults are faithful.  The scripts are run by path from the
unpacked sdist (their installed names clash with our console scripts), each
in a fresh process with its own HOME and TMPDIR, so that no user config or
suds cache from elsewhere leaks in.

Acceptance: ingest an example dump of python-icat and dump it again; the
output equals the example byte for byte apart from the four header lines.
"""

import os
import subprocess
import sys

import pytest

icat = pytest.importorskip("icat")

from icatdump.soap.server import serve  # noqa: E402
from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402

from conftest import dump_body as body, python_icat_sdist  # noqa: E402

# Fetched at import (collection) time, never skipped: on a clean clone, as in
# CI, these tests are the interop acceptance and must run.
SDIST = python_icat_sdist()
SCRIPTS = SDIST / "src" / "scripts"
EXAMPLES = SDIST / "doc" / "examples"

def start(tmp_path, version):
    path = str(tmp_path / ("icat-%s.sqlite" % version))
    init_catalogue(path, version)
    return serve(lambda: EmbeddedClient(path))


def run_script(name, server, tmp_path, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ICAT_") and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), no_proxy="127.0.0.1,localhost")
    cmd = [sys.executable, str(SCRIPTS / name), "-w", server.url + "?wsdl",
           "-a", "simple", "-u", "root", "-p", "secret", "--no-check-certificate", *args]
    r = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    return r


@pytest.fixture
def server62(tmp_path):
    srv = start(tmp_path, "6.2")
    yield srv
    srv.shutdown()


def test_icat_client_basics(server62):
    client = icat.Client(server62.url + "?wsdl")
    assert client.apiversion == "6.2.0"
    client.login("simple", {"username": "root", "password": "secret"})
    try:
        assert client.getUserName() == "simple/root"
        assert 119 < client.getRemainingMinutes() <= 120
        fac = client.new("facility", name="ESNF", fullName="Example")
        fac.create()
        dst = client.new("datasetType", name="raw", facility=fac)
        dst.create()
        got = client.get("DatasetType INCLUDE 1", dst.id)
        assert (got.name, got.facility.name) == ("raw", "ESNF")
        assert client.search("SELECT COUNT(f) FROM Facility f") == [1]
        assert client.search("SELECT f.name FROM Facility f") == ["ESNF"]
        assert client.search("SELECT f FROM Facility f WHERE f.name = 'none'") == []
        with pytest.raises(icat.exception.ICATObjectExistsError) as e:
            client.new("facility", name="ESNF").create()
        assert str(e.value) == "Facility exists with name = 'ESNF'"
        with pytest.raises(icat.exception.ICATValidationError):
            client.new("facility").create()
        with pytest.raises(icat.exception.ICATParameterError):
            client.search("SELECT x FROM Nonsense x")
        with pytest.raises(icat.exception.ICATObjectExistsError) as e:
            client.createMany([client.new("facility", name="A"),
                               client.new("facility", name="ESNF")])
        assert e.value.offset == 1
        info = client.getEntityInfo("Parameter")
        assert "stringValue" in {f.name for f in info.fields}
        auth = client.getAuthenticatorInfo()
        assert {a.mnemonic for a in auth} == {"simple", "db"}
    finally:
        client.logout()
    with pytest.raises(icat.exception.ICATSessionError):
        client.sessionId = "bogus"
        client.search("SELECT f FROM Facility f")
    client.sessionId = None


def test_icat_client_wrong_password(server62):
    client = icat.Client(server62.url + "?wsdl")
    with pytest.raises(icat.exception.ICATSessionError) as e:
        client.login("simple", {"username": "root", "password": "nope"})
    assert str(e.value) == "The username and password do not match"


@pytest.mark.parametrize("version", ["6.2", "5.0"])
@pytest.mark.parametrize("fmt", ["XML", "YAML"])
def test_pyicat_scripts_round_trip(tmp_path, version, fmt):
    """python-icat's icatingest then icatdump reproduce its example file."""
    example = EXAMPLES / ("icatdump-%s.%s" % (version, fmt.lower()))
    out = tmp_path / ("out." + fmt.lower())
    srv = start(tmp_path, version)
    try:
        run_script("icatingest.py", srv, tmp_path, "-f", fmt, "-i", str(example))
        created = srv.service.calls["create"]
        run_script("icatdump.py", srv, tmp_path, "-f", fmt, "-o", str(out))
    finally:
        srv.shutdown()
    assert created > 100            # one create per top-level object
    assert srv.service.calls["search"] > 0
    assert body(out.read_bytes()) == body(example.read_bytes())
