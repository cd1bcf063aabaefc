"""Generate synthetic but realistic ICAT data files of any size.

The catalogue has what a facility's has: users, groups with members,
authorization rules, static data (facility, instruments, parameter, dataset,
datafile and investigation types), investigations with users, keywords and
parameters, samples, datasets with parameters, datafiles with parameters,
and data collections.  Names carry awkward unicode (accents, CJK, quotes,
apostrophes) on purpose.  The files are written by icatdump's own writers,
so they are exactly what ``icatdump`` would write for such a catalogue.

    python bench/generate.py --objects 100000 -f XML -o bench/out/100k.xml
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from icatdump.dumpfile import open_dumpfile  # noqa: E402
from icatdump.entity import Entity  # noqa: E402
from icatdump.schema import Schema  # noqa: E402

AWKWARD = ["Dülmen", "Ångström", "O'Brien", "naïve café", "東京", "Ñandú", "\"quoted\"",
           "α-β γ", "x < y & z", "tab\there"]
UTC = dt.timezone.utc


class FileOnly:
    """The little a writer needs of a client when objects come from memory."""

    def __init__(self, schema):
        self.schema = schema
        self.url = "generated"
        self.apiversion = "6.2.0"

    def refresh(self):
        pass


class Generator:
    """Builds the objects chunk by chunk, with ids as a catalogue would give."""

    def __init__(self, schema: Schema, objects: int, seed: int = 1, quotes: bool = True):
        self.s = schema
        self.rand = random.Random(seed)
        # python-icat cannot ingest names with an apostrophe (it does not
        # escape JPQL literals); files meant for it leave them out.
        self.awkward = AWKWARD if quotes else [a for a in AWKWARD if "'" not in a]
        self.target = objects
        self.next_id = 0
        # Shape: per investigation ~ 1 + 4 datasets * (2 params + 1) + 4*20 datafiles * 2
        self.files_per_dataset = 20
        self.datasets_per_inv = 4
        per_inv = 1 + 6 + self.datasets_per_inv * (3 + self.files_per_dataset * 2)
        self.investigations = max(1, objects // per_inv)

    def new(self, entity, /, **values):
        self.next_id += 1
        return Entity(self.s[entity], values, id=self.next_id)

    def chunks(self):
        """Yield each chunk as a list of object lists (one list per entity type)."""
        r = self.rand
        nusers = max(5, self.investigations // 4)
        users = [self.new("User", name="db/user%05d" % i, fullName="%s %d" % (r.choice(self.awkward), i),
                          email="user%d@example.org" % i) for i in range(nusers)]
        groups = []
        for i in range(max(2, nusers // 10)):
            g = self.new("Grouping", name="group-%d %s" % (i, r.choice(self.awkward)))
            g.values["userGroups"] = [self.new("UserGroup", user=u)
                                      for u in r.sample(users, min(5, len(users)))]
            groups.append(g)
        rules = [self.new("Rule", crudFlags="R", what=w, grouping=r.choice(groups))
                 for w in ("Investigation", "Dataset", "Datafile", "Sample")]
        rules.append(self.new("Rule", crudFlags="CRUD", what="Facility"))
        yield [users, groups, rules]

        fac = self.new("Facility", name="ESNF", fullName="Example Neutron Facility — Ørsted",
                       daysUntilRelease=1095)
        inst = [self.new("Instrument", name="I%d" % i, fullName="Instrument %s" % self.awkward[i],
                         facility=fac) for i in range(3)]
        ptypes = [self.new("ParameterType", name="Temperature", units="K", valueType="NUMERIC",
                           facility=fac, applicableToDatafile=True, applicableToDataset=True,
                           applicableToInvestigation=True, applicableToSample=True),
                  self.new("ParameterType", name="Comment", units="N/A", valueType="STRING",
                           facility=fac, applicableToDatafile=True, applicableToDataset=True,
                           applicableToInvestigation=True, applicableToSample=True)]
        itype = self.new("InvestigationType", name="experiment", facility=fac)
        dstype = self.new("DatasetType", name="raw", facility=fac)
        dff = self.new("DatafileFormat", name="NeXus", version="4.3", facility=fac)
        yield [[fac], inst, ptypes, [itype], [dstype], [dff]]

        start = dt.datetime(2020, 1, 1, tzinfo=UTC)
        all_datasets = []
        for i in range(self.investigations):
            when = start + dt.timedelta(hours=i)
            inv = self.new("Investigation", name="INV-%06d" % i, visitId="1.%d" % (i % 3),
                           title="Study of %s, part %d" % (r.choice(self.awkward), i),
                           startDate=when, facility=fac, type=itype)
            inv.values["investigationUsers"] = [
                self.new("InvestigationUser", role="PI", user=r.choice(users))]
            inv.values["keywords"] = [self.new("Keyword", name="kw%d" % k) for k in range(2)]
            inv.values["parameters"] = [
                self.new("InvestigationParameter", type=ptypes[0], numericValue=r.random() * 300)]
            inv.values["investigationInstruments"] = [
                self.new("InvestigationInstrument", instrument=r.choice(inst))]
            datasets, datafiles = [], []
            for d in range(self.datasets_per_inv):
                ds = self.new("Dataset", name="ds-%02d %s" % (d, r.choice(self.awkward)),
                              complete=bool(d % 2), investigation=inv, type=dstype,
                              startDate=when)
                ds.values["parameters"] = [
                    self.new("DatasetParameter", type=ptypes[0], numericValue=round(r.random(), 6)),
                    self.new("DatasetParameter", type=ptypes[1], stringValue=r.choice(self.awkward))]
                datasets.append(ds)
                for f in range(self.files_per_dataset):
                    df = self.new("Datafile", name="file_%05d.nxs" % f, fileSize=r.randrange(10**9),
                                  location="inv%d/ds%d/file_%05d.nxs" % (i, d, f),
                                  checksum="%08x" % r.getrandbits(32), dataset=ds,
                                  datafileFormat=dff, datafileCreateTime=when)
                    df.values["parameters"] = [
                        self.new("DatafileParameter", type=ptypes[0],
                                 numericValue=float(r.randrange(1000)) / 10)]
                    datafiles.append(df)
            all_datasets.extend(r.sample(datasets, 1))
            yield [[inv], datasets, datafiles]

        collections = []
        for c in range(0, len(all_datasets), 10):
            dc = self.new("DataCollection", doi="10.5286/dc.%d" % c)
            dc.values["dataCollectionDatasets"] = [
                self.new("DataCollectionDataset", dataset=ds) for ds in all_datasets[c:c + 10]]
            collections.append(dc)
        yield [collections]


def generate(path, fmt: str, objects: int, seed: int = 1, quotes: bool = True) -> int:
    """Write a file of about ``objects`` objects; returns the exact count."""
    gen = Generator(Schema.for_version("6.2"), objects, seed, quotes)
    client = FileOnly(gen.s)
    count = 0
    with open_dumpfile(client, str(path), fmt, "w") as writer:
        for chunk in gen.chunks():
            writer.writedata(chunk)
            count += sum(o.count() for objs in chunk for o in objs)
    return count


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=10000)
    p.add_argument("-f", "--format", default="XML")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-quotes", action="store_true",
                   help="no apostrophes in names (python-icat cannot ingest them)")
    a = p.parse_args()
    n = generate(a.output, a.format.upper(), a.objects, a.seed, not a.no_quotes)
    print("%s: %d objects" % (a.output, n), file=sys.stderr)


if __name__ == "__main__":
    main()
