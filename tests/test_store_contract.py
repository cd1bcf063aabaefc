"""The Client contract, run against the embedded SQLite catalogue: without
authorization (a client used without a server), with it as a root user, and
as a non-root user whose rules grant everything."""

import pytest

from contract import ClientContract, grant_everything, populate
from icatdump.store import CatalogueError, EmbeddedClient, init_catalogue


@pytest.fixture
def client_factory(tmp_path):
    clients = []

    def make(version="6.2"):
        path = tmp_path / ("icat-%s-%d.sqlite" % (version, len(clients)))
        init_catalogue(str(path), version)
        clients.append(EmbeddedClient(str(path)))
        return clients[-1]
    yield make
    for c in clients:
        c.close()


class TestEmbeddedContract(ClientContract):

    @pytest.fixture(params=["no-gate", "root", "user"])
    def client_factory(self, request, tmp_path):
        clients = []

        def make(version="6.2"):
            path = tmp_path / ("icat-%s-%d.sqlite" % (version, len(clients)))
            init_catalogue(str(path), version)
            c = EmbeddedClient(str(path))
            clients.append(c)
            if request.param != "no-gate":
                c.authorize()
            if request.param == "user":
                grant_everything(c, "db/writer")
                c.login("db", {"username": "writer"})
                assert not c.gate.is_root(c.user)
            return c
        yield make
        for c in clients:
            c.close()


def test_init_refuses_non_empty_file(tmp_path):
    path = tmp_path / "x.sqlite"
    path.write_text("something")
    with pytest.raises(CatalogueError, match="not empty"):
        init_catalogue(str(path))


def test_open_missing_file(tmp_path):
    with pytest.raises(CatalogueError):
        EmbeddedClient(str(tmp_path / "missing.sqlite"))


@pytest.mark.parametrize("version", ["4.4", "4.7", "4.10", "5.0", "6.2"])
def test_versions(client_factory, version):
    c = client_factory(version)
    assert c.apiversion == version + ".0"
    assert c.schema.version == version
    assert ("Subject" in c.schema) == (version == "6.2")
    populate(c)


def test_reopen_keeps_data_and_ids(client_factory, tmp_path):
    c = client_factory("5.0")
    populate(c)
    n = c.search("SELECT COUNT(o) FROM Datafile o")
    last = c.create(c.new("Facility", name="Z"))
    c.close()
    c2 = EmbeddedClient(c.url)
    assert c2.schema.version == "5.0"
    assert c2.search("SELECT COUNT(o) FROM Datafile o") == n
    assert c2.create(c2.new("Facility", name="Y")) == last + 1
    c2.close()


def test_login_sets_create_id(client_factory):
    c = client_factory()
    c.login("db", {"username": "nbour", "password": "x"})
    c.create(c.new("Facility", name="F"))
    assert c.search("SELECT o.createId FROM Facility o") == ["db/nbour"]
