"""Run python-icat 1.7.0's own test suite, unmodified, against ``icatdata serve``.

python-icat's tests are the yardstick of the local ICAT server (DESIGN.md):
they talk to a real ICAT through ``tests/data/icat.cfg``.  This script does
what python-icat's ``setup.py build_test`` and its CI do, for our server:

1. copies the unpacked sdist (``tools/examples.py`` downloads it once into
   ``.cache/``) to a scratch directory and puts the example scripts into
   ``tests/scripts`` and the example data into ``tests/data``, as
   ``build_test`` does;
2. creates an empty embedded catalogue and starts ``icatdata serve`` on it
   (loopback, a free port) with the accounts the suite logs in as: root,
   useroffice, idsreader, dataingest (authenticator simple) and acord, ahau,
   jbotu, jdoe, nbour, rbeck (authenticator db), all with password
   ``secret``;
3. writes ``tests/data/icat.cfg`` pointing every section at that server
   and its IDS; the server reads dates in Europe/Berlin, the zone
   python-icat's reference data were made in;
4. runs pytest there with a JUnit XML report, stops the server and prints
   the outcome counts and every failed or erroring test with the first line
   of its message, most frequent message first -- the list to work from.

    .venv/bin/python tools/pyicat_suite.py                 # the whole suite
    .venv/bin/python tools/pyicat_suite.py -k test_06      # pytest arguments
    .venv/bin/python tools/pyicat_suite.py --keep DIR      # keep the scratch dir

Exit status: 0 when the suite ran (whatever its result; the counts are the
output), 2 when it could not be set up, 3 when the server did not start.
"""

import argparse
import collections
import locale
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import examples  # noqa: E402

SIMPLE_USERS = ("root", "useroffice", "idsreader", "dataingest")
#: The config section a user's is named after, where it is not the user's
#: name: python-icat's [ingest] logs in as the user its init-icat.py gives
#: the ingest rules to.
SECTION_OF = {"dataingest": "ingest"}
#: python-icat's reference data were made by a server in this zone, which
#: reads date-only values in it.
SERVER_ZONE = "Europe/Berlin"
DB_USERS = ("acord", "ahau", "jbotu", "jdoe", "nbour", "rbeck")
PASSWORD = "secret"
#: What python-icat's ``build_test`` copies into tests/data (from doc/examples,
#: doc and etc).
TEST_DATA = (["doc/examples/" + f for f in ("example_data.yaml", "ingest-datafiles.xml",
                                            "ingest-ds-params.xml", "ingest-sample-ds.xml")]
             + ["doc/examples/icatdump-%s.%s" % (v, e)
                for v in ("4.4", "4.7", "4.10", "5.0", "6.2") for e in ("xml", "yaml")]
             + ["etc/" + f for f in ("ingest-10.xsd", "ingest-11.xsd", "ingest.xslt")])
TEST_DATA_GLOBS = ("doc/icatdata-*.xsd", "doc/examples/metadata-*.xml")
#: JUnit XML element -> the word pytest's summary uses.
OUTCOMES = {"failure": "failed", "error": "errors", "skipped": "skipped"}


def prepare(sdist: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """A copy of the sdist with tests/scripts and tests/data filled."""
    tree = work / "python-icat"
    shutil.copytree(sdist, tree)
    scripts = tree / "tests" / "scripts"
    scripts.mkdir()
    for script in list((tree / "doc" / "examples").glob("*.py")) + \
            list((tree / "src" / "scripts").glob("*.py")):
        shutil.copy(script, scripts / script.name)
    data = tree / "tests" / "data"
    files = [tree / f for f in TEST_DATA]
    for pattern in TEST_DATA_GLOBS:
        files += tree.glob(pattern)
    for f in files:
        shutil.copy(f, data / f.name)
    return tree


def start_server(work: pathlib.Path):
    """``icatdata serve`` on a fresh catalogue; (process, url)."""
    icatdata = pathlib.Path(sys.executable).with_name("icatdata")
    catalogue = work / "catalogue.sqlite"
    subprocess.run([str(icatdata), "init", str(catalogue)], check=True)
    cmd = [str(icatdata), "serve", "-q", str(catalogue), "--timezone", SERVER_ZONE]
    for user in SIMPLE_USERS + DB_USERS:
        cmd += ["--account", "%s:%s" % (user, PASSWORD)]
    with open(work / "serve.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
    url = proc.stdout.readline().decode().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("icatdata serve did not start; see %s" % (work / "serve.log"))
    return proc, url


def ids_url(url: str) -> str:
    """The local IDS beside the ICAT service of ``icatdata serve``."""
    return url.rsplit("/ICATService/", 1)[0] + "/ids"


def write_config(tree: pathlib.Path, url: str) -> None:
    sections = []
    for user in SIMPLE_USERS + DB_USERS:
        auth = "simple" if user in SIMPLE_USERS else "db"
        sections.append("[%s]\nurl = %s?wsdl\nidsurl = %s\nauth = %s\nusername = %s\n"
                        "password = %s\n" % (SECTION_OF.get(user, user), url, ids_url(url),
                                              auth, user, PASSWORD))
    (tree / "tests" / "data" / "icat.cfg").write_text("\n".join(sections))


def locale_path(work: pathlib.Path) -> str | None:
    """A LOCPATH with en_US.UTF-8 if the system lacks it (python-icat's
    conftest sets that locale and fails without it), or None."""
    try:
        saved = locale.setlocale(locale.LC_CTYPE)
        locale.setlocale(locale.LC_CTYPE, "en_US.UTF-8")
        locale.setlocale(locale.LC_CTYPE, saved)
        return None
    except locale.Error:
        pass
    path = work / "locale"
    path.mkdir()
    r = subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", str(path / "en_US.UTF-8")],
                       capture_output=True)
    if r.returncode not in (0, 1):      # 1: compiled, with warnings
        raise RuntimeError("no en_US.UTF-8 locale and localedef failed: %s"
                           % r.stderr.decode(errors="replace").strip())
    return str(path)


def run_pytest(tree: pathlib.Path, work: pathlib.Path, args) -> pathlib.Path:
    report = work / "junit.xml"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ICAT_") and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(HOME=str(work), TMPDIR=str(work), no_proxy="127.0.0.1,localhost")
    locpath = locale_path(work)
    if locpath:
        env["LOCPATH"] = locpath
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rN",
           "--tb=line", "--junitxml", str(report), *args]
    subprocess.run(cmd, cwd=str(tree / "tests"), env=env)
    return report


def summarize(report: pathlib.Path, work: pathlib.Path) -> None:
    """Counts; the failures and errors grouped by their message (the scratch
    directory cut out of it), each with its tests; the skip reasons counted."""
    counts = collections.Counter()
    causes = collections.defaultdict(list)
    skips = collections.Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        name = "%s::%s" % (case.get("classname", "").rpartition(".")[2], case.get("name"))
        outcome = "passed"
        for child in case:
            if child.tag in OUTCOMES:
                outcome = OUTCOMES[child.tag]
                msg = (child.get("message") or child.text or "?").strip()
                msg = msg.replace(str(work) + "/", "").splitlines()[0][:200]
                if child.tag == "skipped":
                    skips[msg] += 1
                else:
                    causes[msg].append(name)
                break
        counts[outcome] += 1
    print("python-icat 1.7.0 suite against icatdata serve: "
          + ", ".join("%d %s" % (counts[k], k)
                      for k in ("passed", "failed", "errors", "skipped") if counts[k]))
    for msg, names in sorted(causes.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print("\n%3d x %s" % (len(names), msg))
        for n in names:
            print("      " + n)
    if skips:
        print("\nskipped:")
        for msg, n in skips.most_common():
            print("%3d x %s" % (n, msg))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR (created) and keep it afterwards")
    args, pytest_args = parser.parse_known_args()   # the rest goes to pytest
    try:
        sdist = examples.example_dir()
    except (OSError, subprocess.CalledProcessError) as exc:
        print("pyicat_suite: cannot get the python-icat sdist: %s" % exc, file=sys.stderr)
        return 2
    if args.keep:
        work = pathlib.Path(args.keep).resolve()
        try:
            work.mkdir(parents=True)
        except OSError as exc:
            print("pyicat_suite: --keep wants a new directory: %s" % exc, file=sys.stderr)
            return 2
    else:
        work = pathlib.Path(tempfile.mkdtemp(prefix="pyicat-suite-"))
    try:
        tree = prepare(sdist, work)
        try:
            proc, url = start_server(work)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print("pyicat_suite: %s" % exc, file=sys.stderr)
            return 3
        try:
            write_config(tree, url)
            report = run_pytest(tree, work, pytest_args)
        except RuntimeError as exc:
            print("pyicat_suite: %s" % exc, file=sys.stderr)
            return 2
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if not report.exists():
            print("pyicat_suite: pytest wrote no report (see its output above)",
                  file=sys.stderr)
            return 2
        summarize(report, work)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
