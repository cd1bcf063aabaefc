"""Run tests with the oldest dependency releases setup.cfg admits.

CI installs the newest releases, so a floor in ``install_requires`` is a
claim nothing else checks.  This builds a venv in which each ``>=`` floor
is installed exactly (``lxml>=6.0`` becomes ``lxml==6.0``), adds this
tree without its dependencies and the test tools, and runs pytest there.

    python tools/oldest_deps.py                       # a default set of test files
    python tools/oldest_deps.py tests/test_soap.py    # pytest arguments
    python tools/oldest_deps.py --venv DIR            # reuse or keep the venv (default: .cache/)

Exit status: pytest's.
"""

import argparse
import configparser
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: The files that exercise every dependency: the readers and writers (lxml,
#: PyYAML), the command lines (click), SOAP both ways (suds, python-icat).
DEFAULT_TESTS = ["tests/test_bad_input.py", "tests/test_backends.py", "tests/test_roundtrip.py",
                 "tests/test_limits.py", "tests/test_gzip.py", "tests/test_convert.py",
                 "tests/test_file_tools.py", "tests/test_soap.py", "tests/test_pyicat_interop.py",
                 "tests/test_errors.py", "tests/test_config.py", "tests/test_progress.py",
                 "tests/test_metro.py", "tests/test_authz.py", "tests/test_ids.py"]


def oldest_requirements() -> list[str]:
    """``install_requires`` with each ``>=`` floor pinned."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = []
    for line in cfg["options"]["install_requires"].split("\n"):
        line = line.strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", line)
        if not m:
            sys.exit("tools/oldest_deps.py: cannot pin %r (only NAME>=VERSION is understood)"
                     % line)
        pins.append("%s==%s" % m.groups())
    return pins


def test_requirements() -> list[str]:
    """The test extra, without what install_requires pins already."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = cfg["options.extras_require"]["test"]
    return [line.strip() for line in extra.split("\n") if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=pathlib.Path, default=ROOT / ".cache" / "oldest-deps")
    args, pytest_args = ap.parse_known_args()
    python = args.venv / "bin" / "python"
    pins = oldest_requirements()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # The test tools first, then the pins over whatever they pulled in.
    subprocess.run(pip + test_requirements(), check=True)
    subprocess.run(pip + pins, check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)
    print("oldest releases: " + ", ".join(pins), flush=True)
    return subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *(pytest_args or DEFAULT_TESTS)], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
