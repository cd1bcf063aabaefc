"""HTTPS for real: ``icatdata serve --certfile`` with a self-signed
certificate made by openssl, and icatdump/icatingest against it.

An operator's ICAT speaks HTTPS; these tests check that certificates are
verified by default (a self-signed one is refused, with one line saying
so), that ``--cacert`` trusts a private CA, and that
``--no-check-certificate`` turns the check off.
"""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from icatdump.soap.limits import Limits
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

HEADER = (b"# Date:", b"# Service:", b"# ICAT-API:", b"# Generator:")


def body(data: bytes) -> list[bytes]:
    return [line for line in data.splitlines() if not line.startswith(HEADER)]



@pytest.fixture
def https_server(certificate, tmp_path):
    cert, key = certificate
    path = str(tmp_path / "served.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), accounts={"root": "secret"},
                   certfile=str(cert), keyfile=str(key))
    yield server
    server.shutdown()


def cli(command: str, server, *args: str) -> subprocess.CompletedProcess:
    base = server.url.rsplit("/ICATService", 1)[0]
    return subprocess.run([sys.executable, "-m", "icatdump.cli." + command, "-q",
                           "-w", base, "-a", "simple", "-u", "root", "-p", "secret", *args],
                          capture_output=True, text=True, timeout=300)


def test_url_is_https(https_server):
    assert https_server.url.startswith("https://127.0.0.1:")


def test_self_signed_certificate_is_refused(https_server, tmp_path):
    out = tmp_path / "dump.yaml"
    proc = cli("dump", https_server, "-o", str(out))
    assert proc.returncode == 3
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "certificate verify failed" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_cacert_and_no_check_certificate(https_server, certificate, example, tmp_path):
    cert, _ = certificate
    src = example("icatdump-6.2.yaml")
    proc = cli("ingest", https_server, "--cacert", str(cert), "-i", str(src))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "dump.yaml"
    proc = cli("dump", https_server, "--no-check-certificate", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert body(out.read_bytes()) == body(src.read_bytes())


def test_cacert_from_icat_cfg(https_server, certificate, tmp_path):
    cert, _ = certificate
    base = https_server.url.rsplit("/ICATService", 1)[0]
    cfg = tmp_path / "icat.cfg"
    cfg.write_text("[local]\nurl = %s\nauth = simple\nusername = root\npassword = secret\n"
                   "cacert = %s\n" % (base, cert))
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-q", "-c", str(cfg),
                           "-s", "local", "-o", str(tmp_path / "d.xml"), "-f", "XML"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d.xml").read_bytes().startswith(b"<?xml")


def test_serve_refuses_a_bad_certificate(tmp_path):
    path = tmp_path / "c.sqlite"
    init_catalogue(str(path))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "serve", str(path),
                           "--certfile", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("icatdata: error: cannot use the certificate %s" % bad)
    assert len(proc.stderr.splitlines()) == 1


def test_python_icat_over_https(https_server, certificate, example, tmp_path):
    """python-icat's own icatingest.py loads the 6.2 example over HTTPS
    (it has no CA option of ours: --no-check-certificate); our icatdump,
    verifying the certificate, dumps it back unchanged."""
    interop = pytest.importorskip("test_pyicat_interop")
    src = example("icatdump-6.2.yaml")
    interop.run_script("icatingest.py", https_server, tmp_path, "-f", "YAML", "-i", str(src))
    cert, _ = certificate
    out = tmp_path / "dump.yaml"
    proc = cli("dump", https_server, "--cacert", str(cert), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert body(out.read_bytes()) == body(src.read_bytes())


def test_idle_and_stalled_handshakes_are_closed_in_time(certificate, tmp_path):
    """The read timeout covers the TLS handshake too: a connection that
    never starts it, or stops half way, is closed, and HTTPS still works."""
    cert, key = certificate
    path = str(tmp_path / "stalled.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), certfile=str(cert), keyfile=str(key),
                   limits=Limits(read_timeout=1.0))
    try:
        u = urllib.parse.urlsplit(server.url)
        idle = socket.create_connection((u.hostname, u.port), timeout=10)
        stalled = socket.create_connection((u.hostname, u.port), timeout=10)
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        start = time.monotonic()
        for s in (idle, stalled):
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            s.close()
        assert time.monotonic() - start < 3.0
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(server.url + "?wsdl", context=context, timeout=10) as r:
            assert r.status == 200 and b"ICATService" in r.read()
    finally:
        server.shutdown()


def test_ids_files_over_https(certificate, tmp_path):
    """The local IDS over HTTPS, through python-icat: a file of several
    blocks goes up and comes back whole and from an offset (over TLS a
    reply is written a block at a time; over plain HTTP the kernel sends
    the file, tests/test_ids.py)."""
    icat = pytest.importorskip("icat")
    from icat.ids import DataSelection
    cert, key = certificate
    path = str(tmp_path / "served.sqlite")
    init_catalogue(path, "6.2")
    server = serve(lambda: EmbeddedClient(path), certfile=str(cert), keyfile=str(key),
                   data_dir=path + ".data")
    try:
        client = icat.Client(server.url + "?wsdl", idsurl=server.ids_url, checkCert=False)
        client.login("simple", {"username": "root", "password": "secret"})
        fac = client.new("facility", name="F")
        fac.create()
        itype = client.new("investigationType", name="T", facility=fac)
        itype.create()
        inv = client.new("investigation", name="I", visitId="v", title="t", facility=fac,
                         type=itype)
        inv.create()
        dtype = client.new("datasetType", name="D", facility=fac)
        dtype.create()
        ds = client.new("dataset", name="ds", investigation=inv, type=dtype)
        ds.create()
        fmt = client.new("datafileFormat", name="x", version="1", facility=fac)
        fmt.create()
        content = bytes(range(256)) * 1500          # 384000 bytes: several blocks
        df_id = client.ids.put(io.BytesIO(content), "a.dat", ds.id, fmt.id)
        df = client.get("Datafile", df_id)
        assert client.ids.getData(DataSelection([df])).read() == content
        part = client.ids.getData(DataSelection([df]), offset=100001)
        assert part.status == 206 and part.read() == content[100001:]
        client.logout()
    finally:
        server.shutdown()
