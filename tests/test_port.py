"""icat.server's export and import (``/icat/port``) in ``icatdata serve``.

python-icat's own scripts (``icatexport.py``, ``icatimport.py`` from its
sdist) run as subprocesses against real servers on catalogue files; error
replies are read as they come over HTTP; the writer is compared byte for
byte with a file written by hand from the facts in doc/port.md.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys

import pytest

icat = pytest.importorskip("icat")
requests = pytest.importorskip("requests")

from icatdump.port import export, heading, java_double, java_date  # noqa: E402
from icatdump.store import EmbeddedClient, init_catalogue  # noqa: E402
from icatdump.types import UTC  # noqa: E402

from conftest import dump_body, python_icat_sdist  # noqa: E402
from served import LOGIN, dump, serving  # noqa: E402

EXAMPLES = python_icat_sdist() / "doc" / "examples"


def script(name, url, *args, user=LOGIN):
    """python-icat's ``doc/examples/<name>`` against the server at ``url``."""
    return subprocess.run([sys.executable, str(EXAMPLES / name), "-w", url + "?wsdl", *user,
                           *args], capture_output=True, text=True, timeout=300)


def rest(url):
    return url[:-len("/ICATService/ICAT")] + "/icat/port"


def session(url, user="root", password="secret"):
    """A session id; the session stays when the client is collected (which
    would log it out) and ends with its server."""
    client = icat.Client(url + "?wsdl")
    client.autoLogout = False
    client.login("simple", {"username": user, "password": password})
    return client.sessionId


def dumped(served, tmp_path, name):
    out = tmp_path / name
    proc = dump(served, "-f", "YAML", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return dump_body(out.read_bytes())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A server on python-icat's 6.2 example, and its export (USER)."""
    tmp = tmp_path_factory.mktemp("port")
    db = tmp / "a.db"
    init_catalogue(str(db), "6.2")
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q", "-f", "XML",
                           "-i", str(EXAMPLES / "icatdump-6.2.xml"), "-w", str(db)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with serving(db, "--account", "root:secret", "--account", "simple/nobody:pw", new=False) as served:
        export_file = tmp / "a.export"
        proc = script("icatexport.py", served[0], "-o", str(export_file))
        assert proc.returncode == 0, proc.stderr
        yield served, export_file, db


def test_export_then_import_gives_the_same_catalogue(source, tmp_path):
    served_a, export_file, _ = source
    text = export_file.read_text("utf-8")
    assert text.startswith("# ICAT Export file written by simple/root\n1.0\n\nUser(")
    with serving(tmp_path / "b.db") as served_b:
        proc = script("icatimport.py", served_b[0], "-i", str(export_file))
        assert proc.returncode == 0, proc.stderr
        body_a = dumped(served_a, tmp_path, "a.yaml")
        body_b = dumped(served_b, tmp_path, "b.yaml")
        assert body_a == body_b
        assert body_a.count(b"\n") > 1000

        # Again with THROW: icat.server's OBJECT_ALREADY_EXISTS at the first
        # row, and nothing changes.
        proc = script("icatimport.py", served_b[0], "-i", str(export_file))
        assert proc.returncode != 0
        assert "ICATObjectExistsError: User exists with name = 'db/acord' at line 5" \
            in proc.stderr
        assert dumped(served_b, tmp_path, "b2.yaml") == body_a

        # IGNORE and CHECK: accepted, nothing changes.
        for mode in ("IGNORE", "CHECK"):
            proc = script("icatimport.py", served_b[0], "-i", str(export_file),
                          "--duplicate", mode)
            assert proc.returncode == 0, (mode, proc.stderr)
        assert dumped(served_b, tmp_path, "b3.yaml") == body_a

        # CHECK with a value that differs: icat.server's VALIDATION, naming
        # the line; nothing changes (the import is one transaction).
        changed = tmp_path / "changed.export"
        lines = text.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if "Durol single crystal" in line)
        lines[at] = lines[at].replace("Durol single crystal", "Durol, changed")
        lines.insert(at, lines[at].replace('"08100122-EF"', '"new-investigation"'))
        changed.write_text("".join(lines), "utf-8")
        proc = script("icatimport.py", served_b[0], "-i", str(changed), "--duplicate", "CHECK")
        assert "ICATValidationError" in proc.stderr
        assert "title" in proc.stderr and "at line %d" % (at + 2) in proc.stderr
        assert dumped(served_b, tmp_path, "b4.yaml") == body_a

        # OVERWRITE takes the file's value.
        proc = script("icatimport.py", served_b[0], "-i", str(changed), "--duplicate",
                      "OVERWRITE")
        assert proc.returncode == 0, proc.stderr
        body = dumped(served_b, tmp_path, "b5.yaml")
        assert b"Durol, changed" in body and b"new-investigation" in body


def test_query_export_has_the_selected_objects_and_their_includes(source, tmp_path):
    served, _, _ = source
    out = tmp_path / "q.export"
    query = ("SELECT i FROM Investigation i WHERE i.name = '08100122-EF' "
             "INCLUDE i.facility, i.type")
    proc = script("icatexport.py", served[0], "-o", str(out), "--query", query)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text("utf-8")
    headings = [line.split("(")[0] for line in text.splitlines()[3:] if "(" in line
                and not line.startswith('"')]
    assert headings == ["Facility", "InvestigationType", "Investigation"]
    assert text.count('"08100122-EF"') == 1
    reply = requests.get(rest(served[0]), params={"json": json.dumps({
        "sessionId": session(served[0]), "query": "Facility"})})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain"
    assert reply.headers["Content-Disposition"] == 'attachment; filename="icat.export"'
    assert reply.text == ("# ICAT Export file written by simple/root\n1.0\n\n"
                          "Facility(daysUntilRelease:0,description:1,fullName:2,name:3,url:4)\n"
                          'NULL,"ESNF is an example facility",'
                          '"Example Synchrotron and Neutron Facility","ESNF",'
                          '"http://www.esnf.example.org/"\n')
    # A query that selects nothing: 204 and no file, as icat.server.
    reply = requests.get(rest(served[0]), params={"json": json.dumps({
        "sessionId": session(served[0]), "query": "SELECT f FROM Facility f WHERE f.id < 0"})})
    assert reply.status_code == 204 and reply.content == b""


def test_all_attributes_keep_the_audit_fields(source, tmp_path):
    served_a, _, db_a = source
    out = tmp_path / "all.export"
    proc = script("icatexport.py", served_a[0], "-o", str(out), "--attributes", "ALL")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text("utf-8")
    assert "\nFacility(createId:0,createTime:1,modId:2,modTime:3,daysUntilRelease:4," in text
    assert "\nRule(?:0,createId:1,createTime:2,modId:3,modTime:4,crudFlags:5," in text

    def audit(db):
        client = EmbeddedClient(str(db))
        client.meta = True
        try:
            return {(o.values["name"]): tuple(o.values[k] for k in
                                              ("createId", "createTime", "modId", "modTime"))
                    for o in client.search("SELECT o FROM Dataset o")}
        finally:
            client.close()
    with serving(tmp_path / "c.db") as served_c:
        proc = script("icatimport.py", served_c[0], "-i", str(out), "--attributes", "ALL")
        assert proc.returncode == 0, proc.stderr
        want = audit(db_a)
        got = audit(tmp_path / "c.db")
        # The file has milliseconds: the times agree to them.
        assert {k: (v[0], v[2]) for k, v in got.items()} == \
            {k: (v[0], v[2]) for k, v in want.items()}
        for name, (_, created, _, modified) in got.items():
            assert abs(created - want[name][1]) < dt.timedelta(milliseconds=1)
            assert abs(modified - want[name][3]) < dt.timedelta(milliseconds=1)
    with serving(tmp_path / "d.db") as served_d:
        proc = script("icatimport.py", served_d[0], "-i", str(out))       # USER
        assert proc.returncode == 0, proc.stderr
        # The import's user and time instead.
        latest = max(v[1] for v in want.values())
        assert all(v[0] == "simple/root" and v[1] > latest
                   for v in audit(tmp_path / "d.db").values())


def test_a_user_exports_what_they_may_read(source, tmp_path):
    served, export_file, _ = source
    out = tmp_path / "nobody.export"
    proc = script("icatexport.py", served[0], "-o", str(out),
                  user=("-a", "simple", "-u", "nobody", "-p", "pw"))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text("utf-8")
    assert text.startswith("# ICAT Export file written by simple/nobody\n1.0\n")
    rows = {line for line in text.splitlines() if line.startswith('"')}
    full = {line for line in export_file.read_text("utf-8").splitlines()
            if line.startswith('"')}
    assert rows < full
    assert not any("08100122-EF" in line for line in rows)      # no investigation of theirs
    assert '"ESNF","gnomoanalytics","69"' in "\n".join(rows)    # Application: readable to all


def _error(reply):
    return reply.status_code, reply.json()


def test_error_replies(source, tmp_path):
    served, export_file, _ = source
    url = rest(served[0])
    sid = session(served[0])
    # Export: no json, an unknown key, a bad session.
    assert _error(requests.get(url)) == (400, {"code": "BAD_PARAMETER",
                                               "message": "json must not be null"})
    assert _error(requests.get(url, params={"json": '{"sessionId": "x", "what": "y"}'})) == \
        (400, {"code": "BAD_PARAMETER", "message": "what is not an expected key in the json"})
    assert _error(requests.get(url, params={"json": '{"sessionId": "nope"}'})) == \
        (403, {"code": "SESSION", "message": "Unable to find user by sessionid: nope"})

    with serving(tmp_path / "e.db", "--account", "root:secret", "--account", "simple/nobody:pw") as served_e:
        url = rest(served_e[0])
        sid = session(served_e[0])

        def post(content, **params):
            form = {"json": json.dumps(dict({"sessionId": sid}, **params))}
            return requests.post(url, data=form, files={"file": ("x", content)})

        assert _error(requests.post(url, data={"json": '{"sessionId": "nope"}'},
                                    files={"file": ("x", b"1.0\n")})) == \
            (403, {"code": "SESSION", "message": "Unable to find user by sessionid: nope"})
        assert _error(requests.post(url, files={"file": ("x", b"1.0\n")})) == \
            (400, {"code": "BAD_PARAMETER", "message": "json must not be null"})
        # A refused form is read to its end: the connection takes the next request.
        with requests.Session() as keep:
            for _ in range(2):
                reply = keep.post(url, data={"json": "{}", "other": "x"},
                                  files={"file": ("x", b"1.0\n" + b"x" * 2_000_000)})
                assert _error(reply) == (400, {"code": "BAD_PARAMETER",
                                               "message": "Form field 'other' is not recognised"})
        assert _error(requests.post(url, data={"json": "{}"})) == \
            (400, {"code": "BAD_PARAMETER", "message": "Multipart content expected"})
        assert _error(post(b"1.0\n", duplicate="SOMETIMES")) == \
            (400, {"code": "BAD_PARAMETER",
                   "message": "SOMETIMES is not a valid value for 'duplicate'"})
        nobody = session(served_e[0], "nobody", "pw")
        reply = requests.post(url, data={"json": json.dumps(
            {"sessionId": nobody, "attributes": "ALL"})}, files={"file": ("x", b"1.0\n")})
        assert _error(reply) == (403, {"code": "INSUFFICIENT_PRIVILEGES",
                                       "message": "Only root users may import with "
                                                  "Attributes.ALL"})
        # A user without CREATE rights: icat.server's INSUFFICIENT_PRIVILEGES.
        reply = requests.post(url, data={"json": json.dumps({"sessionId": nobody})},
                              files={"file": ("x", b'1.0\n\nFacility(name:0)\n"F"\n')})
        code, body = _error(reply)
        assert (code, body["code"], body["offset"]) == (403, "INSUFFICIENT_PRIVILEGES", 4)
        assert body["message"].endswith(" at line 4")

        assert _error(post(b"# nothing\n")) == (412, {
            "code": "VALIDATION", "message": "No version of file encountered at line 1",
            "offset": 1})
        assert _error(post(b"2.0\n")) == (412, {
            "code": "VALIDATION", "message": "Version of file must be 1.0 at line 1",
            "offset": 1})
        corrupt = (b'# a file\n1.0\n\nFacility(name:0,daysUntilRelease:1)\n"F1",1\n'
                   b'"F2",x\n')
        code, body = _error(post(corrupt))
        assert (code, body["code"], body["offset"]) == (400, "BAD_PARAMETER", 6)
        assert body["message"] == "Expected an integer value for column 1 at line 6"
        code, body = _error(post(b'1.0\n\nGadget(name:0)\n"x"\n'))
        assert (code, body) == (400, {"code": "BAD_PARAMETER", "offset": 3,
                                      "message": "Gadget is not an ICAT entity at line 3"})
        code, body = _error(post(b'1.0\n\nInstrument(facility(name:0),name:1)\n"NoSuch","I"\n'))
        assert (code, body["code"], body["offset"]) == (404, "NO_SUCH_OBJECT_FOUND", 4)
        code, body = _error(post(b'1.0\n\nFacility(name:0)\n"unterminated\n'))
        assert (code, body["code"], body["offset"]) == (400, "BAD_PARAMETER", 4)
        # None of it went in: the good rows before a bad one neither.
        assert ingest_count(served_e) == 0

        # The scripts report the same.
        bad = tmp_path / "bad.export"
        bad.write_bytes(corrupt)
        proc = script("icatimport.py", served_e[0], "-i", str(bad))
        assert "ICATParameterError: Expected an integer value for column 1 at line 6" \
            in proc.stderr


def ingest_count(served) -> int:
    client = icat.Client(served[0] + "?wsdl")
    client.login("simple", {"username": "root", "password": "secret"})
    try:
        return len(client.search("SELECT f FROM Facility f"))
    finally:
        client.logout()


EXPECTED = """\
# ICAT Export file written by simple/root
1.0

User(affiliation:0,email:1,familyName:2,fullName:3,givenName:4,name:5,orcidId:6)
NULL,NULL,NULL,"Tab\\there \\"quoted\\" back\\\\slash",NULL,"db/u",NULL

Grouping(name:0)
"g"

UserGroup(grouping(name:0),user(name:1))
"g","db/u"

Rule(?:0,crudFlags:1,grouping(name:2),what:3)
"{rule1}","R",NULL,"Facility"
"{rule2}","CRUD","g","Investigation"

Facility(daysUntilRelease:0,description:1,fullName:2,name:3,url:4)
NULL,NULL,NULL,"F",NULL

InvestigationType(description:0,facility(name:1),name:2)
NULL,"F","exp"

ParameterType(applicableToDataCollection:0,applicableToDatafile:1,applicableToDataset:2,\
applicableToInvestigation:3,applicableToSample:4,description:5,enforced:6,facility(name:7),\
maximumNumericValue:8,minimumNumericValue:9,name:10,pid:11,units:12,unitsFullName:13,\
valueType:14,verified:15)
false,false,false,true,false,NULL,false,"F",1.0E7,0.001,"T",NULL,"K",NULL,NUMERIC,true

Investigation(doi:0,endDate:1,facility(name:2),fileCount:3,fileSize:4,name:5,releaseDate:6,\
startDate:7,summary:8,title:9,type(facility(name:10),name:11),visitId:12)
NULL,NULL,"F",0,0,"I",NULL,2012-07-26T15:44:24.120Z,NULL,"t","F","exp","1"

InvestigationParameter(dateTimeValue:0,error:1,investigation(facility(name:2),name:3,\
visitId:4),numericValue:5,rangeBottom:6,rangeTop:7,stringValue:8,type(facility(name:9),\
name:10,units:11))
NULL,NULL,"F","I","1",-273.15,NULL,NULL,NULL,"F","T","K"

Shift(comment:0,endDate:1,instrument(facility(name:2),name:3),investigation(facility(name:4),\
name:5,visitId:6),startDate:7)
NULL,2012-07-27T08:00:00.000Z,NULL,NA,"F","I","1",2012-07-26T08:00:00.000Z
"""


def test_writer_bytes(tmp_path):
    """A small catalogue written as doc/port.md says: quoting, NULLs (a null
    reference with NA for its further key columns), Java's numbers and
    dates, ``?`` columns, key references in name order."""
    db = tmp_path / "w.db"
    init_catalogue(str(db), "6.2")
    client = EmbeddedClient(str(db))
    try:
        new = client.new
        fac = new("Facility", name="F")
        user = new("User", name="db/u", fullName='Tab\there "quoted" back\\slash')
        group = new("Grouping", name="g")
        client.create_many([fac, user, group])
        client.create(new("UserGroup", grouping=group, user=user))
        rules = [client.create(new("Rule", crudFlags="R", what="Facility")),
                 client.create(new("Rule", crudFlags="CRUD", what="Investigation",
                                   grouping=group))]
        itype = new("InvestigationType", name="exp", facility=fac)
        ptype = new("ParameterType", name="T", units="K", valueType="NUMERIC", facility=fac,
                    applicableToInvestigation=True, verified=True,
                    minimumNumericValue=0.001, maximumNumericValue=1e7)
        client.create_many([itype, ptype])
        inv = new("Investigation", name="I", visitId="1", title="t", facility=fac,
                  type=itype, startDate=dt.datetime(2012, 7, 26, 15, 44, 24, 120999,
                                                    tzinfo=UTC))
        client.create(inv)
        client.create(new("InvestigationParameter", investigation=inv, type=ptype,
                          numericValue=-273.15))
        client.create(new("Shift", investigation=inv,
                          startDate=dt.datetime(2012, 7, 26, 8, tzinfo=UTC),
                          endDate=dt.datetime(2012, 7, 27, 8, tzinfo=UTC)))

        def ids(name):
            found = client.search("SELECT o.id FROM %s o ORDER BY o.id" % name)
            return iter([found] if found else [])
        out = io.StringIO()
        export(out, client.schema, "simple/root", ids, client.search, client.max_entities)
    finally:
        client.close()
    expected = EXPECTED.format(rule1=rules[0], rule2=rules[1])
    # Tables without rows are written too: heading and no rows.
    got = "\n\n".join(part for part in out.getvalue().split("\n\n")
                      if "\n" in part.strip() or part.startswith("#")) + "\n"
    assert got.encode("utf-8") == expected.encode("utf-8")
    assert out.getvalue().count("\n\n") == 53


def test_value_texts():
    assert [java_double(x) for x in (73.0, 73.4, 0.001, 1e-4, 1e7, 9999999.0, -1.5e-10,
                                     123456789.0, 0.0)] == \
        ["73.0", "73.4", "0.001", "1.0E-4", "1.0E7", "9999999.0", "-1.5E-10", "1.23456789E8",
         "0.0"]
    cet = dt.timezone(dt.timedelta(hours=1))
    when = dt.datetime(2014, 5, 16, 6, 5, 26, 120000, tzinfo=UTC)
    assert java_date(when) == "2014-05-16T06:05:26.120Z"
    assert java_date(when, cet) == "2014-05-16T07:05:26.120+01:00"


def test_headings_for_all_attributes():
    from icatdump.schema import Schema
    schema = Schema.for_version("6.2")
    assert heading(schema, "DataCollectionDataset") == (
        "DataCollectionDataset(dataCollection(?:0),dataset(investigation(facility(name:1),"
        "name:2,visitId:3),name:4))")
    assert heading(schema, "Job", True) == (
        "Job(?:0,createId:1,createTime:2,modId:3,modTime:4,application(facility(name:5),"
        "name:6,version:7),arguments:8,inputDataCollection(?:9),outputDataCollection(?:10))")


# -- the PORT data file format ------------------------------------------------------

def data_cli(*args):
    return subprocess.run([sys.executable, "-m", "icatdump.cli.data", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_convert_an_export_to_a_dump_and_back(source, tmp_path):
    """``icatdata convert``: an icat.server export becomes a python-icat dump
    that ingests to the exported catalogue, and a dump becomes an export
    that icat.server's import (python-icat's script) takes to the same."""
    served_a, export_file, _ = source
    want = dumped(served_a, tmp_path, "a.yaml")

    proc = data_cli("info", export_file)
    assert proc.returncode == 0, proc.stderr
    assert "(PORT, " in proc.stdout.splitlines()[0]
    converted = tmp_path / "converted.yaml"
    proc = data_cli("convert", "-q", export_file, converted)
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "from-export.db"
    init_catalogue(str(db), "6.2")
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q", "-i",
                           str(converted), "-w", str(db)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    with serving(db, new=False) as served:
        assert dumped(served, tmp_path, "b.yaml") == want

    back = tmp_path / "icat.export"        # the extension names the format
    proc = data_cli("convert", "-q", EXAMPLES / "icatdump-6.2.xml", back)
    assert proc.returncode == 0, proc.stderr
    text = back.read_text("utf-8")
    assert text.startswith("# ICAT Export file written by icatdump")
    assert "\nJob(?:0,application(facility(name:1),name:2,version:3),arguments:4," \
           "inputDataCollection(?:5),outputDataCollection(?:6))\n\"Job_" in text
    with serving(tmp_path / "c.db") as served:
        proc = script("icatimport.py", served[0], "-i", str(back))
        assert proc.returncode == 0, proc.stderr
        assert dumped(served, tmp_path, "c.yaml") == want

    # icatdump writes one from a catalogue, icatingest reads it.
    written = tmp_path / "dumped.export"
    proc = dump(served_a, "-f", "PORT", "-o", str(written))
    assert proc.returncode == 0, proc.stderr
    with serving(tmp_path / "d.db") as served:
        proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q", "-w",
                               served[0], *LOGIN, "-i", str(written)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert dumped(served, tmp_path, "d.yaml") == want


def test_sniffed_only_with_its_version_line(tmp_path):
    from icatdump.backends.port import sniff
    assert sniff(b"# ICAT Export file written by simple/root\n1.0\n\nUser(name:0)\n")
    assert sniff(b"\xef\xbb\xbf1.0\n")
    assert not sniff(b"%YAML 1.1\n# Date: x\n---\nuser:\n")
    assert not sniff(b"# Date: x\n---\n")
    assert not sniff(b"<?xml version='1.0'?>\n")


@pytest.mark.parametrize("text, message", [
    ("# ICAT Export file written by simple/root\n2.0\n", "line 2: Version of file must be 1.0"),
    ("1.0\n\nNoSuch(name:0)\n\"x\"\n", "line 3: NoSuch is not an ICAT entity"),
    ("1.0\n\nFacility(daysUntilRelease:0,name:1)\n\"x\",\"F\"\n",
     "line 4, Facility: Expected an integer value for column 0"),
    ("1.0\n\nFacility(name:0)\n\"cut sh", "line 4, Facility: Unexpected character"),
])
def test_a_bad_export_file_is_one_line_and_nothing_ingested(tmp_path, text, message):
    """An export file that icat.server would refuse: its one-line error
    from check and ingest alike (a wrong version too: the header names
    the format), and the catalogue unchanged."""
    path = tmp_path / "bad.export"
    path.write_text(text, encoding="utf-8")
    proc = data_cli("check", path)
    assert proc.returncode == 1 and message in proc.stdout + proc.stderr, proc
    db = tmp_path / "c.db"
    init_catalogue(str(db), "6.2")
    proc = subprocess.run([sys.executable, "-m", "icatdump.cli.ingest", "-q", "-w", str(db),
                           "-i", str(path)], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert "nothing was ingested" in proc.stderr
