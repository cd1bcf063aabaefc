"""Console-script entry points for icatdump, icatingest and icatdata.

python-icat installs its scripts as ``icatdump.py`` and ``icatingest.py`` in
the same ``bin`` directory as ours.  A console script runs with that
directory first on ``sys.path``, so a plain ``import icatdump`` would import
python-icat's *script* instead of this package.  These launchers drop the
script directory from ``sys.path`` when it holds such a file, then import the
real commands: both tools can live in one environment.
"""

import os
import sys


def _drop_shadowing_script_dir():
    script_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    if script_dir and os.path.exists(os.path.join(script_dir, "icatdump.py")):
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != script_dir]


def icatdump():
    _drop_shadowing_script_dir()
    from icatdump.cli.dump import main
    return main()


def icatingest():
    _drop_shadowing_script_dir()
    from icatdump.cli.ingest import main
    return main()


def icatdata():
    _drop_shadowing_script_dir()
    from icatdump.cli.data import main
    return main()
