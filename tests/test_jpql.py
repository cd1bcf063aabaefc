"""Every query icatdump and icatingest send (ICAT-FACTS §3.3, §3.4), exactly as
written there, against data created through the client, on every schema
version (the 5.0+ pieces dropped on older versions as python-icat does)."""

import pytest

from contract import populate
from icatdump.schema import version_tuple
from icatdump.store import EmbeddedClient, init_catalogue
from icatdump.store.jpql import parse

VERSIONS = ["4.4", "4.7", "4.10", "5.0", "6.2"]

Q = {
    "Q01": "SELECT o FROM User o ORDER BY o.name LIMIT 0, 100",
    "Q02": "SELECT o FROM Grouping o ORDER BY o.name INCLUDE o.userGroups AS ug, ug.user LIMIT 0, 100",
    "Q03": "SELECT o FROM Rule o LEFT JOIN o.grouping AS g ORDER BY g.name, o.what, o.id INCLUDE o.grouping LIMIT 0, 100",
    "Q04": "SELECT o FROM PublicStep o ORDER BY o.origin, o.field LIMIT 0, 100",
    "Q05": "SELECT o FROM Technique o ORDER BY o.name LIMIT 0, 100",
    "Q06": "SELECT o FROM Facility o ORDER BY o.name LIMIT 0, 100",
    "Q07": "SELECT o FROM Instrument o JOIN o.facility AS f ORDER BY f.name, o.name INCLUDE o.facility, o.instrumentScientists AS isc, isc.user LIMIT 0, 100",
    "Q08": "SELECT o FROM ParameterType o JOIN o.facility AS f ORDER BY f.name, o.name, o.units INCLUDE o.facility, o.permissibleStringValues LIMIT 0, 100",
    "Q09": "SELECT o FROM DataPublicationType o JOIN o.facility AS f ORDER BY f.name, o.name INCLUDE o.facility LIMIT 0, 100",
    "Q10": "SELECT o FROM InvestigationType o JOIN o.facility AS f ORDER BY f.name, o.name INCLUDE o.facility LIMIT 0, 100",
    "Q11": "SELECT o FROM SampleType o JOIN o.facility AS f ORDER BY f.name, o.name, o.molecularFormula INCLUDE o.facility LIMIT 0, 100",
    "Q12": "SELECT o FROM DatasetType o JOIN o.facility AS f ORDER BY f.name, o.name INCLUDE o.facility LIMIT 0, 100",
    "Q13": "SELECT o FROM DatafileFormat o JOIN o.facility AS f ORDER BY f.name, o.name, o.version INCLUDE o.facility LIMIT 0, 100",
    "Q14": "SELECT o FROM FacilityCycle o JOIN o.facility AS f ORDER BY f.name, o.name INCLUDE o.facility LIMIT 0, 100",
    "Q15": "SELECT o FROM Application o JOIN o.facility AS f ORDER BY f.name, o.name, o.version INCLUDE o.facility LIMIT 0, 100",
    "Q16": "SELECT o FROM FundingReference o ORDER BY o.funderName, o.awardNumber LIMIT 0, 100",
    "Q17": "SELECT o.id FROM Investigation o JOIN o.facility AS f ORDER BY f.name, o.name, o.visitId LIMIT 0, 100",
    "Q18": "SELECT o FROM Investigation o WHERE o.id = 42 INCLUDE o.facility, o.fundingReferences AS s1, s1.funding, o.investigationFacilityCycles AS s2, s2.facilityCycle AS s3, s3.facility, o.investigationGroups AS ig, ig.grouping, o.investigationInstruments AS ii, ii.instrument AS s4, s4.facility, o.investigationUsers AS iu, iu.user, o.keywords, o.parameters AS p, p.type AS pt, pt.facility, o.publications, o.shifts AS s5, s5.instrument AS s6, s6.facility, o.type AS t, t.facility LIMIT 0, 5",
    "Q19": "SELECT o FROM Sample o JOIN o.investigation AS i WHERE i.id = 42 ORDER BY o.name INCLUDE o.investigation, o.parameters AS p, p.type AS pt, pt.facility, o.type AS t, t.facility LIMIT 0, 5",
    "Q20": "SELECT o FROM Dataset o JOIN o.investigation AS i WHERE i.id = 42 ORDER BY o.name INCLUDE o.datasetInstruments AS s1, s1.instrument AS s2, s2.facility, o.datasetTechniques AS s3, s3.technique, o.investigation, o.parameters AS p, p.type AS pt, pt.facility, o.sample, o.type AS t, t.facility LIMIT 0, 5",
    "Q21": "SELECT o FROM Datafile o JOIN o.dataset AS ds JOIN ds.investigation AS i WHERE i.id = 42 ORDER BY ds.name, o.name INCLUDE o.datafileFormat AS dff, dff.facility, o.dataset, o.parameters AS p, p.type AS pt, pt.facility LIMIT 0, 5",
    "Q22": "SELECT o FROM DataCollection o ORDER BY o.id INCLUDE o.dataCollectionDatafiles AS s1, s1.datafile AS s2, s2.dataset AS s3, s3.investigation AS s4, s4.facility, o.dataCollectionDatasets AS s5, s5.dataset AS s6, s6.investigation AS s7, s7.facility, o.dataCollectionInvestigations AS s8, s8.investigation AS s9, s9.facility, o.parameters AS p, p.type AS pt, pt.facility LIMIT 0, 100",
    "Q23": "SELECT o.id FROM DataPublication o JOIN o.facility AS f ORDER BY f.name, o.pid LIMIT 0, 100",
    "Q24": "SELECT o FROM DataPublication o JOIN o.facility AS f WHERE o.id = 7 ORDER BY f.name, o.pid INCLUDE o.content, o.dates, o.facility, o.fundingReferences AS s1, s1.funding, o.relatedItems, o.subjects, o.type AS t, t.facility LIMIT 0, 100",
    "Q25": "SELECT o FROM DataPublicationUser o JOIN o.publication AS s1 JOIN s1.facility AS s2 JOIN o.user AS u WHERE s1.id = 7 ORDER BY s2.name, s1.pid, o.contributorType, o.orderKey, u.name INCLUDE o.affiliations, o.publication, o.user LIMIT 0, 100",
    "Q26": "SELECT o FROM Study o ORDER BY o.name, o.id INCLUDE o.studyInvestigations AS s1, s1.investigation AS s2, s2.facility, o.user LIMIT 0, 100",
    "Q27": "SELECT o FROM RelatedDatafile o JOIN o.destDatafile AS s1 JOIN s1.dataset AS s2 JOIN s2.investigation AS s3 JOIN s3.facility AS s4 JOIN o.sourceDatafile AS s5 JOIN s5.dataset AS s6 JOIN s6.investigation AS s7 JOIN s7.facility AS s8 ORDER BY s8.name, s7.name, s7.visitId, s6.name, s5.name, s4.name, s3.name, s3.visitId, s2.name, s1.name INCLUDE o.destDatafile AS s1, s1.dataset AS s2, s2.investigation AS s3, s3.facility, o.sourceDatafile AS s4, s4.dataset AS s5, s5.investigation AS s6, s6.facility LIMIT 0, 100",
    "Q28": "SELECT o FROM Job o JOIN o.application AS s1 JOIN s1.facility AS s2 ORDER BY s2.name, s1.name, s1.version, o.arguments, o.id INCLUDE o.application AS s1, s1.facility, o.inputDataCollection, o.outputDataCollection LIMIT 0, 100",
}
ONLY_5 = {"Q05", "Q09", "Q16", "Q23", "Q24", "Q25"}

# Pieces python-icat leaves out on older servers (ICAT-FACTS §3.3).
DROP_BEFORE = [
    ("5.0", "o.fundingReferences AS s1, s1.funding, "),
    ("5.0", "o.investigationFacilityCycles AS s2, s2.facilityCycle AS s3, s3.facility, "),
    ("5.0", "o.datasetInstruments AS s1, s1.instrument AS s2, s2.facility, "
            "o.datasetTechniques AS s3, s3.technique, "),
    ("5.0", "o.dataCollectionInvestigations AS s8, s8.investigation AS s9, s9.facility, "),
    ("6.2", "o.subjects, "),
]


def query_for(name, version, ids):
    if name in ONLY_5 and version_tuple(version) < (5, 0):
        return None
    text = Q[name]
    for since, piece in DROP_BEFORE:
        if version_tuple(version) < version_tuple(since):
            text = text.replace(piece, "")
    if version_tuple(version) < (4, 10):
        text = text.replace("o.shifts AS s5, s5.instrument AS s6, s6.facility", "o.shifts")
    text = text.replace("i.id = 42", "i.id = %d" % ids["inv"])
    text = text.replace("o.id = 42", "o.id = %d" % ids["inv"])
    text = text.replace("o.id = 7", "o.id = %d" % ids.get("pub", 0))
    return text.replace("s1.id = 7", "s1.id = %d" % ids.get("pub", 0))


@pytest.fixture(scope="module", params=VERSIONS)
def catalogue(request, tmp_path_factory):
    version = request.param
    path = tmp_path_factory.mktemp("jpql") / ("icat-%s.sqlite" % version)
    init_catalogue(str(path), version)
    client = EmbeddedClient(str(path))
    data = populate(client)
    yield version, client, data
    client.close()


def names(objs, attr="name"):
    return [o.values[attr] for o in objs]


def check(name, r, d, v5, v62):
    """The expected result of query ``name``."""
    if name == "Q01":
        assert names(r) == ["db/acord", "db/o'neil"]
    elif name == "Q02":
        assert names(r) == ["ingest"]
        assert [ug.user.name for ug in r[0].userGroups] == ["db/acord"]
        assert r[0].userGroups[0].get("grouping") is None     # no back reference
    elif name == "Q03":
        assert [x.what for x in r] == ["Facility", "Dataset"]  # NULL grouping kept
        assert r[0].grouping is None and r[1].grouping.name == "ingest"
    elif name == "Q04":
        assert [x.origin for x in r] == ["Dataset"]
    elif name in ("Q05", "Q06"):
        assert names(r) == (["SANS"] if name == "Q05" else ["ESNF"])
    elif name == "Q07":
        assert names(r) == ["E2"] and r[0].facility.name == "ESNF"
        assert r[0].instrumentScientists[0].user.name == "db/acord"
    elif name == "Q08":
        assert names(r) == ["Magnetic field", "Probe"]
        assert sorted(p.value for p in r[1].permissibleStringValues) == ["neutron", "x-ray"]
        assert r[0].permissibleStringValues == []
        assert r[0].applicableToDatafile is True and r[1].applicableToDatafile is False
        assert r[0].valueType == "NUMERIC"
    elif name in ("Q09", "Q10", "Q11", "Q12", "Q13", "Q14", "Q15"):
        assert len(r) == 1 and r[0].facility.name == "ESNF"
    elif name == "Q16":
        assert [x.funderName for x in r] == ["EC"]
    elif name == "Q17":
        assert r == [d["inv"].id, d["inv2"].id]
    elif name == "Q18":
        (inv,) = r
        assert inv.facility.name == "ESNF" and inv.values["type"].facility.name == "ESNF"
        assert sorted(iu.user.name for iu in inv.investigationUsers) == ["db/acord", "db/o'neil"]
        assert sorted(names(inv.keywords)) == ["Foo", "It's"]
        assert inv.parameters[0].numericValue == 7.3
        assert inv.parameters[0].values["type"].facility.name == "ESNF"
        assert inv.publications[0].fullReference == "Cordus, A. (2011)"
        assert inv.investigationInstruments[0].instrument.facility.name == "ESNF"
        assert inv.investigationGroups[0].grouping.name == "ingest"
        assert inv.shifts[0].comment == "night"
        if v5:
            assert inv.fundingReferences[0].funding.funderName == "EC"
            assert inv.investigationFacilityCycles[0].facilityCycle.facility.name == "ESNF"
        assert inv.keywords[0].get("investigation") is None
    elif name == "Q19":
        assert names(r) == ["ab3465"]
        assert r[0].parameters[0].stringValue == "x-ray"
        assert r[0].investigation.id == d["inv"].id
    elif name == "Q20":
        assert names(r) == ["e201215", "e201216"]
        assert r[0].sample.name == "ab3465" and r[1].sample is None
        assert r[0].parameters[0].numericValue == 5.0
        if v5:
            assert r[0].datasetTechniques[0].technique.name == "SANS"
            assert r[0].datasetInstruments[0].instrument.facility.name == "ESNF"
    elif name == "Q21":
        assert names(r) == ["e201215.dat", "e201215.nxs", "other.dat"]
        assert r[1].datafileFormat.facility.name == "ESNF" and r[0].datafileFormat is None
        assert r[1].parameters[0].numericValue == -1e-05 and r[0].parameters == []
        assert r[2].dataset.name == "e201216"
    elif name == "Q22":
        assert [x.id for x in r] == [d["dc"].id, d["dc2"].id]
        dc = r[0]
        s4 = dc.dataCollectionDatafiles[0].datafile.dataset.investigation
        assert s4.facility.name == "ESNF"
        assert dc.dataCollectionDatasets[0].dataset.name == "e201216"
        assert dc.parameters[0].numericValue == 1.5
        if v5:
            assert dc.dataCollectionInvestigations[0].investigation.visitId == "1"
        assert r[1].dataCollectionDatafiles == []
    elif name == "Q23":
        assert r == [d["pub"].id]
    elif name == "Q24":
        (pub,) = r
        assert pub.content.id == d["dc"].id and pub.dates[0].dateType == "Issued"
        assert pub.fundingReferences[0].funding.awardNumber == "42"
        assert pub.relatedItems[0].identifier == "DOI:1"
        assert pub.values["type"].facility.name == "ESNF"
        if v62:
            assert names(pub.subjects) == ["Physics"]
    elif name == "Q25":
        assert [x.orderKey for x in r] == ["01", "02"]
        assert names(r[0].affiliations) == ["ESNF"] and r[1].affiliations == []
        assert r[0].publication.pid == "DOI:00.0815/pub-00027"
    elif name == "Q26":
        assert names(r) == ["Study 1"] and r[0].user.name == "db/acord"
        assert r[0].studyInvestigations[0].investigation.facility.name == "ESNF"
        assert r[0].status == "NEW"
    elif name == "Q27":
        (rd,) = r
        assert rd.sourceDatafile.name == "e201215.nxs"
        assert rd.destDatafile.dataset.investigation.facility.name == "ESNF"
    elif name == "Q28":
        (job,) = r
        assert job.application.facility.name == "ESNF"
        assert job.inputDataCollection.id == d["dc"].id
        assert job.outputDataCollection.id == d["dc2"].id


@pytest.mark.parametrize("name", sorted(Q))
def test_dump_query(catalogue, name):
    version, client, data = catalogue
    ids = {k: o.id for k, o in data.items()}
    text = query_for(name, version, ids)
    if text is None:
        pytest.skip("not a %s query" % version)
    result = client.search(text)
    v = version_tuple(version)
    check(name, result, data, v >= (5, 0), v >= (6, 2))


def test_paging(catalogue):
    version, client, data = catalogue
    q = "SELECT o FROM Datafile o JOIN o.dataset AS ds JOIN ds.investigation AS i " \
        "WHERE i.id = %d ORDER BY ds.name, o.name LIMIT %d, %d"
    pages = [client.search(q % (data["inv"].id, skip, 2)) for skip in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 1, 0]


def ingest_queries(d):
    """§3.4 with this catalogue's ids."""
    return [
        ("SELECT o FROM Facility o WHERE o.name = 'ESNF'", d["fac"]),
        ("SELECT o FROM Investigation o JOIN o.facility AS f WHERE f.id = %d AND "
         "o.name = '2010-E2-0489-1' AND o.visitId = '1.1-N'" % d["fac"].id, d["inv"]),
        ("SELECT o FROM Dataset o JOIN o.investigation AS i WHERE i.id = %d AND "
         "o.name = 'e201215'" % d["inv"].id, d["ds"]),
        ("SELECT o FROM User o WHERE o.name = 'db/o''neil'", d["u2"]),
        ("SELECT o FROM Investigation o WHERE o.name = '2010-E2-0489-1' AND "
         "o.visitId = '1.1-N'", d["inv"]),
        ("SELECT o FROM Sample o JOIN o.investigation AS i WHERE i.id = %d AND "
         "o.name = 'ab3465'" % d["inv"].id, d["sample"]),
        ("SELECT o FROM DatasetType o WHERE o.name = 'raw'", d["dst"]),
        ("SELECT o FROM Dataset o JOIN o.investigation AS i JOIN i.facility AS s1 WHERE "
         "s1.name = 'ESNF' AND i.name = '2010-E2-0489-1' AND i.visitId = '1.1-N' AND "
         "o.name = 'e201215'", d["ds"]),
        ("SELECT o FROM Datafile o JOIN o.dataset AS ds WHERE ds.id = %d AND "
         "o.name = 'e201215.nxs' INCLUDE o.datafileFormat, o.dataset" % d["ds"].id, d["df1"]),
        ("SELECT o FROM InvestigationUser o JOIN o.investigation AS i JOIN o.user AS u "
         "WHERE i.id = %d AND o.role = 'PI' AND u.id = %d INCLUDE o.investigation, o.user"
         % (d["inv"].id, d["u1"].id), d["inv"].investigationUsers[0]),
        ("SELECT o FROM DatafileParameter o JOIN o.datafile AS s1 JOIN o.type AS t "
         "WHERE s1.id = %d AND t.id = %d INCLUDE o.datafile, o.type"
         % (d["df1"].id, d["ptn"].id), d["df1"].parameters[0]),
        # python-icat quotes every value, numbers and dates too.
        ("SELECT o FROM Datafile o WHERE o.fileSize = '1234'", d["df1"]),
        ("SELECT o FROM Dataset o WHERE o.startDate = '2008-03-13T10:39:42+00:00'", d["ds"]),
        ("SELECT o FROM Dataset o WHERE o.startDate = '2008-03-13T10:39:42Z' "
         "AND o.complete = 'false'", d["ds"]),
        ("SELECT o FROM Keyword o WHERE o.name = 'It''s'", d["inv"].keywords[1]),
        ("SELECT o FROM Dataset o WHERE o.investigation.facility.name = 'ESNF' AND "
         "o.investigation.id = %d AND o.name = 'e201215'" % d["inv"].id, d["ds"]),
    ]


def test_ingest_queries(catalogue):
    version, client, data = catalogue
    for text, expected in ingest_queries(data):
        result = client.search(text)
        assert [o.id for o in result] == [expected.id], text
    r = client.search(ingest_queries(data)[9][0])[0]
    assert r.user.name == "db/acord" and r.investigation.name == "2010-E2-0489-1"


def test_search_matching_and_unique_key(catalogue):
    version, client, data = catalogue
    found = client.search_matching(data["df1"])
    assert found.id == data["df1"].id and found.dataset.id == data["ds"].id
    key = client.get("Dataset", data["ds"].id, "INCLUDE 1")
    obj = client.search_unique_key(
        "Dataset_investigation-(facility-(name-ESNF)_name-2010=2DE2=2D0489=2D1_"
        "visitId-1=2E1=2DN)_name-e201215")
    assert obj.id == key.id
    assert client.search_unique_key("User_name-db=2Fo=27neil").id == data["u2"].id


def test_parser_rejects_control_characters():
    from icatdump.client import ParameterError
    with pytest.raises(ParameterError):
        parse("SELECT o FROM User o\tWHERE o.id = 1")


@pytest.mark.parametrize("query", ["SELECT o FROM User o WHERE o.é = 1",
                                   "SELECT o FROM User o WHERE o.id = ²",
                                   "SELECT o FROM User o WHERE o.id = -²",
                                   "SELECT o FROM User o WHERE o.id = ٣"])
def test_parser_rejects_non_ascii_outside_strings(query):
    """Letters and digits outside ASCII are no JPQL names or numbers: the
    server's ParameterError, not a crash of the tokenizer."""
    from icatdump.client import ParameterError
    with pytest.raises(ParameterError, match="Unexpected character"):
        parse(query)
    assert parse("SELECT o FROM User o WHERE o.name = 'é²٣'")


def test_expression_forms(catalogue):
    version, client, data = catalogue
    s = client.search
    assert s("SELECT COUNT(DISTINCT o.dataset) FROM Datafile o") == [2]
    assert s("SELECT MAX(o.fileSize) FROM Datafile o") == [1234]
    assert s("SELECT o.name FROM Datafile o WHERE o.name NOT LIKE 'e%'") == ["other.dat"]
    assert s("SELECT o.name FROM Datafile o WHERE UPPER(o.name) = 'OTHER.DAT'") == ["other.dat"]
    assert len(s("SELECT o FROM Datafile o WHERE o.id NOT IN (%d, %d)"
                 % (data["df1"].id, data["df2"].id))) == 1
    assert s("SELECT ds.name FROM Dataset ds WHERE ds.datafiles IS EMPTY") == []
    assert s("SELECT o.name FROM Dataset o LEFT OUTER JOIN o.sample AS sa "
             "WHERE sa.id IS NULL") == ["e201216"]
    assert s("SELECT o.name FROM Dataset o INNER JOIN o.datafiles AS df "
             "WHERE df.name = 'other.dat'") == ["e201216"]
    assert s("SELECT o.name FROM Dataset o WHERE o.id IN (SELECT df.dataset.id FROM "
             "Datafile df WHERE df.name = 'other.dat')") == ["e201216"]
    assert s("SELECT o.name FROM User o WHERE (o.name = 'db/acord' OR o.name = 'x') "
             "AND NOT o.fullName IS NULL") == ["db/acord"]
    # A literal on the left of a sub-select with literals of its own: the
    # parameters bind in the order of the SQL text.
    assert s("SELECT o.name FROM Datafile o WHERE 'other.dat' = (SELECT MAX(d.name) "
             "FROM Datafile d WHERE d.name <> 'zzz') AND o.name = 'other.dat'") == ["other.dat"]
    assert s("SELECT o.name FROM Datafile o WHERE 'zzz' = (SELECT MAX(d.name) "
             "FROM Datafile d WHERE d.name <> 'other.dat')") == []
    assert s("SELECT o.startDate FROM Dataset o WHERE o.startDate > "
             "{ts 2008-01-01 00:00:00}")[0].year == 2008
    assert len(s("SELECT o FROM Datafile o ORDER BY o.name LIMIT 1, *")) == 2
    assert len(s("SELECT o FROM Datafile o WHERE o.createId = :user")) == 3
