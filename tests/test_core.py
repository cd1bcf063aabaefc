"""The core model: schema versions, keys, sort order, query rendering."""

import pytest
from hypothesis import given, strategies as st

from icatdump.entity import DataConsistencyError, Entity
from icatdump.keys import (KeyError_, parse_attr_values, quote, split_key, strip_name,
                           unquote)
from icatdump.query import Query, literal, natural_order
from icatdump.schema import Schema, schema_version_for

S = Schema.for_version("6.2")


# -- schema -------------------------------------------------------------------

def test_62_has_53_entities_with_constraints_in_server_order():
    assert len(S.entities) == 53
    assert S["InvestigationType"].constraint == ("name", "facility")
    assert S["InvestigationUser"].constraint == ("user", "investigation", "role")
    assert S["Rule"].constraint == () and S["Rule"].key_fields == ("id",)
    assert S["Dataset"].fields["complete"].not_null
    assert S["Datafile"].fields["location"].length == 511
    assert S["Dataset"].fields["datafiles"].mapped_by == "dataset"


@pytest.mark.parametrize("version,count", [("4.4", 38), ("4.7", 38), ("4.10", 38),
                                           ("5.0", 52), ("6.2", 53)])
def test_versions_derive_from_one_table(version, count):
    s = Schema.for_version(version)
    assert len(s.entities) == count
    assert ("orcidId" in s["User"].fields) == (version != "4.4")
    assert ("pid" in s["Instrument"].fields) == (version in ("4.10", "5.0", "6.2"))
    assert ("fileCount" in s["Dataset"].fields) == (version in ("5.0", "6.2"))
    assert ("Subject" in s) == (version == "6.2")
    # A relation to an entity that does not exist yet is absent too.
    assert ("datasetInstruments" in s["Dataset"].fields) == (version in ("5.0", "6.2"))
    loc = s["Datafile"].fields["location"].length
    assert loc == (511 if version == "6.2" else 255)


def test_schema_version_for_apiversion():
    assert schema_version_for("6.2.1-SNAPSHOT") == "6.2"
    assert schema_version_for("4.11.1") == "4.10"
    assert schema_version_for("5.0.0") == "5.0"
    assert schema_version_for("6.1.0") == "5.0"


def test_schema_from_entity_info_round_trips_builtin():
    infos = {}
    for et in S:
        infos[et.name] = {"constraint": list(et.constraint), "fields": [
            {"name": f.name, "relType": f.kind, "type": f.type,
             "notNullable": f.not_null, "stringLength": f.length}
            for f in et.fields.values()]}
    s2 = Schema.from_entity_info(infos, "6.2.0")
    for et in S:
        assert s2[et.name].fields == et.fields, et.name


# -- keys ---------------------------------------------------------------------

def test_quote_examples():
    assert quote("Rudolph Beck-Dülmen") == "Rudolph=20Beck=2DD=C3=BClmen"
    assert quote(1.5) == "1=2E5"
    assert quote("db/rbeck") == "db=2Frbeck"
    assert quote(None) == "None"


@given(st.text())
def test_quote_round_trips_any_unicode(text):
    q = quote(text)
    assert not set(q) & set("_-()")
    assert unquote(q) == text


def test_unquote_rejects_lower_case_hex_and_truncation():
    with pytest.raises(KeyError_):
        unquote("a=2f")
    with pytest.raises(KeyError_):
        unquote("a=2")


def _inv():
    f = Entity(S["Facility"], {"name": "ESNF"}, id=1)
    return Entity(S["Investigation"], {"name": "2010-E2-0489-1", "visitId": "1.1-N",
                                       "facility": f}, id=2)


def test_unique_keys_match_python_icat():
    inv = _inv()
    assert inv.unique_key() == \
        "Investigation_facility-(name-ESNF)_name-2010=2DE2=2D0489=2D1_visitId-1=2E1=2DN"
    ds = Entity(S["Dataset"], {"name": "e208341", "investigation": inv}, id=3)
    assert ds.unique_key() == ("Dataset_investigation-(facility-(name-ESNF)_name-2010=2DE2="
                               "2D0489=2D1_visitId-1=2E1=2DN)_name-e208341")
    it = Entity(S["InvestigationType"], {"name": "Experiment",
                                         "facility": inv.values["facility"]}, id=4)
    assert it.unique_key() == "InvestigationType_name-Experiment_facility-(name-ESNF)"


def test_keyindex_is_consulted_and_filled():
    inv = _inv()
    index = {}
    key = inv.unique_key(index)
    assert index[("Investigation", 2)] == key and index[("Facility", 1)] == "Facility_name-ESNF"
    index[("Investigation", 2)] = "cached"
    assert inv.unique_key(index) == "cached"


def test_missing_relation_is_a_consistency_error():
    with pytest.raises(DataConsistencyError, match="facility"):
        Entity(S["Investigation"], {"name": "x", "visitId": "y"}).unique_key()


@given(st.text(min_size=0, max_size=20), st.text(min_size=0, max_size=20))
def test_keys_parse_back(name, visit):
    f = Entity(S["Facility"], {"name": name})
    inv = Entity(S["Investigation"], {"name": visit, "visitId": name, "facility": f})
    bean, rest = split_key(inv.unique_key())
    assert bean == "Investigation"
    parts = parse_attr_values(rest)
    assert unquote(parts["name"]) == visit and unquote(parts["visitId"]) == name
    assert unquote(parse_attr_values(parts["facility"])["name"]) == name


@pytest.mark.parametrize("bad", ["Dataset_name", "Dataset_name-(a", "Dataset_na me-x",
                                 "Dataset_name-a_"])
def test_malformed_keys(bad):
    with pytest.raises(KeyError_):
        parse_attr_values(split_key(bad)[1])


def test_strip_name():
    assert strip_name("Facility_name-ESNF") == "name-ESNF"


def test_sortkey_puts_rules_without_grouping_first():
    g = Entity(S["Grouping"], {"name": "a"}, id=1)
    r1 = Entity(S["Rule"], {"what": "Z", "grouping": g}, id=1)
    r2 = Entity(S["Rule"], {"what": "A"}, id=2)
    assert sorted([r1, r2], key=Entity.sortkey) == [r2, r1]


# -- queries ------------------------------------------------------------------

def test_literal_escapes_quotes():
    assert literal("O'Brien") == "'O''Brien'"
    assert literal(42) == "42"


def test_query_rendering_matches_icat_client_layout():
    q = Query("Rule", order=["grouping.name", "what", "id"], includes=["grouping"],
              join_specs={"grouping": "LEFT JOIN"}, limit=(0, 100))
    assert str(q) == ("SELECT o FROM Rule o LEFT JOIN o.grouping AS g ORDER BY g.name, "
                      "o.what, o.id INCLUDE o.grouping LIMIT 0, 100")
    q = Query("Datafile", conditions={"dataset.investigation.id": "= 42"},
              order=["dataset.name", "name"],
              includes=["datafileFormat.facility", "dataset", "parameters.type.facility"])
    assert str(q) == ("SELECT o FROM Datafile o JOIN o.dataset AS ds JOIN ds.investigation "
                      "AS i WHERE i.id = 42 ORDER BY ds.name, o.name INCLUDE o.datafileFormat "
                      "AS dff, dff.facility, o.dataset, o.parameters AS p, p.type AS pt, "
                      "pt.facility")
    q = Query("Investigation", attribute="id", order=["facility.name", "name", "visitId"])
    assert str(q) == ("SELECT o.id FROM Investigation o JOIN o.facility AS f "
                      "ORDER BY f.name, o.name, o.visitId")


def test_natural_order():
    assert natural_order(S, S["Job"]) == ["application.facility.name", "application.name",
                                          "application.version", "arguments", "id"]
    assert natural_order(S, S["DataCollection"]) == ["id"]
    assert natural_order(S, S["Rule"]) == ["what", "id"]
