"""Shared fixtures."""

import importlib.util
import pathlib
import shutil
import signal
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Tests send Ctrl-C (SIGINT) to the commands they start.  A suite started in
# the background by a shell (``make test &``, nohup) inherits SIGINT as
# ignored, and so would every command it starts: give it its usual meaning.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: The header lines of a dump (XML and YAML) that name its date, server and writer.
DUMP_HEADER = (b"<date>", b"<service>", b"<apiversion>", b"<generator>",
               b"# Date:", b"# Service:", b"# ICAT-API:", b"# Generator:")


def dump_body(data: bytes) -> bytes:
    """A dump file without its header lines: what two dumps of the same
    content share, whenever and from wherever they were written."""
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not line.lstrip().startswith(DUMP_HEADER))


def _load_examples_tool():
    spec = importlib.util.spec_from_file_location("examples", ROOT / "tools" / "examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def python_icat_sdist() -> pathlib.Path:
    """The unpacked sdist of python-icat 1.7.0, downloaded now if need be."""
    return _load_examples_tool().example_dir()


@pytest.fixture(scope="session")
def examples_tool():
    """tools/examples.py as a module (``find(name)``, ``example_dir()``)."""
    return _load_examples_tool()


@pytest.fixture(scope="session")
def example_dir(examples_tool) -> pathlib.Path:
    """python-icat 1.7.0's unpacked sdist (downloaded on first use)."""
    return examples_tool.example_dir()


@pytest.fixture(scope="session")
def example(examples_tool, example_dir):
    """``example(name)``: the path of one of python-icat's example files."""
    return examples_tool.find


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key
