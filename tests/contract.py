"""The Client contract: tests every Client implementation must pass.

Use it by subclassing :class:`ClientContract` in a test module that provides
a ``client_factory`` fixture: ``client_factory(version="6.2")`` returns a
client on a new, empty catalogue of that ICAT schema version.  The embedded
store does so in ``test_store_contract.py``; a SOAP client can run the same
suite against a server.

:func:`populate` builds a small but complete catalogue (every entity type
the dump touches) through the client, for this suite and the query tests.
"""

from __future__ import annotations

import datetime as dt

import pytest

from icatdump.client import (NoSuchObjectError, ObjectExistsError, ParameterError,
                             ValidationError)
from icatdump.schema import version_tuple

UTC = dt.timezone.utc


def populate(client) -> dict:
    """Create a small catalogue; return its objects by short names."""
    v = version_tuple(client.schema.version)
    v5 = v >= (5, 0)
    new = client.new
    o = {}
    o["u1"] = new("User", name="db/acord", fullName="Aelius Cordus")
    o["u2"] = new("User", name="db/o'neil", fullName="Ann O'Neil")
    o["g1"] = new("Grouping", name="ingest", userGroups=[new("UserGroup", user=o["u1"])])
    client.create_many([o["u1"], o["u2"], o["g1"]])
    o["r1"] = new("Rule", crudFlags="R", what="Facility")
    o["r2"] = new("Rule", crudFlags="CRUD", what="Dataset", grouping=o["g1"])
    o["ps"] = new("PublicStep", origin="Dataset", field="investigation")
    o["fac"] = new("Facility", name="ESNF", fullName="Example Facility", daysUntilRelease=1095)
    client.create_many([o["r1"], o["r2"], o["ps"], o["fac"]])
    fac = o["fac"]
    o["inst"] = new("Instrument", name="E2", facility=fac,
                    instrumentScientists=[new("InstrumentScientist", user=o["u1"])])
    o["ptn"] = new("ParameterType", name="Magnetic field", units="T", valueType="NUMERIC",
                   facility=fac, applicableToDatafile=True, applicableToDataset=True,
                   applicableToInvestigation=True, applicableToSample=True,
                   applicableToDataCollection=True)
    o["pts"] = new("ParameterType", name="Probe", units="N/A", valueType="STRING",
                   facility=fac, applicableToSample=True,
                   permissibleStringValues=[new("PermissibleStringValue", value="x-ray"),
                                            new("PermissibleStringValue", value="neutron")])
    o["it"] = new("InvestigationType", name="Experiment", facility=fac)
    o["st"] = new("SampleType", name="NiMnGa", molecularFormula="NiMnGa", facility=fac)
    o["dst"] = new("DatasetType", name="raw", facility=fac)
    o["dff"] = new("DatafileFormat", name="NeXus", version="4.3.0", facility=fac)
    o["fc"] = new("FacilityCycle", name="c1", facility=fac,
                  startDate="2008-01-01T00:00:00+00:00", endDate="2008-06-30T00:00:00Z")
    o["app"] = new("Application", name="reduce", version="1.0", facility=fac)
    static = ["inst", "ptn", "pts", "it", "st", "dst", "dff", "fc", "app"]
    if v5:
        o["tech"] = new("Technique", name="SANS")
        o["dpt"] = new("DataPublicationType", name="Collected", facility=fac)
        o["fund"] = new("FundingReference", funderName="EC", awardNumber="42")
        static += ["tech", "dpt", "fund"]
    client.create_many([o[k] for k in static])

    inv = o["inv"] = new(
        "Investigation", name="2010-E2-0489-1", visitId="1.1-N", title="Durability",
        facility=fac, type=o["it"], startDate="2010-10-12T15:00:00+00:00",
        investigationUsers=[new("InvestigationUser", user=o["u1"], role="PI"),
                            new("InvestigationUser", user=o["u2"], role="Investigator")],
        keywords=[new("Keyword", name="Foo"), new("Keyword", name="It's")],
        parameters=[new("InvestigationParameter", type=o["ptn"], numericValue="7.3")],
        publications=[new("Publication", fullReference="Cordus, A. (2011)")],
        investigationInstruments=[new("InvestigationInstrument", instrument=o["inst"])],
        shifts=[new("Shift", startDate="2010-10-12T15:00:00+00:00",
                    endDate="2010-10-13T08:00:00+00:00", comment="night",
                    **({"instrument": o["inst"]} if v >= (4, 10) else {}))])
    if v >= (4, 4):
        inv.values["investigationGroups"] = [
            new("InvestigationGroup", grouping=o["g1"], role="writer")]
    if v5:
        inv.values["fundingReferences"] = [new("InvestigationFunding", funding=o["fund"])]
        inv.values["investigationFacilityCycles"] = [
            new("InvestigationFacilityCycle", facilityCycle=o["fc"])]
    o["inv2"] = new("Investigation", name="2012-EDDI-0390-1", visitId="1", title="Other",
                    facility=fac, type=o["it"])
    client.create_many([inv, o["inv2"]])
    o["sample"] = new("Sample", name="ab3465", investigation=inv, type=o["st"],
                      parameters=[new("SampleParameter", type=o["pts"], stringValue="x-ray")])
    client.create(o["sample"])
    ds = o["ds"] = new(
        "Dataset", name="e201215", investigation=inv, type=o["dst"], sample=o["sample"],
        complete="false", startDate="2008-03-13T10:39:42+00:00",
        parameters=[new("DatasetParameter", type=o["ptn"], numericValue=5.0)])
    o["ds2"] = new("Dataset", name="e201216", investigation=inv, type=o["dst"], complete=True)
    if v5:
        ds.values["datasetInstruments"] = [new("DatasetInstrument", instrument=o["inst"])]
        ds.values["datasetTechniques"] = [new("DatasetTechnique", technique=o["tech"])]
    client.create_many([ds, o["ds2"]])
    o["df1"] = new("Datafile", name="e201215.nxs", dataset=ds, datafileFormat=o["dff"],
                   fileSize="1234", datafileCreateTime="2008-03-13T10:40:00Z",
                   parameters=[new("DatafileParameter", type=o["ptn"], numericValue="-1e-05")])
    o["df2"] = new("Datafile", name="e201215.dat", dataset=ds)
    o["df3"] = new("Datafile", name="other.dat", dataset=o["ds2"])
    client.create_many([o["df1"], o["df2"], o["df3"]])
    dc = o["dc"] = new(
        "DataCollection",
        dataCollectionDatafiles=[new("DataCollectionDatafile", datafile=o["df1"])],
        dataCollectionDatasets=[new("DataCollectionDataset", dataset=o["ds2"])],
        parameters=[new("DataCollectionParameter", type=o["ptn"], numericValue=1.5)])
    if v5:
        dc.values["dataCollectionInvestigations"] = [
            new("DataCollectionInvestigation", investigation=o["inv2"])]
    o["dc2"] = new("DataCollection")
    client.create_many([dc, o["dc2"]])
    if v5:
        pub = o["pub"] = new(
            "DataPublication", pid="DOI:00.0815/pub-00027", title="Pub", facility=fac,
            content=dc, type=o["dpt"], publicationDate="2012-08-01T00:00:00+00:00",
            dates=[new("DataPublicationDate", date="2012-08-01", dateType="Issued")],
            fundingReferences=[new("DataPublicationFunding", funding=o["fund"])],
            relatedItems=[new("RelatedItem", identifier="DOI:1", relationType="Cites")])
        if v >= (6, 2):
            pub.values["subjects"] = [new("Subject", name="Physics")]
        client.create(pub)
        o["dpu"] = new("DataPublicationUser", publication=pub, user=o["u1"],
                       contributorType="Creator", orderKey="01",
                       affiliations=[new("Affiliation", name="ESNF")])
        o["dpu2"] = new("DataPublicationUser", publication=pub, user=o["u2"],
                        contributorType="Creator", orderKey="02")
        client.create_many([o["dpu"], o["dpu2"]])
    o["study"] = new("Study", name="Study 1", user=o["u1"], status="NEW",
                     studyInvestigations=[new("StudyInvestigation", investigation=inv)])
    o["rdf"] = new("RelatedDatafile", sourceDatafile=o["df1"], destDatafile=o["df2"],
                   relation="derived")
    o["job"] = new("Job", application=o["app"], arguments="-v", inputDataCollection=dc,
                   outputDataCollection=o["dc2"])
    client.create_many([o["study"], o["rdf"], o["job"]])
    return o


def grant_everything(root, name: str) -> None:
    """As ``root``, give the user ``name`` (``AUTH/NAME``) CREATE, READ,
    UPDATE and DELETE on every entity, by rules of a grouping of its own
    (catalogue data, as a real ICAT's rules are): a non-root user with these
    rules must keep the whole contract."""
    new = root.new
    user = new("User", name=name)
    root.create(user)
    grouping = new("Grouping", name="everything", userGroups=[new("UserGroup", user=user)])
    root.create(grouping)
    root.create_many([new("Rule", crudFlags="CRUD", what=et.name, grouping=grouping)
                      for et in root.schema])


class ClientContract:
    """Behaviour every Client must show.  Needs a ``client_factory`` fixture."""

    @pytest.fixture
    def client(self, client_factory):
        return client_factory("6.2")

    @pytest.fixture
    def data(self, client):
        return populate(client)

    # -- create / get --------------------------------------------------------------
    def test_create_sets_ids_on_objects_and_children(self, client, data):
        inv = data["inv"]
        assert isinstance(inv.id, int)
        assert all(isinstance(k.id, int) for k in inv.values["keywords"])
        assert len({data[k].id for k in ("fac", "inv", "ds", "df1")}) == 4

    def test_create_many_returns_top_level_ids(self, client, data):
        a = client.new("Facility", name="A")
        b = client.new("Facility", name="B", applications=[
            client.new("Application", name="x", version="1")])
        ids = client.create_many([a, b])
        assert ids == [a.id, b.id]

    def test_cascade_sets_back_reference(self, client, data):
        kws = client.search("SELECT o FROM Keyword o JOIN o.investigation AS i "
                            "WHERE i.id = %d ORDER BY o.name" % data["inv"].id)
        assert [k.name for k in kws] == ["Foo", "It's"]

    def test_get_with_includes(self, client, data):
        ds = client.get("Dataset", data["ds"].id, "INCLUDE 1")
        assert ds.name == "e201215" and ds.investigation.id == data["inv"].id
        assert ds.values["type"].name == "raw"      # Entity.type is the EntityType
        ds = client.get("Dataset ds INCLUDE ds.datafiles AS df, df.parameters", data["ds"].id)
        assert sorted(df.name for df in ds.datafiles) == ["e201215.dat", "e201215.nxs"]
        nxs = [df for df in ds.datafiles if df.name.endswith("nxs")][0]
        assert nxs.parameters[0].numericValue == -1e-05
        assert nxs.get("dataset") is None       # no back reference unless included

    def test_get_missing_raises(self, client, data):
        with pytest.raises(NoSuchObjectError):
            client.get("Dataset", 999999)

    def test_values_are_converted(self, client, data):
        ds = client.get("Dataset", data["ds"].id)
        assert ds.complete is False
        assert ds.startDate == dt.datetime(2008, 3, 13, 10, 39, 42, tzinfo=UTC)
        df = client.get("Datafile", data["df1"].id)
        assert df.fileSize == 1234
        assert client.get("Datafile", data["df2"].id).fileSize == 0
        assert client.get("Facility", data["fac"].id).daysUntilRelease == 1095

    # -- search forms ------------------------------------------------------------------
    def test_search_scalar_forms(self, client, data):
        assert client.search("SELECT COUNT(o) FROM Datafile o") == [3]
        names = client.search("SELECT o.name FROM Datafile o ORDER BY o.name DESC")
        assert names == ["other.dat", "e201215.nxs", "e201215.dat"]
        assert client.search("SELECT o.id FROM Facility o") == [data["fac"].id]
        assert client.search("SELECT DISTINCT o.dataset.name FROM Datafile o "
                             "ORDER BY o.dataset.name") == ["e201215", "e201216"]

    def test_search_limit(self, client, data):
        q = "SELECT o FROM Datafile o ORDER BY o.name LIMIT %d, %d"
        assert [d.name for d in client.search(q % (1, 1))] == ["e201215.nxs"]
        assert len(client.search(q % (0, 100))) == 3
        assert client.search(q % (5, 5)) == []

    def test_search_conditions(self, client, data):
        s = client.search
        assert len(s("SELECT o FROM Datafile o WHERE o.name LIKE 'e2%'")) == 2
        assert len(s("SELECT o FROM Datafile o WHERE o.fileSize > '1000'")) == 1
        assert len(s("SELECT o FROM Datafile o WHERE o.datafileFormat IS NULL")) == 2
        assert len(s("SELECT o FROM Datafile o WHERE NOT (o.name = 'other.dat' "
                     "OR o.name = 'e201215.dat')")) == 1
        assert len(s("SELECT o FROM Datafile o WHERE o.name IN ('other.dat', 'x')")) == 1
        assert len(s("SELECT o FROM Dataset o WHERE o.startDate = "
                     "'2008-03-13T11:39:42+01:00'")) == 1
        assert len(s("SELECT o FROM Dataset o WHERE o.startDate BETWEEN "
                     "{ts 2008-01-01 00:00:00} AND {ts 2008-12-31 00:00:00}")) == 1
        assert len(s("SELECT o FROM Dataset o WHERE o.complete = TRUE")) == 1
        assert len(s("SELECT o FROM ParameterType o WHERE o.valueType = "
                     "org.icatproject.ParameterValueType.NUMERIC")) == 1
        assert len(s("SELECT o FROM User o WHERE o.name = 'db/o''neil'")) == 1
        assert len(s("SELECT o FROM Datafile o WHERE o.dataset.investigation.facility.name"
                     " = 'ESNF' AND o.dataset.id = %d" % data["ds"].id)) == 2

    def test_search_errors(self, client, data):
        for bad in ("SELECT o FROM Nonsense o", "SELECT o FROM Datafile o WHERE o.nope = 1",
                    "SELECT o FROM Datafile o WHERE", "SELECT o FROM Datafile o LIMIT x",
                    "SELECT o FROM Datafile o WHERE o.name = 'x"):
            with pytest.raises(ParameterError):
                client.search(bad)

    def test_max_entities(self, client, data):
        if not hasattr(type(client), "max_entities") or \
                getattr(type(client).max_entities, "fset", None) is None:
            pytest.skip("max_entities not configurable")
        client.max_entities = 3
        assert len(client.search("SELECT o FROM Datafile o")) == 3
        with pytest.raises(ValidationError, match="attempt to process more than 3 entities"):
            client.search("SELECT o FROM Datafile o INCLUDE o.dataset")

    # -- update / delete ---------------------------------------------------------------
    def test_update_is_full_overwrite(self, client, data):
        df = client.get("Datafile", data["df1"].id, "INCLUDE 1")
        before = client.search("SELECT o.modTime FROM Datafile o WHERE o.id = %d" % df.id)[0]
        df.values["description"] = "new"
        df.values["checksum"] = None
        df.values["datafileFormat"] = None
        del df.values["location"]
        client.update(df)
        again = client.get("Datafile", df.id, "INCLUDE 1")
        assert again.description == "new" and again.checksum is None
        assert again.datafileFormat is None
        assert client.search("SELECT o.modTime FROM Datafile o WHERE o.id = %d"
                             % df.id)[0] >= before

    def test_update_validation(self, client, data):
        df = client.get("Datafile", data["df2"].id, "INCLUDE 1")
        df.values["name"] = "e201215.nxs"
        with pytest.raises(ObjectExistsError):
            client.update(df)
        df.values["name"] = None
        with pytest.raises(ValidationError, match="Datafile: name cannot be null."):
            client.update(df)

    def test_delete_cascades(self, client, data):
        client.delete(data["ds"])
        assert client.search("SELECT COUNT(o) FROM Datafile o") == [1]
        assert client.search("SELECT COUNT(o) FROM DatafileParameter o") == [0]
        with pytest.raises(NoSuchObjectError):
            client.get("Dataset", data["ds"].id)

    # -- validation -------------------------------------------------------------------
    def test_not_null(self, client, data):
        with pytest.raises(ValidationError) as e:
            client.create(client.new("Investigation", name="x", title="t", facility=data["fac"],
                                     type=data["it"]))
        assert e.value.message == "Investigation: visitId cannot be null."

    def test_not_null_relation(self, client, data):
        with pytest.raises(ValidationError) as e:
            client.create(client.new("Dataset", name="x", type=data["dst"]))
        assert e.value.message == "Dataset: investigation cannot be null."

    def test_length(self, client, data):
        with pytest.raises(ValidationError) as e:
            client.create(client.new("PublicStep", origin="x" * 33, field="y"))
        assert e.value.message == "PublicStep: origin cannot have length > 32"

    def test_bad_values(self, client, data):
        for attr, value in (("fileSize", "many"), ("datafileCreateTime", "yesterday")):
            with pytest.raises(ValidationError, match="Datafile: " + attr):
                client.create(client.new("Datafile", name="n", dataset=data["ds"],
                                         **{attr: value}))
        with pytest.raises(ValidationError, match="Dataset: complete"):
            client.create(client.new("Dataset", name="n", investigation=data["inv"],
                                     type=data["dst"], complete="perhaps"))
        with pytest.raises(ValidationError, match="ParameterType: valueType"):
            client.create(client.new("ParameterType", name="n", units="u", facility=data["fac"],
                                     valueType="COLOUR"))

    def test_duplicate_message(self, client, data):
        with pytest.raises(ObjectExistsError) as e:
            client.create(client.new("Dataset", name="e201215", investigation=data["inv"],
                                     type=data["dst"]))
        assert e.value.message == ("Dataset exists with investigation = 'Investigation:%d', "
                                   "name = 'e201215'" % data["inv"].id)

    def test_duplicate_inside_one_call(self, client, data):
        objs = [client.new("Facility", name=n) for n in ("A", "B", "A")]
        with pytest.raises(ObjectExistsError) as e:
            client.create_many(objs)
        assert e.value.offset == 2
        assert e.value.message == "Facility exists with name = 'A'"

    def test_duplicate_child(self, client, data):
        inv = client.new("Investigation", name="n", visitId="v", title="t",
                         facility=data["fac"], type=data["it"],
                         keywords=[client.new("Keyword", name="k"),
                                   client.new("Keyword", name="k")])
        with pytest.raises(ObjectExistsError, match="Keyword exists with name = 'k'"):
            client.create(inv)

    def test_missing_related_object(self, client, data):
        ghost = client.new("Facility", name="ghost")
        ghost.id = 987654
        with pytest.raises(NoSuchObjectError):
            client.create(client.new("DatasetType", name="x", facility=ghost))

    def test_parameter_applicability(self, client, data):
        with pytest.raises(ValidationError) as e:
            client.create(client.new("Datafile", name="n", dataset=data["ds"], parameters=[
                client.new("DatafileParameter", type=data["pts"], stringValue="x-ray")]))
        assert e.value.message == "Parameter of type Probe is not applicable to a Datafile"

    def test_parameter_applicability_uses_stored_type(self, client, data):
        stub = client.new("ParameterType")
        stub.id = data["ptn"].id         # a stub with only the id is enough
        client.create(client.new("Datafile", name="n", dataset=data["ds"], parameters=[
            client.new("DatafileParameter", type=stub, numericValue=1)]))

    def test_error_offset_and_rollback(self, client, data):
        before = client.search("SELECT COUNT(o) FROM Facility o")[0]
        objs = [client.new("Facility", name="ok1", investigationTypes=[
                    client.new("InvestigationType", name="t")]),
                client.new("Facility", name="ok2"),
                client.new("Facility")]
        with pytest.raises(ValidationError) as e:
            client.create_many(objs)
        assert e.value.offset == 2
        assert client.search("SELECT COUNT(o) FROM Facility o")[0] == before
        assert client.search("SELECT COUNT(o) FROM InvestigationType o "
                             "WHERE o.name = 't'") == [0]
        assert objs[0].id is None

    def test_first_error_wins(self, client, data):
        objs = [client.new("Facility", name="fresh"),
                client.new("Facility", name="ESNF"),       # duplicate at 1
                client.new("Facility")]                    # not null at 2
        with pytest.raises(ObjectExistsError) as e:
            client.create_many(objs)
        assert e.value.offset == 1

    def test_create_after_failure_works(self, client, data):
        with pytest.raises(ObjectExistsError):
            client.create(client.new("Facility", name="ESNF"))
        assert client.create(client.new("Facility", name="Other")) > 0
