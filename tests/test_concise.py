"""ICAT's old concise query syntax, against a catalogue filled from python-icat's
6.2 example file: each form gives what the equivalent JPQL gives (and what the
example file holds), errors are icat.server's BAD_PARAMETER messages, and
python-icat's client gets the same through ``icatdata serve``."""

import pytest

from icatdump.client import ParameterError
from icatdump.dumpfile import open_dumpfile
from icatdump.ingest import ingest
from icatdump.schema import Schema
from icatdump.store import EmbeddedClient, init_catalogue
from icatdump.store.concise import to_jpql

# (concise query, the same in JPQL, a check of the result itself)
PAIRS = [
    ("Facility", "SELECT f FROM Facility f",
     lambda r: [o.name for o in r] == ["ESNF"]),
    ("0,3 User", "SELECT u FROM User u LIMIT 0, 3", lambda r: len(r) == 3),
    ("2, User", "SELECT u FROM User u LIMIT 2, *", lambda r: len(r) > 3),
    (", 2 Facility", "SELECT f FROM Facility f LIMIT 0, 2", lambda r: len(r) == 1),
    ("1,2 User ORDER BY name DESC", "SELECT u FROM User u ORDER BY u.name DESC LIMIT 1, 2",
     lambda r: len(r) == 2 and r[0].name > r[1].name),
    ("User [name='db/acord']", "SELECT u FROM User u WHERE u.name = 'db/acord'",
     lambda r: [o.email for o in r] == ["acord@example.org"]),
    ("Facility[name='ESNF']", "SELECT f FROM Facility f WHERE f.name = 'ESNF'",
     lambda r: len(r) == 1),
    ("Datafile.name <-> Dataset <-> Investigation [name='08100122-EF']",
     "SELECT df.name FROM Datafile df JOIN df.dataset ds JOIN ds.investigation i "
     "WHERE i.name = '08100122-EF'",
     lambda r: r == ["e201215.nxs"]),
    ("Investigation <-> Dataset [name='e201215']",
     "SELECT i FROM Investigation i JOIN i.datasets ds WHERE ds.name = 'e201215'",
     lambda r: [o.name for o in r] == ["08100122-EF"]),
    ("ParameterType [name='Comment' AND units='N/A']",
     "SELECT pt FROM ParameterType pt WHERE pt.name = 'Comment' AND pt.units = 'N/A'",
     lambda r: [o.valueType for o in r] == ["STRING"]),
    ("ParameterType.name ORDER BY name [valueType = DATE_AND_TIME]",
     "SELECT pt.name FROM ParameterType pt "
     "WHERE pt.valueType = org.icatproject.ParameterValueType.DATE_AND_TIME ORDER BY pt.name",
     lambda r: "Last access" in r),
    # icat.server writes "...NUMERICOR ..." here and fails; the meaning is clear.
    ("ParameterType.name ORDER BY name [valueType = NUMERIC OR valueType = DATE_AND_TIME]",
     "SELECT pt.name FROM ParameterType pt "
     "WHERE pt.valueType IN (org.icatproject.ParameterValueType.NUMERIC, "
     "org.icatproject.ParameterValueType.DATE_AND_TIME) ORDER BY pt.name",
     lambda r: "Last access" in r and "Magnetic field" in r),
    ("Investigation INCLUDE Dataset ORDER BY name",
     "SELECT i FROM Investigation i ORDER BY i.name INCLUDE i.datasets",
     lambda r: all(o.datasets for o in r)),
    ("Investigation ORDER BY name INCLUDE Dataset, Datafile",
     "SELECT i FROM Investigation i ORDER BY i.name INCLUDE i.datasets AS ds, ds.datafiles",
     lambda r: any(ds.datafiles for o in r for ds in o.datasets)),
    ("Investigation INCLUDE InvestigationUser, User, Facility ORDER BY name",
     "SELECT i FROM Investigation i ORDER BY i.name "
     "INCLUDE i.investigationUsers AS iu, iu.user, i.facility",
     lambda r: r[0].facility.name == "ESNF" and r[0].investigationUsers[0].user.name),
    ("Dataset INCLUDE 1 ORDER BY name", "SELECT ds FROM Dataset ds ORDER BY ds.name INCLUDE 1",
     lambda r: all(o.investigation.name and o.type.name for o in r)),
    ("Investigation INCLUDE Dataset [name = '10100601-ST']",
     "SELECT i FROM Investigation i WHERE i.name = '10100601-ST' INCLUDE i.datasets",
     lambda r: len(r) == 1 and len(r[0].datasets) > 1),
    ("DISTINCT Dataset.type.name", "SELECT DISTINCT ds.type.name FROM Dataset ds",
     lambda r: sorted(r) == sorted(set(r)) and "raw" in r),
    ("Dataset.name ORDER BY investigation.name, name DESC",
     "SELECT ds.name FROM Dataset ds ORDER BY ds.investigation.name, ds.name DESC",
     lambda r: r.index("e201216") < r.index("e201215")),
    ("COUNT(Datafile) <-> Dataset <-> Investigation [name='10100601-ST']",
     "SELECT COUNT(df) FROM Datafile df JOIN df.dataset ds JOIN ds.investigation i "
     "WHERE i.name = '10100601-ST'",
     lambda r: r[0] > 1),
    ("MAX(Datafile.fileSize)", "SELECT MAX(df.fileSize) FROM Datafile df",
     lambda r: r[0] >= 368369),
    ("Dataset.name ORDER BY name [name IN ('e201215', 'e208945', 'nothing')]",
     "SELECT ds.name FROM Dataset ds WHERE ds.name IN ('e201215', 'e208945') ORDER BY ds.name",
     lambda r: r == ["e201215", "e208945"]),
    ("Datafile [fileSize BETWEEN 368369 AND 368369]",
     "SELECT df FROM Datafile df WHERE df.fileSize = 368369",
     lambda r: [o.name for o in r] == ["e201215.nxs"]),
    ("Dataset.name ORDER BY name "
     "[NOT (name LIKE 'e2089%' OR name = 'e201216') AND complete = FALSE]",
     "SELECT ds.name FROM Dataset ds WHERE ds.name NOT LIKE 'e2089%' "
     "AND ds.name <> 'e201216' AND ds.complete = FALSE ORDER BY ds.name",
     lambda r: "e201215" in r and not any(n.startswith("e2089") for n in r)),
    ("Dataset.name ORDER BY name [startDate > {ts 2010-01-01 00:00:00}]",
     "SELECT ds.name FROM Dataset ds WHERE ds.startDate > {ts 2010-01-01 00:00:00} "
     "ORDER BY ds.name",
     lambda r: r and "e201215" not in r),
    ("Dataset.name ORDER BY name [name >= 'e208'] <-> Investigation [name = '10100601-ST']",
     "SELECT ds.name FROM Dataset ds JOIN ds.investigation i "
     "WHERE ds.name >= 'e208' AND i.name = '10100601-ST' ORDER BY ds.name",
     lambda r: r and all(n >= "e208" for n in r)),
    ("User.name ORDER BY name <-> UserGroup <-> Grouping "
     "[name = 'investigation_08100122-EF_reader']",
     "SELECT u.name FROM User u JOIN u.userGroups ug JOIN ug.grouping g "
     "WHERE g.name = 'investigation_08100122-EF_reader' ORDER BY u.name",
     lambda r: len(r) > 0),
    ("Datafile.name ORDER BY name [fileSize != 0 AND fileSize <= 1e9 AND id <> -1 "
     "AND fileSize >= 1 AND fileSize < 1.0E12 AND fileSize > -1]",
     "SELECT df.name FROM Datafile df WHERE df.fileSize <> 0 AND df.fileSize <= 1000000000 "
     "ORDER BY df.name",
     lambda r: "e201215.nxs" in r),
]

# (concise query, the BAD_PARAMETER message icat.server gives for it; "..."
# at the end: the message starts so)
ERRORS = [
    ("Bogus", "Bogus is not an ICAT entity"),
    ("Facility <-> Bogus", "Bogus is not an ICAT entity"),
    ("", "Attempt to read beyond end"),
    ("Dataset INCLUDE 2", "Only integer value allowed in the INCLUDE list is 1"),
    ("Facility <-> Datafile", "Unable to reach Datafile"),
    ("Investigation INCLUDE Datafile", "Unable to reach Datafile in list of INCLUDES."),
    # Which entity is named depends on the order relations are followed in
    # (a hash set's, in icat.server).
    ("Sample <-> Dataset <-> Investigation", "Can't have loop in graph of entities. '..."),
    ("Facility [foo = 'x']",
     "Attribute comparisons require one attribute name and one value: foo = x"),
    ("Facility ['x' IN ('y')]", "\"IN\" comparisons require a name on the LHS rather than STRING"),
    ("Dataset [type.bogus = RAW]",
     "Field bogus not found in class class org.icatproject.core.entity.DatasetType"),
    ("Dataset [name = 'x'] INCLUDE 1",
     "Expected token from types [ENTSEP] at token INCLUDE in x ] < INCLUDE > 1 "),
    ("Facility [name = 'x' = 'y']",
     "Expected token from types [KET] at token = in = x < = > y ] "),
    ("Facility ? ", "Unexpected character '?' near \"ity ? \" in state NONE for string: "
                    "Facility ? "),
    ("Facility [name = 'x", "Unexpected end of string in state INQUOTES for string: "
                           "Facility [name = 'x"),
    ("Dataset [startDate > {ts 2010-01-01}]",
     "Timestamp {ts 2010-01-01} is not of form {ts yyyy-mm-dd hh:mm:ss}."),
]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, example):
    """An embedded 6.2 catalogue holding python-icat's example file."""
    path = tmp_path_factory.mktemp("concise") / "icat.sqlite"
    init_catalogue(str(path), "6.2")
    client = EmbeddedClient(str(path))
    with open_dumpfile(client, str(example("icatdump-6.2.yaml")), "YAML", "r") as reader:
        ingest(client, reader)
    yield client
    client.close()


def shape(value):
    """A result as plain data: objects by type, id and everything included."""
    if isinstance(value, list):
        return [shape(v) for v in value]
    if hasattr(value, "BeanName"):
        rels = {k: shape(v) for k, v in value.values.items()
                if isinstance(v, list) or hasattr(v, "BeanName")}
        return (value.BeanName, value.id, sorted(rels.items(), key=repr))
    return value


@pytest.mark.parametrize("concise, jpql, check", PAIRS, ids=[p[0] for p in PAIRS])
def test_same_result_as_jpql(catalogue, concise, jpql, check):
    got = catalogue.search(concise)
    assert shape(got) == shape(catalogue.search(jpql))
    assert check(got), got


def test_user_parameter(catalogue):
    """``:user`` is the logged-in user, as in python-icat's rules."""
    acord = EmbeddedClient(catalogue.url, user="db/acord")
    try:
        got = acord.search("Grouping.name ORDER BY name <-> UserGroup <-> User [name=:user]")
        assert got == acord.search("SELECT g.name FROM Grouping g JOIN g.userGroups ug "
                                   "JOIN ug.user u WHERE u.name = 'db/acord' ORDER BY g.name")
        assert got
    finally:
        acord.close()


def test_quote_in_string(tmp_path):
    """A doubled quote is one quote of the value, as in JPQL."""
    path = str(tmp_path / "q.sqlite")
    init_catalogue(path, "6.2")
    client = EmbeddedClient(path)
    try:
        client.create(client.new("Facility", name="it's"))
        client.create(client.new("Facility", name="its"))
        assert [f.name for f in client.search("Facility [name = 'it''s']")] == ["it's"]
    finally:
        client.close()


def test_translation_is_icat_servers():
    """The JPQL of a few queries, spelled as icat.server spells it."""
    schema = Schema.for_version("6.2")
    assert to_jpql("3,5 Dataset.id ORDER BY id", schema) == \
        "SELECT Dataset$.id FROM Dataset AS Dataset$ ORDER BY Dataset$.id LIMIT 3, 5"
    assert to_jpql("Datafile <-> Dataset [name='x']", schema) == \
        "SELECT Datafile$ FROM Datafile AS Datafile$ JOIN Datafile$.dataset AS Dataset$ " \
        "WHERE (Dataset$.name = 'x')"
    assert to_jpql("Investigation INCLUDE Dataset, Datafile", schema) == \
        "SELECT Investigation$ FROM Investigation AS Investigation$ " \
        "INCLUDE Investigation$.datasets AS Dataset_$, Dataset_$.datafiles AS Datafile_$"


@pytest.mark.parametrize("query, message", ERRORS, ids=[e[0] or "empty" for e in ERRORS])
def test_errors(catalogue, query, message):
    with pytest.raises(ParameterError) as info:
        catalogue.search(query)
    if message.endswith("..."):
        assert str(info.value).startswith("BAD_PARAMETER: " + message[:-3])
    else:
        assert str(info.value) == "BAD_PARAMETER: " + message


def test_bad_enum_value(catalogue):
    """A bare word for an enum field that is no value of the enum."""
    with pytest.raises(ParameterError, match="ParameterValueType.BOGUS"):
        catalogue.search("ParameterType [valueType = BOGUS]")


def test_get_old_include_form(catalogue):
    """``get`` with ``Entity INCLUDE Type, …`` (icat.server's OldGetQuery)."""
    inv = catalogue.search("SELECT i FROM Investigation i WHERE i.name = '08100122-EF'")[0]
    old = catalogue.get("Investigation INCLUDE Dataset, Facility", inv.id)
    new = catalogue.get("Investigation i INCLUDE i.datasets, i.facility", inv.id)
    assert shape(old) == shape(new)
    assert old.facility.name == "ESNF" and [ds.name for ds in old.datasets]
    assert shape(catalogue.get("Investigation INCLUDE 1", inv.id)) == \
        shape(catalogue.get("Investigation", inv.id, "INCLUDE 1"))
    with pytest.raises(ParameterError, match="Trailing tokens at end of query x..."):
        catalogue.get("Investigation INCLUDE Dataset x", inv.id)
    with pytest.raises(ParameterError, match="Unable to reach Datafile in list of INCLUDES"):
        catalogue.get("Investigation INCLUDE Datafile", inv.id)


# -- python-icat's client through icatdata serve -------------------------------------

@pytest.fixture(scope="module")
def pyicat(catalogue):
    icat = pytest.importorskip("icat")
    from icatdump.soap.server import serve
    server = serve(lambda: EmbeddedClient(catalogue.url))
    client = icat.Client(server.url + "?wsdl")
    client.login("simple", {"username": "root", "password": "secret"})
    yield client
    client.logout()
    server.shutdown()


def test_python_icat_client(pyicat, catalogue):
    """The forms python-icat and its tests send, through SOAP."""
    assert len(pyicat.search("0,3 User")) == 3
    assert [f.name for f in pyicat.assertedSearch("Facility [name='ESNF']")] == ["ESNF"]
    assert pyicat.search("Datafile.name <-> Dataset <-> Investigation [name='08100122-EF']") \
        == ["e201215.nxs"]
    inv = pyicat.assertedSearch("Investigation INCLUDE Dataset [name = '10100601-ST']")[0]
    assert sorted(ds.name for ds in inv.datasets) == \
        sorted(catalogue.search("SELECT ds.name FROM Dataset ds JOIN ds.investigation i "
                                "WHERE i.name = '10100601-ST'"))
    assert pyicat.search("COUNT(Datafile)") == catalogue.search("SELECT COUNT(o) FROM Datafile o")
    # python-icat's own helpers that still write concise queries
    users = list(pyicat.searchChunked("User", chunksize=2))
    assert len(users) == len(catalogue.search("SELECT u FROM User u")) > 2
    assert pyicat.createUser("db/acord", search=True).email == "acord@example.org"
    grouping = pyicat.assertedSearch("Grouping [name = 'investigation_08100122-EF_reader']")[0]
    full = pyicat.get("Grouping INCLUDE UserGroup, User", grouping.id)
    assert sorted(ug.user.name for ug in full.userGroups) == sorted(grouping.getUsers("name"))
    assert sorted(u.name for u in grouping.getUsers()) == sorted(grouping.getUsers("name")) != []


def test_python_icat_client_errors(pyicat):
    icat = pytest.importorskip("icat")
    with pytest.raises(icat.exception.ICATParameterError, match="Bogus is not an ICAT entity"):
        pyicat.search("Bogus")
    with pytest.raises(icat.exception.ICATParameterError, match="Unable to reach Datafile"):
        pyicat.search("Facility <-> Datafile")
