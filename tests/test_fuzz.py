"""Fuzzing the readers and the ingest with mutated data files.

Hypothesis mutates python-icat's example dump files -- byte flips,
insertions, truncations, duplicated, deleted and swapped lines -- and each
mutant is read and ingested into a fresh embedded catalogue.  The only
allowed outcomes are success or one of our own clear errors
(:class:`~icatdump.dumpfile.DataFileError`, :class:`~icatdump.client.IcatError`);
any other exception type is a bug (a traceback for the user).

The CI budget is small and fixed (``max_examples`` per reader below).  For a
longer local run set ``ICATDUMP_FUZZ_EXAMPLES``::

    ICATDUMP_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -q

Base files: the first chunks of ``icatdump-6.2``, as whole files.
"""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icatdump.client import IcatError
from icatdump.dumpfile import DataFileError, open_dumpfile
from icatdump.ingest import ingest
from icatdump.store import EmbeddedClient, init_catalogue

EXAMPLES = int(os.environ.get("ICATDUMP_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="ICATDUMP_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _base_files(example):
    """Whole files made of the first chunks of the 6.2 example: the first
    four (small ones after the big first) and the first alone."""
    out = {}
    for fmt in ("xml", "yaml"):
        full = example("icatdump-6.2.%s" % fmt).read_bytes()
        mark = b"<data>" if fmt == "xml" else b"\n---\n"
        starts = [i for i in range(len(full)) if full.startswith(mark, i)]
        if fmt == "xml":
            out[fmt] = [full[:starts[n]] + b"</icatdata>\n" for n in (4, 1)]
        else:
            out[fmt] = [full[:starts[n] + 1] for n in (4, 1)]
    return out


@pytest.fixture(scope="module")
def bases(example):
    return _base_files(example)


@pytest.fixture(scope="module")
def empty_catalogue(tmp_path_factory):
    """A pristine catalogue file, copied for every example (faster than init)."""
    path = tmp_path_factory.mktemp("fuzz") / "empty.sqlite"
    init_catalogue(str(path))
    return path.read_bytes()


def mutate(data: bytes, ops) -> bytes:
    for op, pos, arg in ops:
        if not data:
            break
        i = pos % len(data)
        if op == "flip":
            data = data[:i] + bytes([data[i] ^ (1 << (arg % 8))]) + data[i + 1:]
        elif op == "byte":
            data = data[:i] + bytes([arg % 256]) + data[i + 1:]
        elif op == "insert":
            data = data[:i] + bytes([arg % 256]) + data[i:]
        elif op == "truncate":
            data = data[:i]
        else:
            lines = data.splitlines(keepends=True)
            j = pos % len(lines)
            k = arg % len(lines)
            if op == "dupline":
                lines.insert(k, lines[j])
            elif op == "delline":
                del lines[j]
            elif op == "swaplines":
                lines[j], lines[k] = lines[k], lines[j]
            data = b"".join(lines)
    return data


MUTATIONS = st.lists(st.tuples(
    st.sampled_from(["flip", "byte", "insert", "truncate", "dupline", "delline", "swaplines"]),
    st.integers(0, 1 << 20), st.integers(0, 1 << 16)), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def filled_catalogues(bases, empty_catalogue, tmp_path_factory):
    """Per format and base file: the catalogue file after ingesting it."""
    tmp = tmp_path_factory.mktemp("filled")
    out = {}
    for fmt, files in bases.items():
        out[fmt] = []
        for data in files:
            ingest_bytes(fmt, data, tmp, empty_catalogue)
            out[fmt].append((tmp / "fuzz.sqlite").read_bytes())
    return out


def ingest_bytes(fmt, data, tmp_path, empty, mode=None) -> None:
    db = tmp_path / "fuzz.sqlite"
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(db) + suffix)
        except FileNotFoundError:
            pass
    db.write_bytes(empty)
    with EmbeddedClient(str(db)) as client:
        stream = io.BytesIO(data)
        if fmt == "yaml":
            stream = io.TextIOWrapper(stream, encoding="utf-8")
        with open_dumpfile(client, stream, fmt.upper(), "r") as reader:
            ingest(client, reader, mode or ("IGNORE" if data[-1:] == b"\n" else "THROW"))


def check(fmt, base, ops, tmp_path, empty, mode=None):
    data = mutate(base, ops)
    try:
        ingest_bytes(fmt, data, tmp_path, empty, mode)
    except (DataFileError, IcatError) as exc:
        text = str(exc)
        assert text and "\n" not in text.strip(), text
    # Anything else propagates: hypothesis shows the mutant that caused it.


@FUZZ
@given(which=st.integers(0, 1), ops=MUTATIONS)
def test_fuzz_xml(bases, empty_catalogue, tmp_path, which, ops):
    check("xml", bases["xml"][which], ops, tmp_path, empty_catalogue)


@FUZZ
@given(which=st.integers(0, 1), ops=MUTATIONS)
def test_fuzz_yaml(bases, empty_catalogue, tmp_path, which, ops):
    check("yaml", bases["yaml"][which], ops, tmp_path, empty_catalogue)


@FUZZ
@given(fmt=st.sampled_from(["xml", "yaml"]), which=st.integers(0, 1), ops=MUTATIONS,
       mode=st.sampled_from(["IGNORE", "CHECK", "OVERWRITE"]))
def test_fuzz_rerun(bases, filled_catalogues, tmp_path, fmt, which, ops, mode):
    """A mutant run again over the catalogue its original filled: the
    objects it still has are looked up (in batches) and found."""
    check(fmt, bases[fmt][which], ops, tmp_path, filled_catalogues[fmt][which], mode)


def test_the_bases_ingest(bases, empty_catalogue, tmp_path):
    """Unmutated, every base file goes in: the fuzzing starts from valid files."""
    for fmt, files in bases.items():
        for data in files:
            ingest_bytes(fmt, data, tmp_path, empty_catalogue)
