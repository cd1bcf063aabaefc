"""The benchmark scripts still run, so that they cannot rot unseen.

Only their smoke modes, on a few KiB: the figures themselves are measured
by hand (doc/performance.md), never in CI.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ids_throughput_quick_run(tmp_path):
    """A real serve, upload and download of a few files: every figure is
    printed, and the work directory is removed afterwards."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ids_throughput.py"), "--quick",
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("11 files, 0.3 MiB"), out
    for what in ("upload", "download"):
        assert re.search(r"%s/copy ratio \d+\.\d+" % what, out), out
    for name in ("icatingest --upload-datafiles", "icatdump --with-data",
                 "serve during the upload", "serve during the download"):
        mib = float(re.search(r"peak RSS %s +(\d+\.\d+) MiB" % name, out).group(1))
        assert 10 < mib < 100, (name, mib)
    assert "OK: every peak RSS under 100 MiB" in out
    assert list(tmp_path.iterdir()) == []


def test_ids_throughput_fails_on_a_peak_over_the_limit(capsys):
    bench = load("ids_throughput")
    copies = [{"copy s": 1.0, "copy rss": 20.0, "copy cpu": 0.5}]
    run = {"upload s": 2.0, "upload rss": 40.0, "upload cpu": 1.0,
           "server upload rss": 45.0, "server upload cpu": 1.0,
           "download s": 4.0, "download rss": 40.0, "download cpu": 1.0,
           "server download rss": 45.0, "server download cpu": 1.0}
    assert bench.report(100 << 20, copies, {"t": [run]}, 100, 1 << 30) == 0
    out = capsys.readouterr().out
    assert "upload/copy ratio 0.500" in out and "download/copy ratio 0.250" in out
    over = dict(run, **{"server download rss": 100.0})
    assert bench.report(100 << 20, copies, {"t": [run, over]}, 100, 1 << 30) == 1
    assert "FAIL: peak RSS of serve during the download (t) reached 100 MiB" \
        in capsys.readouterr().out


def test_ids_throughput_bad_arguments():
    bench = load("ids_throughput")
    for args in (["--rounds", "0"], ["--files", "0", "--big-mib", "0"]):
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ids_throughput.py"), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[-1].startswith("ids_throughput.py: error: ")
    assert bench.main(["--compare", str(ROOT / "doc")]) == 2
