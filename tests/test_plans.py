"""Kept translations (icatdump/store/plans.py) give exactly what a fresh
translation gives, for queries of one shape with other literals."""

import pytest

from icatdump.client import ParameterError
from icatdump.schema import Schema
from icatdump.store.jpql import parse
from icatdump.store.plans import PlanCache, scan
from icatdump.store.sqlgen import translate

SCHEMA = Schema.for_version("6.2")

# Each line: queries of one shape (the first is translated, the others reuse it).
SAME_SHAPE = [
    ["SELECT o FROM Investigation o WHERE o.id = 42 INCLUDE o.facility, o.keywords",
     "SELECT o FROM Investigation o WHERE o.id = 7 INCLUDE o.facility, o.keywords"],
    ["SELECT o FROM Datafile o JOIN o.dataset AS ds WHERE ds.id = 3 AND o.id > 10 "
     "ORDER BY o.id LIMIT 0, 1000",
     "SELECT o FROM Datafile o JOIN o.dataset AS ds WHERE ds.id = 5 AND o.id > 99 "
     "ORDER BY o.id LIMIT 0, 1000"],
    ["SELECT o FROM User o WHERE o.name = 'db/o''neil'",
     "SELECT o FROM User o WHERE o.name = 'x'",
     "SELECT o FROM User o WHERE o.name = ''''",
     "SELECT o FROM User o WHERE o.name = 'LIMIT 5 INCLUDE 1'"],
    ["SELECT o FROM Datafile o WHERE o.fileSize = '1234'",
     "SELECT o FROM Datafile o WHERE o.fileSize = '77'"],
    ["SELECT o FROM Dataset o WHERE o.startDate = '2008-03-13T10:39:42Z' AND o.complete = 'false'",
     "SELECT o FROM Dataset o WHERE o.startDate = '2009-03-13T10:39:42+02:00' "
     "AND o.complete = 'TRUE'"],
    ["SELECT o.startDate FROM Dataset o WHERE o.startDate > {ts 2008-01-01 00:00:00}",
     "SELECT o.startDate FROM Dataset o WHERE o.startDate > {ts 2010-05-01 10:00:00}"],
    ["SELECT o FROM Datafile o WHERE o.id IN (1, 2, 3)",
     "SELECT o FROM Datafile o WHERE o.id IN (4, 5, 6)"],
    ["SELECT o FROM Investigation o JOIN o.facility AS f WHERE f.name >= 'A' AND "
     "(f.name > 'A' OR o.name > 'x''y') ORDER BY f.name, o.name LIMIT 0, 50",
     "SELECT o FROM Investigation o JOIN o.facility AS f WHERE f.name >= 'B' AND "
     "(f.name > 'B' OR o.name > 'z') ORDER BY f.name, o.name LIMIT 0, 50"],
    ["SELECT o.name FROM Dataset o WHERE o.id IN (SELECT df.dataset.id FROM "
     "Datafile df WHERE df.name = 'other.dat') AND o.name <> 'a'",
     "SELECT o.name FROM Dataset o WHERE o.id IN (SELECT df.dataset.id FROM "
     "Datafile df WHERE df.name = 'x.dat') AND o.name <> 'b'"],
    ["SELECT SUBSTRING(o.name, 1, 3) FROM Datafile o WHERE o.fileSize > 15",
     "SELECT SUBSTRING(o.name, 2, 4) FROM Datafile o WHERE o.fileSize > 2500"],
    ["SELECT o FROM ParameterType o WHERE o.valueType = "
     "org.icatproject.ParameterValueType.NUMERIC AND o.name = 'a'",
     "SELECT o FROM ParameterType o WHERE o.valueType = "
     "org.icatproject.ParameterValueType.NUMERIC AND o.name = 'b'"],
    ["SELECT o FROM DatafileParameter o WHERE o.numericValue > 1.5",
     "SELECT o FROM DatafileParameter o WHERE o.numericValue > 2.5e3"],
    # Not kept (a parameter, the time, a minus glued to a number): still right.
    ["SELECT o FROM Datafile o WHERE o.createId = :user AND o.id = 1",
     "SELECT o FROM Datafile o WHERE o.createId = :user AND o.id = 2"],
    ["SELECT o FROM Datafile o WHERE o.modTime < CURRENT_TIMESTAMP AND o.id = 1",
     "SELECT o FROM Datafile o WHERE o.modTime < CURRENT_TIMESTAMP AND o.id = 2"],
    ["SELECT o FROM Datafile o WHERE o.fileSize -1 > 3",
     "SELECT o FROM Datafile o WHERE o.fileSize -2 > 4"],
    ["SELECT o FROM Datafile o WHERE o.id > -5",
     "SELECT o FROM Datafile o WHERE o.id > -7"],
]


def fresh(text):
    plan = translate(SCHEMA, parse(text), "simple/root")
    return plan.sql, plan.params, plan.kind, plan.limit


@pytest.mark.parametrize("texts", SAME_SHAPE, ids=lambda t: t[0][:40])
def test_same_as_fresh(texts):
    cache = PlanCache(SCHEMA)
    assert len({scan(t)[0] for t in texts}) == 1
    for text in texts * 2:
        plan = cache.plan(text, "simple/root")
        if "CURRENT_TIMESTAMP" in text:
            assert plan.sql == fresh(text)[0]
            continue
        assert (plan.sql, plan.params, plan.kind, plan.limit) == fresh(text), text
        assert [type(p) for p in plan.params] == [type(p) for p in fresh(text)[1]]


def test_kept_only_when_certain():
    cache = PlanCache(SCHEMA)
    for text in ("SELECT o FROM Datafile o WHERE o.id = 1",
                 "SELECT o FROM Datafile o WHERE o.createId = :user AND o.id = 1",
                 "SELECT o FROM Datafile o WHERE o.id > -5"):
        cache.plan(text, "simple/root")
    kept = {shape: t is not None for shape, t in cache.templates.items()}
    assert sorted(kept.values()) == [False, False, True]


def test_errors_are_the_translators():
    cache = PlanCache(SCHEMA)
    cache.plan("SELECT o FROM Datafile o WHERE o.fileSize = '12'", "u")
    with pytest.raises(ParameterError):
        cache.plan("SELECT o FROM Datafile o WHERE o.fileSize = 'twelve'", "u")
    with pytest.raises(ParameterError):
        cache.plan("SELECT o FROM Datafile o WHERE o.name = 'unterminated", "u")
