"""Locate python-icat 1.7.0's example dump files, downloading its sdist once.

The example files (``doc/examples/icatdump-*.{xml,yaml}``, ``tests/data/
legacy-*``, ``ref-icatdump-5.0.*`` and the ``icatdata-*.xsd`` schemas) are
python-icat's, not ours: they are fetched from the package registry into
``.cache/`` and never committed.

    python tools/examples.py                 # print the directory
    python tools/examples.py --copy NAME DST # copy one example file
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "python-icat-1.7.0"
VERSION = "1.7.0"


def example_dir() -> pathlib.Path:
    """The unpacked sdist of python-icat 1.7.0 (downloaded on first use)."""
    if (CACHE / "doc" / "examples").is_dir():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
             "--no-binary", ":all:", "-d", tmp, "python-icat==%s" % VERSION],
            check=True)
        sdist = next(pathlib.Path(tmp).glob("python*icat-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            top = tar.getnames()[0].split("/")[0]
            tar.extractall(tmp, filter="data")
        staging = CACHE.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(pathlib.Path(tmp) / top), staging)
        staging.rename(CACHE)
    return CACHE


def find(name: str) -> pathlib.Path:
    """An example file by name, from doc/examples, tests/data or doc."""
    base = example_dir()
    for sub in ("doc/examples", "tests/data", "doc"):
        path = base / sub / name
        if path.exists():
            return path
    raise FileNotFoundError(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy", nargs=2, metavar=("NAME", "DEST"))
    args = parser.parse_args()
    if args.copy:
        shutil.copyfile(find(args.copy[0]), args.copy[1])
    else:
        print(example_dir())


if __name__ == "__main__":
    main()
