"""A catalogue written by an earlier release keeps working with this one.

``tests/data/catalogue-775199b.sql.gz`` is the SQL text (``iterdump``) of
the catalogue that icatdump at commit 775199b -- the release before the
local server learnt authorization, audit fields in its beans, the concise
syntax and an IDS -- made of python-icat's 6.2 example with ``icatdata
init`` and ``icatingest -i icatdump-6.2.yaml``.  Users keep such files for
years: this one must dump as it was ingested, serve its audit fields, apply
the Rules it holds, and take new objects.
"""

import gzip
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT, dump_body
from served import logged_in, serving

OLD_CATALOGUE = ROOT / "tests" / "data" / "catalogue-775199b.sql.gz"
ACCOUNTS = ("--account", "simple/root:secret", "--account", "db/acord:pw",
            "--account", "db/nobody:pw")


@pytest.fixture
def old_catalogue(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    with gzip.open(OLD_CATALOGUE, "rt", encoding="utf-8") as sql:
        conn.executescript(sql.read())
    conn.close()
    return path


def test_old_catalogue_dumps_as_it_was_ingested(old_catalogue, tmp_path, example):
    out = tmp_path / "dump.yaml"
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.dump", "-q", "-w", str(old_catalogue),
                        "-f", "YAML", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert dump_body(out.read_bytes()) == dump_body(example("icatdump-6.2.yaml").read_bytes())


def search_as(served, auth, name, password, query):
    import icat
    url, idsurl, _ = served
    client = icat.Client(url + "?wsdl", idsurl=idsurl)
    client.login(auth, {"username": name, "password": password})
    try:
        return client.search(query)
    finally:
        client.logout()


def test_old_catalogue_served_with_audit_fields_and_its_rules(old_catalogue):
    with serving(old_catalogue, *ACCOUNTS, new=False) as served:
        with logged_in(served) as root:
            facility, = root.search("Facility")
            assert facility.createId == facility.modId == "simple/root"
            assert facility.createTime is not None and facility.modTime == facility.createTime
            assert len(root.search("Investigation")) == 3
            assert len(root.search("Rule")) > 150
            # New objects go in beside the old ones, with their own audit fields.
            root.create(root.new("DatasetType", name="calibration", facility=facility))
            new, = root.search("DatasetType [name='calibration']")
            assert new.createId == "simple/root" and new.createTime > facility.createTime
        # The example's Rules let acord read the three investigations; a
        # user in none of its groupings reads none, and no Rule.
        assert len(search_as(served, "db", "acord", "pw", "Investigation")) == 3
        assert search_as(served, "db", "nobody", "pw", "Investigation") == []
        assert search_as(served, "db", "nobody", "pw", "Rule") == []
