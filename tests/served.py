"""``icatdata serve`` and the icatdump commands as subprocesses against it,
for the tests that move Datafiles and their files through the local IDS."""

from __future__ import annotations

import contextlib
import pathlib
import signal
import subprocess
import sys
import time

from icatdump.store import init_catalogue

#: The login of every command: the local server's built-in root account.
LOGIN = ("-a", "simple", "-u", "root", "-p", "secret")


def start_serve(path, *options) -> tuple[subprocess.Popen, str]:
    """``icatdata serve`` on the catalogue at ``path`` with ``options``,
    once it accepts requests: ``(process, ICAT URL)``."""
    proc = subprocess.Popen([sys.executable, "-m", "icatdump.cli.data", "serve", "-q", *options,
                             str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.endswith("/ICATService/ICAT"):
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(proc.stderr.read())
    return proc, url


@contextlib.contextmanager
def serving(path, *options, new=True):
    """``icatdata serve`` on a fresh catalogue at ``path`` (with ``new``,
    else on the one there) with ``options``: ``(ICAT URL, IDS URL, data
    dir)``; stopped with Ctrl-C at the end."""
    if new:
        init_catalogue(str(path), "6.2")
    proc, url = start_serve(path, *options)
    try:
        yield url, url[:-len("/ICATService/ICAT")] + "/ids", pathlib.Path(str(path) + ".data")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def ingest_cmd(served, *args):
    """``icatingest`` against the served ICAT and its IDS."""
    url, idsurl, _ = served
    return [sys.executable, "-m", "icatdump.cli.ingest", "-q", "-w", url, "--idsurl", idsurl,
            *LOGIN, *args]


def dump_cmd(served, *args):
    """``icatdump`` from the served ICAT and its IDS."""
    url, idsurl, _ = served
    return [sys.executable, "-m", "icatdump.cli.dump", "-q", "-w", url, "--idsurl", idsurl,
            *LOGIN, *args]


def ingest(served, *args):
    return subprocess.run(ingest_cmd(served, *args), capture_output=True, text=True, timeout=300)


def dump(served, *args):
    return subprocess.run(dump_cmd(served, *args), capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def logged_in(served):
    """python-icat's ``icat.Client`` on the served ICAT and IDS, logged in as root."""
    import icat
    url, idsurl, _ = served
    client = icat.Client(url + "?wsdl", idsurl=idsurl)
    client.login("simple", {"username": "root", "password": "secret"})
    try:
        yield client
    finally:
        client.logout()


def kill_when(cmd, reached, timeout=120) -> bool:
    """Run ``cmd`` and kill it with SIGKILL as soon as ``reached()`` is
    true; whether it was killed (False: it ended first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if reached():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    return killed
