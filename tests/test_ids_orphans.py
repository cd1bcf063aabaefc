"""No file without its Datafile in the served IDS, whatever stops the server.

``icatdata serve`` runs as a real subprocess and is killed with SIGKILL
while uploads are under way: one large file half received (its temporary
in ``.tmp/``), and one file stored whose Datafile waits for the catalogue
(this test holds SQLite's write lock, so the server's create waits on it
and the moment cannot be missed).  After a restart on the same catalogue
every file of the data directory is named by exactly one Datafile and every
Datafile's file is there with its size.  The journal's other promises are
checked on real files too: it holds only what is in flight, and what a
live process holds is nobody else's to sweep.
"""

from __future__ import annotations

import http.client
import io
import signal
import sqlite3
import threading
import time
import urllib.parse
import urllib.request

import pytest

icat = pytest.importorskip("icat")

from icatdump.ids.local import COMPACT, UploadJournal  # noqa: E402
from icatdump.ids.store import FileStore  # noqa: E402
from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402

from served import start_serve  # noqa: E402
from test_ids_ingest import stored  # noqa: E402


def login(url):
    client = icat.Client(url + "?wsdl", idsurl=url[:-len("/ICATService/ICAT")] + "/ids")
    client.login("simple", {"username": "root", "password": "secret"})
    return client


def make_dataset(client):
    """A dataset and a format to put files into: their ids."""
    f = client.new("facility", name="F")
    f.create()
    it = client.new("investigationType", name="T", facility=f)
    it.create()
    inv = client.new("investigation", name="I", visitId="v", title="t", facility=f, type=it)
    inv.create()
    dt = client.new("datasetType", name="D", facility=f)
    dt.create()
    ds = client.new("dataset", name="ds", investigation=inv, type=dt)
    ds.create()
    fmt = client.new("datafileFormat", name="x", version="1", facility=f)
    fmt.create()
    return ds.id, fmt.id


def put_path(client, name, ds_id, fmt_id):
    return "/ids/put?" + urllib.parse.urlencode(dict(
        sessionId=client.sessionId, name=name, datasetId=ds_id, datafileFormatId=fmt_id))


def datafiles(cat) -> dict[str, int]:
    """Every committed Datafile's location and fileSize."""
    client = EmbeddedClient(str(cat))
    try:
        return {df.values["location"]: df.values["fileSize"]
                for df in client.search("SELECT df FROM Datafile df")}
    finally:
        client.close()


def journal_lines(data_dir) -> list[str]:
    return [line for path in sorted(data_dir.glob(".uploads/*"))
            for line in path.read_text(encoding="utf-8").splitlines()]


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def assert_one_to_one(cat, data_dir):
    """Each file under the data directory named by exactly one Datafile,
    each Datafile's file there with its size; no temporary, no journal."""
    dfs = datafiles(cat)
    assert stored(data_dir) == set(dfs)
    for location, size in dfs.items():
        assert (data_dir / location).stat().st_size == size
    assert not list((data_dir / ".tmp").iterdir())
    assert journal_lines(data_dir) == []
    return dfs


def test_killed_mid_upload_leaves_nothing_after_a_restart(tmp_path):
    cat = tmp_path / "c.sqlite"
    data_dir = tmp_path / "c.sqlite.data"
    init_catalogue(str(cat), "6.2")
    proc, url = start_serve(cat)
    try:
        client = login(url)
        ds_id, fmt_id = make_dataset(client)
        # Concurrent puts on the threaded server, all committed: each
        # location leaves the journal as its Datafile is created.
        errors = []

        def upload(k):
            try:
                for i in range(5):
                    client.ids.put(io.BytesIO(b"%d-%d" % (k, i) * (i + 1)), "f%d-%d" % (k, i),
                                   ds_id, fmt_id)
            except Exception as exc:      # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=upload, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        committed = datafiles(cat)
        assert len(committed) == 20 and stored(data_dir) == set(committed)
        assert journal_lines(data_dir) == []

        host, port = urllib.parse.urlsplit(url).netloc.split(":")
        # 1. A large file half received: its temporary grows in .tmp/.
        big = http.client.HTTPConnection(host, int(port), timeout=60)
        big.putrequest("PUT", put_path(client, "big.bin", ds_id, fmt_id))
        big.putheader("Content-Length", str(64 << 20))
        big.endheaders()
        big.send(b"b" * (4 << 20))
        wait_for(lambda: any(p.stat().st_size > 0 for p in (data_dir / ".tmp").iterdir()))
        # 2. A file stored whose Datafile cannot be created yet: the
        # catalogue's write lock is held here.
        lock = sqlite3.connect(str(cat), isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        waiting = threading.Thread(target=lambda: _quietly(urllib.request.urlopen, urllib.request.Request(
            url[:-len("/ICATService/ICAT")] + put_path(client, "late.dat", ds_id, fmt_id),
            data=b"late" * 1000, method="PUT"), timeout=60))
        waiting.start()
        wait_for(lambda: len(stored(data_dir)) == len(committed) + 1)
        (orphan,) = stored(data_dir) - set(committed)
        assert len(journal_lines(data_dir)) == 2 and orphan in journal_lines(data_dir)
        client.autoLogout = False       # its server is gone
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        lock.rollback()
        lock.close()
        big.close()
        waiting.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    # What the kill left: a file without Datafile, a temporary, a journal.
    assert datafiles(cat) == committed and (data_dir / orphan).is_file()
    assert list((data_dir / ".tmp").iterdir()) and len(journal_lines(data_dir)) == 2

    proc, url = start_serve(cat)
    try:
        # Swept before the first request could be answered.
        assert assert_one_to_one(cat, data_dir) == committed
        client = login(url)
        df_id = client.ids.put(io.BytesIO(b"after"), "after.dat", ds_id, fmt_id)
        assert client.get("Datafile", df_id).fileSize == 5
        assert journal_lines(data_dir) == []
        client.logout()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert len(assert_one_to_one(cat, data_dir)) == 21
    assert not list(data_dir.glob(".uploads/*"))


def _quietly(fn, *args, **kwargs):
    """Run ``fn``; the error of a request to a server killed meanwhile is expected."""
    try:
        fn(*args, **kwargs).close()
    except OSError:
        pass


def test_a_live_process_journal_is_not_swept(tmp_path):
    """Uploads into the embedded catalogue (another process, here this
    one) while ``icatdata serve`` starts: the file of a Datafile not yet
    committed stays; once its journal's process has gone, the next
    start removes it."""
    cat = tmp_path / "c.sqlite"
    init_catalogue(str(cat), "6.2")
    client = EmbeddedClient(str(cat))
    data_dir = tmp_path / "c.sqlite.data"
    store = FileStore(data_dir)
    journal = UploadJournal(store, client.search, settles=False)
    journal.note("1/pending")
    store.put("1/pending", [b"not yet committed"])
    (store.tmp / "being-written").write_bytes(b"x")    # a temporary nobody holds
    with store.temporary() as (tmp, out):      # and one that is held
        out.write(b"y")
        proc, _ = start_serve(cat)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert (data_dir / "1/pending").is_file()
        assert list(store.tmp.iterdir()) == [tmp]
    journal.close()
    proc, _ = start_serve(cat)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    client.close()
    assert stored(data_dir) == set() and not list(data_dir.glob(".uploads/*"))


def test_the_journal_holds_what_is_in_flight(tmp_path):
    """A server's journal over many puts with one always in flight: it is
    written again without the settled lines, so its size stays bounded;
    empty once nothing is in flight."""
    cat = tmp_path / "c.sqlite"
    init_catalogue(str(cat), "6.2")
    client = EmbeddedClient(str(cat))
    journal = UploadJournal(FileStore(tmp_path / "data"), client.search, settles=True)
    longest = 0
    journal.note("0/long")
    for i in range(3 * COMPACT):
        journal.note("%d/short" % i)
        journal.settle("%d/short" % i)
        longest = max(longest, len(journal_lines(tmp_path / "data")))
    assert journal_lines(tmp_path / "data") == ["0/long"]
    assert longest == COMPACT
    journal.settle("0/long")
    assert journal_lines(tmp_path / "data") == []
    journal.close()
    assert not list((tmp_path / "data").glob(".uploads/*"))
    client.close()
