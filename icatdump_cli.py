"""Console-script entry points for icatdump, icatingest and icatdata.

python-icat installs its scripts as ``icatdump.py`` and ``icatingest.py`` in
the same ``bin`` directory as ours.  A console script runs with that
directory first on ``sys.path``, so a plain ``import icatdump`` would import
python-icat's *script* instead of this package.  These launchers drop the
script directory from ``sys.path`` when it holds such a file, then import the
real commands: both tools can live in one environment.
"""

import importlib
import os
import sys


def _drop_shadowing_script_dir():
    script_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    if script_dir and os.path.exists(os.path.join(script_dir, "icatdump.py")):
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != script_dir]


def _launch(prog: str, module: str):
    """Import and run a command; Ctrl-C while Python is still importing it
    (the first tenth of a second) ends it as quietly as later on."""
    try:
        _drop_shadowing_script_dir()
        main = importlib.import_module(module).main
        return main()
    except KeyboardInterrupt:
        sys.stderr.write("%s: error: interrupted\n" % prog)
        sys.exit(130)


def icatdump():
    return _launch("icatdump", "icatdump.cli.dump")


def icatingest():
    return _launch("icatingest", "icatdump.cli.ingest")


def icatdata():
    return _launch("icatdata", "icatdump.cli.data")
