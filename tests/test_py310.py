"""The oldest supported Python (setup.cfg: >=3.10) dumps from a server in a UTC JVM.

Python 3.10's ``datetime.fromisoformat`` refuses the ``Z`` that JAXB writes
for every date of a server whose JVM runs in UTC; this runs a real dump
under 3.10 against such a server (:mod:`metro_server`).  The 3.10 virtual
environment is made once, with setup.cfg's dependencies from the package
index, and kept under ``.cache/`` keyed by the interpreter and setup.cfg.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess

import pytest

from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient
from metro_server import MetroServer
from test_resume import dump_body, ingest, new_catalogue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY310 = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")))


def venv310() -> str:
    """The python of a 3.10 venv with this project installed (editable)."""
    key = hashlib.sha256(PY310[-1].encode())
    for name in ("setup.cfg", "pyproject.toml"):
        with open(os.path.join(ROOT, name), "rb") as f:
            key.update(f.read())
    env = os.path.join(ROOT, ".cache", "py310-" + key.hexdigest()[:12])
    python = os.path.join(env, "bin", "python")
    if not os.path.exists(os.path.join(env, ".installed")):
        tmp = env + ".%d" % os.getpid()
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([PY310[-1], "-m", "venv", tmp], check=True, capture_output=True)
        r = subprocess.run([os.path.join(tmp, "bin", "python"), "-m", "pip", "install", "-q",
                            "-e", ROOT], capture_output=True, timeout=600)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        open(os.path.join(tmp, ".installed"), "w").close()
        shutil.rmtree(env, ignore_errors=True)
        os.rename(tmp, env)
    return python


@pytest.mark.skipif(not PY310, reason="no Python 3.10 at ~/.pyenv/versions/3.10*/bin/python")
def test_dump_under_python_310_from_a_utc_server(tmp_path, example):
    """Under 3.10, the same dump as the embedded catalogue's own, through
    replies whose dates all end in ``Z``."""
    python = venv310()
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == "(3, 10)"
    db = new_catalogue(tmp_path, "utc.sqlite")
    ingest(db, example("icatdump-6.2.xml"))
    srv = serve(lambda: EmbeddedClient(str(db)))
    metro = MetroServer(srv.url, zone="UTC")
    try:
        out = tmp_path / "py310.xml"
        r = subprocess.run([python, "-m", "icatdump.cli.dump", "-w", metro.url, "-a", "simple",
                            "-u", "root", "-p", "secret", "-f", "XML", "-o", str(out), "-q"],
                           capture_output=True, timeout=300, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr.decode()
    finally:
        metro.close()
        srv.shutdown()
    assert sum(1 for m, _, _, _ in metro.requests if m == "POST") > 10
    got = b"".join(line for line in out.read_bytes().splitlines(True)
                   if not line.lstrip().startswith((b"<date>", b"<service>")))
    assert not re.search(rb"\d\d:\d\dZ<", got)    # dates are written as python-icat does
    assert got == dump_body(db, tmp_path)
