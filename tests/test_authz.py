"""Authorization and audit fields of the local ICAT server, as icat.server applies them.

A real server on 127.0.0.1 over an embedded catalogue: root creates the data
and the rules (plain catalogue objects), then non-root users log in and see
and change only what their rules allow -- through our SoapClient and through
python-icat itself.
"""

import datetime as dt

import pytest

from icatdump.client import PrivilegesError
from icatdump.soap.client import SoapClient
from icatdump.soap.server import serve
from icatdump.store import EmbeddedClient, init_catalogue

ACCOUNTS = {"root": "secret", "db/acord": "pw-a", "db/nbour": "pw-n", "simple/anna": "pw-x"}


@pytest.fixture
def server(tmp_path):
    path = str(tmp_path / "icat.sqlite")
    init_catalogue(path, "6.2")
    srv = serve(lambda: EmbeddedClient(path), accounts=ACCOUNTS)
    yield srv
    srv.shutdown()


def login(server, plugin, name, password) -> SoapClient:
    c = SoapClient(server.url)
    c.login(plugin, {"username": name, "password": password})
    return c


@pytest.fixture
def data(server):
    """Two investigations; acord is in the grouping of the first one only.

    Rules: everyone reads Facility; members of 'readers' read the
    investigations their grouping is attached to (a restricted JPQL rule) and
    may create Keywords of those; Dataset is reachable from an investigation
    by a PublicStep, but readable by no rule."""
    root = login(server, "simple", "root", "secret")
    new = root.new
    acord = new("User", name="db/acord")
    nbour = new("User", name="db/nbour")
    root.create_many([acord, nbour])
    readers = new("Grouping", name="readers", userGroups=[new("UserGroup", user=acord)])
    root.create(readers)
    fac = new("Facility", name="ESNF")
    root.create(fac)
    it = new("InvestigationType", name="exp", facility=fac)
    dst = new("DatasetType", name="raw", facility=fac)
    root.create_many([it, dst])
    inv1 = new("Investigation", name="i1", title="one", visitId="1", facility=fac, type=it,
               investigationGroups=[new("InvestigationGroup", grouping=readers, role="r")],
               datasets=[new("Dataset", name="ds1", type=dst, complete=False)])
    inv2 = new("Investigation", name="i2", title="two", visitId="1", facility=fac, type=it)
    root.create_many([inv1, inv2])
    mine = ("SELECT i FROM Investigation i JOIN i.investigationGroups ig JOIN ig.grouping g "
            "JOIN g.userGroups ug JOIN ug.user u WHERE u.name = :user")
    root.create_many([
        new("Rule", crudFlags="R", what="Facility"),
        new("Rule", crudFlags="R", what=mine, grouping=readers),
        new("Rule", crudFlags="CR", grouping=readers, what=(
            "SELECT k FROM Keyword k JOIN k.investigation i JOIN i.investigationGroups ig "
            "JOIN ig.grouping g JOIN g.userGroups ug JOIN ug.user u WHERE u.name = :user")),
        new("PublicStep", origin="Investigation", field="datasets"),
    ])
    yield {"root": root, "inv1": inv1, "inv2": inv2, "fac": fac}
    root.close()


def test_root_sees_everything_and_beans_carry_audit_fields(server, data):
    root = data["root"]
    assert sorted(i.name for i in root.search("SELECT i FROM Investigation i")) == ["i1", "i2"]
    # Our client drops the audit fields; python-icat reads them (below).
    import icat
    client = icat.Client(server.url + "?wsdl", checkCert=False)
    client.login("simple", {"username": "root", "password": "secret"})
    inv = client.search("SELECT i FROM Investigation i WHERE i.name = 'i1'")[0]
    assert inv.createId == "simple/root" and inv.modId == "simple/root"
    assert isinstance(inv.modTime, dt.datetime) and isinstance(inv.createTime, dt.datetime)
    # ... and may search by them
    assert len(client.search("SELECT i FROM Investigation i WHERE i.createId = 'simple/root'")) == 2
    assert client.getProperties()
    client.logout()


def test_user_reads_only_what_rules_allow(server, data):
    acord = login(server, "db", "acord", "pw-a")
    assert [i.name for i in acord.search("SELECT i FROM Investigation i")] == ["i1"]
    assert acord.search("SELECT COUNT(i) FROM Investigation i") == [1]
    # A JOIN variable is restricted too: no rule lets acord read Datasets.
    assert acord.search("SELECT i FROM Investigation i JOIN i.datasets d") == []
    assert acord.search("SELECT d FROM Dataset d") == []
    # ... but the public step Investigation.datasets shows them as INCLUDEs,
    # while facility is public (an unrestricted rule for everyone).
    inv = acord.search("SELECT i FROM Investigation i INCLUDE i.datasets, i.facility")[0]
    assert [d.name for d in inv.values["datasets"]] == ["ds1"]
    assert inv.values["facility"].values["name"] == "ESNF"
    # LIMIT applies after the restriction, as python-icat's paging needs.
    assert [i.name for i in acord.search("SELECT i FROM Investigation i LIMIT 0, 1")] == ["i1"]
    with pytest.raises(PrivilegesError, match="READ access to this Investigation is not allowed"):
        acord.get("Investigation", data["inv2"].id)
    assert acord.get("Investigation", data["inv1"].id).values["name"] == "i1"


def test_user_without_rules_sees_nothing_but_public_tables(server, data):
    nbour = login(server, "db", "nbour", "pw-n")
    assert nbour.search("SELECT i FROM Investigation i") == []
    assert nbour.search("SELECT COUNT(i) FROM Investigation i") == [0]
    assert [f.values["name"] for f in nbour.search("SELECT f FROM Facility f")] == ["ESNF"]


def test_writes_need_their_rules(server, data):
    acord = login(server, "db", "acord", "pw-a")
    new = acord.new
    kid = acord.create(new("Keyword", name="allowed", investigation=data["inv1"]))
    assert kid > 0
    with pytest.raises(PrivilegesError, match="CREATE access to this Keyword is not allowed"):
        acord.create(new("Keyword", name="denied", investigation=data["inv2"]))
    # the denied object was rolled back
    names = [k.values["name"] for k in data["root"].search("SELECT k FROM Keyword k")]
    assert names == ["allowed"]
    with pytest.raises(PrivilegesError, match="UPDATE access to this Investigation"):
        inv = acord.get("Investigation", data["inv1"].id)
        inv.values["title"] = "changed"
        acord.update(inv)
    with pytest.raises(PrivilegesError, match="DELETE access to this Investigation"):
        acord.delete(data["inv1"])


def test_is_access_allowed_and_get_properties(server, data):
    import icat
    client = icat.Client(server.url + "?wsdl", checkCert=False)
    client.login("db", {"username": "acord", "password": "pw-a"})
    inv1 = client.get("Investigation", data["inv1"].id)
    assert client.isAccessAllowed(inv1, "READ") is True
    assert client.isAccessAllowed(inv1, "UPDATE") is False
    kw = client.new("Keyword", name="maybe", investigation=inv1)
    assert client.isAccessAllowed(kw, "CREATE") is True
    assert data["root"].search("SELECT k FROM Keyword k") == []     # tried, rolled back
    with pytest.raises(icat.exception.ICATPrivilegesError, match="rootUserNames"):
        client.getProperties()
    client.logout()


def test_accounts_belong_to_their_authenticator(server, data):
    login(server, "simple", "anna", "pw-x").close()
    from icatdump.client import SessionError
    with pytest.raises(SessionError):
        login(server, "db", "anna", "pw-x")
    with pytest.raises(SessionError):
        login(server, "simple", "acord", "pw-a")


def test_rules_change_with_the_catalogue(server, data):
    """Rules are cached per user; a write to Rule makes them fresh."""
    nbour = login(server, "db", "nbour", "pw-n")
    assert nbour.search("SELECT i FROM Investigation i") == []
    rule = data["root"].new("Rule", crudFlags="R", what="Investigation")
    data["root"].create(rule)
    assert len(nbour.search("SELECT i FROM Investigation i")) == 2
    data["root"].delete(rule)
    assert nbour.search("SELECT i FROM Investigation i") == []


def test_embedded_client_without_server_is_root_equivalent(tmp_path, server, data):
    # the same catalogue file, opened locally: no gate, whoever the user is
    path = server.service.client.url
    local = EmbeddedClient(path, user="db/nbour")
    try:
        assert len(local.search("SELECT i FROM Investigation i")) == 2
    finally:
        local.close()


def test_dates_without_offset_are_read_in_the_server_zone(tmp_path):
    """In requests (values, query literals) as a real server reads them in
    its own zone; one with an offset is that instant."""
    import zoneinfo

    import icat
    path = str(tmp_path / "tz.sqlite")
    init_catalogue(path, "6.2")
    srv = serve(lambda: EmbeddedClient(path), accounts=ACCOUNTS,
                timezone=zoneinfo.ZoneInfo("Europe/Berlin"))
    try:
        client = icat.Client(srv.url + "?wsdl", checkCert=False)
        client.login("simple", {"username": "root", "password": "secret"})
        fac = client.new("Facility", name="F")
        fac.create()
        # python-icat sends the text as it is given: a date alone
        cycle = client.new("FacilityCycle", name="c", facility=fac, startDate="2007-01-01",
                           endDate="2007-07-01T00:00:00+00:00")
        cycle.create()
        got = client.search("SELECT c FROM FacilityCycle c")[0]
        utc = dt.timezone.utc
        assert got.startDate.astimezone(utc) == dt.datetime(2006, 12, 31, 23, 0, tzinfo=utc)
        assert got.endDate.astimezone(utc) == dt.datetime(2007, 7, 1, 0, 0, tzinfo=utc)
        # ... and so are the dates of a query: {ts ...} and quoted, each time
        # (the second query of a shape reuses the first one's translation).
        for start in ("{ts 2007-01-01 00:00:00}", "'2007-01-01 00:00:00'",
                      "{ts 2007-01-01 00:00:00}"):
            assert client.search("SELECT c.name FROM FacilityCycle c WHERE c.startDate = %s"
                                 % start) == ["c"]
        for start in ("{ts 2006-12-31 23:00:00}", "'2006-12-31 23:00:00'"):
            assert client.search("SELECT c.name FROM FacilityCycle c WHERE c.startDate = %s"
                                 % start) == []
        assert client.search("SELECT c.name FROM FacilityCycle c "
                             "WHERE c.startDate = '2006-12-31T23:00:00Z'") == ["c"]
        client.logout()
    finally:
        srv.shutdown()


@pytest.mark.parametrize("args, message", [
    (["--account", "db/:pw"], "--account wants [AUTH/]NAME:PASSWORD"),
    (["--account", "/x:pw"], "--account wants [AUTH/]NAME:PASSWORD"),
    (["--root-user", "root"], "--root-user wants AUTH/NAME"),
    (["--timezone", "Mars/Olympus"], "--timezone: unknown time zone 'Mars/Olympus'"),
])
def test_serve_options_refused_in_one_line(tmp_path, args, message):
    import subprocess
    import sys
    path = str(tmp_path / "o.sqlite")
    init_catalogue(path, "6.2")
    r = subprocess.run([sys.executable, "-m", "icatdump.cli.data", "serve", path] + args,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_create_checks_the_listed_objects_not_their_children(server, data):
    """icat.server checks CREATE for the bean created, not for the children
    created with it: a Keyword rule does not need an InvestigationParameter rule."""
    root = data["root"]
    pt = root.new("ParameterType", name="p", units="1", valueType="STRING",
                  facility=data["fac"], applicableToInvestigation=True)
    root.create(pt)
    root.create(root.new("Rule", crudFlags="C", what="Investigation",
                         grouping=root.search("SELECT g FROM Grouping g")[0]))
    acord = login(server, "db", "acord", "pw-a")
    inv = acord.new("Investigation", name="i3", title="three", visitId="1",
                    facility=data["fac"], type=root.search("SELECT t FROM InvestigationType t")[0],
                    parameters=[acord.new("InvestigationParameter", type=pt, stringValue="x")])
    assert acord.create(inv) > 0
    assert len(root.search("SELECT p FROM InvestigationParameter p")) == 1


# -- a non-root user with restricted READ rules over the contract's data ---------------

#: The reader's rules (grouping "readers"): entity → the JPQL of its READ rule.
READER_RULES = {
    "Investigation": "SELECT i FROM Investigation i JOIN i.investigationUsers iu "
                     "JOIN iu.user u WHERE u.name = :user",
    "Dataset": "SELECT ds FROM Dataset ds WHERE ds.complete = TRUE",
    # the bean of a rule may be a JOIN variable
    "Datafile": "SELECT df FROM Dataset ds JOIN ds.datafiles df WHERE ds.complete = FALSE",
    "Keyword": "SELECT k FROM Keyword k WHERE k.name = 'Foo'",
}
READER = "db/o'neil"


@pytest.fixture(scope="module", params=["embedded", "soap"])
def restricted(request, tmp_path_factory):
    """``(root, reader, expected)``: the contract's catalogue, the rules of
    :data:`READER_RULES` given to ``db/o'neil``, and for each ruled entity
    the ids root's own search of the rule's query finds."""
    from contract import populate
    path = str(tmp_path_factory.mktemp("restricted") / "icat.sqlite")
    init_catalogue(path, "6.2")
    closing = []
    if request.param == "embedded":
        root = EmbeddedClient(path)
        root.authorize()
        reader = EmbeddedClient(path)
        reader.authorize()
        closing += [root, reader]
    else:
        srv = serve(lambda: EmbeddedClient(path), accounts={"root": "secret", READER: "pw"})
        root = login(srv, "simple", "root", "secret")
        closing.append(root)
    objs = populate(root)
    new = root.new
    readers = new("Grouping", name="readers", userGroups=[new("UserGroup", user=objs["u2"])])
    root.create(readers)
    root.create_many([new("Rule", crudFlags="R", what=what, grouping=readers)
                      for what in READER_RULES.values()])
    if request.param == "embedded":
        reader.login("db", {"username": "o'neil"})
    else:
        reader = login(srv, "db", "o'neil", "pw")
        closing.append(reader)
    literal = "'%s'" % READER.replace("'", "''")
    expected = {}
    for bean, what in READER_RULES.items():
        var = what.split()[1]
        ids = root.search(what.replace("SELECT %s " % var, "SELECT %s.id " % var, 1)
                          .replace(":user", literal))
        expected[bean] = set(ids)
    yield root, reader, expected
    for c in closing:
        c.close()
    if request.param == "soap":
        srv.shutdown()


def ids_of(objs) -> set:
    """Ids of a list of objects; None (an empty list, which SOAP does not
    send) is no objects."""
    return {o.id for o in objs or ()}


def test_restricted_reader_searches_and_counts_the_rule_selected_subset(restricted):
    root, reader, expected = restricted
    for bean, ids in expected.items():
        everything = ids_of(root.search("SELECT o FROM %s o" % bean))
        assert ids and ids < everything, bean       # the rules select a proper subset
        assert ids_of(reader.search("SELECT o FROM %s o" % bean)) == ids, bean
        assert reader.search("SELECT COUNT(o) FROM %s o" % bean) == [len(ids)], bean
        assert set(reader.search("SELECT o.id FROM %s o" % bean)) == ids, bean
    # no rule: nothing; a public table (populate's unrestricted Facility rule): everything
    assert reader.search("SELECT s FROM Sample s") == []
    assert reader.search("SELECT COUNT(s) FROM Sample s") == [0]
    assert reader.search("SELECT f.name FROM Facility f") == ["ESNF"]
    # a JOIN variable is held to its own rules: no readable Datafile is in a readable Dataset
    pairs = root.search("SELECT df.id, ds.id FROM Datafile df JOIN df.dataset ds")
    both = [p for p in pairs if p[0] in expected["Datafile"] and p[1] in expected["Dataset"]]
    assert reader.search("SELECT COUNT(df) FROM Datafile df JOIN df.dataset ds") == [len(both)]


def test_restricted_reader_gets_only_the_rule_selected_objects(restricted):
    root, reader, expected = restricted
    for bean, ids in expected.items():
        for obj_id in ids_of(root.search("SELECT o FROM %s o" % bean)):
            if obj_id in ids:
                assert reader.get(bean, obj_id).id == obj_id
            else:
                with pytest.raises(PrivilegesError,
                                   match="READ access to this %s is not allowed" % bean):
                    reader.get(bean, obj_id)


def test_restricted_reader_includes_only_the_rule_selected_objects(restricted):
    root, reader, expected = restricted
    invs = reader.search("SELECT i FROM Investigation i "
                         "INCLUDE i.datasets AS ds, ds.datafiles, i.keywords")
    assert ids_of(invs) == expected["Investigation"]
    for inv in invs:
        full = root.get("Investigation i INCLUDE i.datasets AS ds, ds.datafiles, i.keywords",
                        inv.id)
        assert ids_of(inv.get("keywords")) == ids_of(full.keywords) & expected["Keyword"]
        assert ids_of(inv.get("datasets")) == ids_of(full.datasets) & expected["Dataset"]
        files = {ds.id: ids_of(ds.datafiles) for ds in full.datasets}
        for ds in inv.get("datasets") or ():
            assert ids_of(ds.get("datafiles")) == files[ds.id] & expected["Datafile"]


# -- Rules are checked when created or updated, as icat.server's Rule.fixup does -------

BAD_RULES = [
    ("RX", "Dataset", "CRUD value RX contains false"),
    (" cx", "Dataset", "CRUD value CX contains true"),     # the flag C, not the letter
    ("R", "SELECT COUNT(ds) FROM Dataset ds",
     "Expected token from types [NAME] at token COUNT in SELECT < COUNT > ( ds "),
    ("R", "SELECT ds, ds.name FROM Dataset ds",
     "Expected token from types [FROM] at token , in SELECT ds < , > ds.name FROM "),
    ("R", "SELECT x FROM Dataset ds",
     "idVar 'X' referenced in the SELECT clause is not defined in the FROM clause."),
    ("U", "SELECT ds.nope FROM Dataset ds",
     "class org.icatproject.core.entity.Dataset does not have attribute nope"),
    ("RU", "SELECT ds.name FROM Dataset ds",
     "Attribute selection in rules is only allowed for Update"),
    ("R", "SELECT ds FROM Dataset ds WHERE ds.name = 'a' ORDER BY ds.name",
     "No more input expected at token ORDER in = 'a' < ORDER > BY ds.name "),
    ("R", "SELECT ds FROM Nonsense ds", None),
    ("R", "Dataset [name = ", None),
]


@pytest.fixture
def embedded(tmp_path):
    path = str(tmp_path / "rules.sqlite")
    init_catalogue(path, "6.2")
    c = EmbeddedClient(path)
    yield c
    c.close()


@pytest.mark.parametrize("flags, what, message", BAD_RULES)
def test_bad_rules_are_refused_and_nothing_is_created(embedded, flags, what, message):
    from icatdump.client import ParameterError
    good = embedded.new("Rule", crudFlags="R", what="Facility")
    bad = embedded.new("Rule", crudFlags=flags, what=what)
    with pytest.raises(ParameterError) as e:
        embedded.create_many([good, bad])
    assert e.value.offset == 1
    if message is not None:
        assert e.value.message == message
    assert embedded.search("SELECT COUNT(r) FROM Rule r") == [0]


def test_rule_updates_are_checked_too(embedded):
    from icatdump.client import ParameterError
    rule = embedded.new("Rule", crudFlags="U", what="SELECT ds.name FROM Dataset ds")
    embedded.create(rule)
    rule.values["crudFlags"] = "UD"
    with pytest.raises(ParameterError, match="only allowed for Update"):
        embedded.update(rule)
    assert embedded.search("SELECT r.crudFlags FROM Rule r") == ["U"]


def test_rule_flags_are_stored_upper_cased_and_trimmed(embedded):
    """As icat.server's Rule.fixup stores them, on create (one object and
    many) and on update; the object sent keeps what it was given."""
    one = embedded.new("Rule", crudFlags=" cr ", what="Facility")
    embedded.create(one)
    embedded.create_many([embedded.new("Rule", crudFlags="d", what="Dataset"),
                          embedded.new("Rule", crudFlags="U", what="Datafile")])
    assert one.values["crudFlags"] == " cr "
    assert embedded.search("SELECT r.crudFlags FROM Rule r ORDER BY r.id") == ["CR", "D", "U"]
    one.values["crudFlags"] = "ru\t\x01"      # Java's trim(): all up to U+0020
    embedded.update(one)
    assert embedded.search("SELECT r.crudFlags FROM Rule r WHERE r.id = %d" % one.id) == ["RU"]


def test_good_rules_of_every_form_are_accepted(embedded):
    f = embedded.new("Facility", name="F")
    g = embedded.new("Grouping", name="g")
    embedded.create_many([f, g])
    whats = ["Dataset", "Dataset [complete = TRUE]",
             "SELECT ds FROM Dataset ds WHERE ds.name = :user",
             "SELECT p FROM Dataset ds JOIN ds.parameters p WHERE ds.complete = TRUE",
             "SELECT ds.name FROM Dataset ds", "SELECT ds.investigation FROM Dataset ds"]
    embedded.create_many([embedded.new("Rule", crudFlags="U", what=w, grouping=g)
                          for w in whats])
    assert embedded.search("SELECT COUNT(r) FROM Rule r") == [len(whats)]


def test_bad_rule_through_python_icat_is_icats_bad_parameter(server, data):
    import icat
    client = icat.Client(server.url + "?wsdl", checkCert=False)
    client.login("simple", {"username": "root", "password": "secret"})
    with pytest.raises(icat.exception.ICATParameterError,
                       match="Attribute selection in rules is only allowed for Update"):
        client.new("Rule", crudFlags="R", what="SELECT f.name FROM Facility f").create()
    client.logout()


# -- Attribute rules and public tables -----------------------------------------------

def test_attribute_rules_do_not_grant_a_soap_update(server, data):
    """icat.server's update (SOAP) asks Rule.UpdateQuery, which wants
    ``attribute IS NULL``; attribute rules count only in its REST write."""
    import icat
    root = data["root"]
    readers = root.search("SELECT g FROM Grouping g")[0]
    root.create(root.new("Rule", crudFlags="U", grouping=readers,
                         what="SELECT i.title FROM Investigation i"))
    acord = login(server, "db", "acord", "pw-a")
    inv = root.get("Investigation", data["inv1"].id, "INCLUDE 1")    # every relation set
    inv.values["title"] = "changed"
    with pytest.raises(PrivilegesError, match="UPDATE access to this Investigation"):
        acord.update(inv)
    client = icat.Client(server.url + "?wsdl", checkCert=False)
    client.login("db", {"username": "acord", "password": "pw-a"})
    assert client.isAccessAllowed(client.get("Investigation", data["inv1"].id), "UPDATE") is False
    client.logout()
    # ... while a whole-object rule does
    root.create(root.new("Rule", crudFlags="U", grouping=readers, what="Investigation"))
    acord.update(inv)
    assert root.get("Investigation", data["inv1"].id).values["title"] == "changed"


def test_any_unrestricted_rule_without_grouping_makes_a_public_table(server, data):
    """icat.server's Rule.PublicQuery: no WHERE and no grouping, whatever
    the flags -- a create-only rule lets everyone read the table."""
    nbour = login(server, "db", "nbour", "pw-n")
    assert nbour.search("SELECT t FROM InvestigationType t") == []
    data["root"].create(data["root"].new("Rule", crudFlags="C", what="InvestigationType"))
    assert [t.values["name"] for t in nbour.search("SELECT t FROM InvestigationType t")] \
        == ["exp"]


def test_moving_an_object_to_another_parent_needs_delete_and_create(server, data):
    """icat.server's update: a changed relation of the unique key is an
    identity change, which wants DELETE before and CREATE after as well."""
    root = data["root"]
    readers = root.search("SELECT g FROM Grouping g")[0]
    kw = root.new("Keyword", name="k", investigation=data["inv1"])
    root.create(kw)
    mine = ("SELECT k FROM Keyword k JOIN k.investigation i JOIN i.investigationGroups ig "
            "JOIN ig.grouping g JOIN g.userGroups ug JOIN ug.user u WHERE u.name = :user")
    root.create(root.new("Rule", crudFlags="U", what="Keyword", grouping=readers))
    acord = login(server, "db", "acord", "pw-a")
    kw.values["name"] = "renamed"                   # same parent: UPDATE is enough
    acord.update(kw)
    kw.values["investigation"] = data["inv2"]
    with pytest.raises(PrivilegesError, match="DELETE access to this Keyword is not allowed"):
        acord.update(kw)
    root.create(root.new("Rule", crudFlags="D", what=mine, grouping=readers))
    # DELETE of the keyword of inv1 granted; CREATE only of keywords of inv1
    with pytest.raises(PrivilegesError, match="CREATE access to this Keyword is not allowed"):
        acord.update(kw)
    stored = root.get("Keyword k INCLUDE k.investigation", kw.id)
    assert (stored.values["name"], stored.investigation.id) == ("renamed", data["inv1"].id)
