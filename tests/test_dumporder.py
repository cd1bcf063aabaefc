"""One dump order: the plan, the files written and the YAML reader agree.

For every schema version a real embedded catalogue is filled with
python-icat's example file of that version and dumped to XML and YAML.
The plan's chunks and the types of their queries must be
``icatdump.dumporder``'s; the XML file must have the same chunks with the
types in the same order (types with no objects absent); the YAML file the
same chunks and types, each chunk's types sorted by name as PyYAML writes
them; and the YAML reader must hand them out in the restore order, which
(like the dump order) puts every type after the types it refers to.
"""

from __future__ import annotations

import re

import pytest
import yaml
from lxml import etree

from icatdump.dump import plan, dump
from icatdump.dumpfile import open_dumpfile
from icatdump.dumporder import (CHUNK_GROUPS, PYICAT_RESTORE_ORDER, chunk_groups,
                                dependency_order, restore_order, type_order)
from icatdump.entity import Entity
from icatdump.ingest import ingest
from icatdump.schema import VERSIONS, Schema
from icatdump.store import EmbeddedClient, init_catalogue


@pytest.fixture(scope="module", params=VERSIONS)
def catalogue(request, tmp_path_factory, example):
    version = request.param
    path = tmp_path_factory.mktemp("order") / ("icat-%s.sqlite" % version)
    init_catalogue(str(path), version)
    client = EmbeddedClient(str(path))
    with open_dumpfile(client, str(example("icatdump-%s.xml" % version)), "XML", "r") as r:
        ingest(client, r)
    yield client
    client.close()


def _dedup(types):
    out = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


def plan_chunks(client):
    """``[(chunk group, [entity types of its queries])]`` of the dump plan."""
    out = []
    for name, items, _ in plan(client):
        types = []
        for item in items:
            if isinstance(item, list):
                types += [o.type.name for o in item if isinstance(o, Entity)]
            else:
                types.append(item.entity)
        out.append((re.sub(r" \d+$", "", name), _dedup(types)))
    return out


def dumped(client, fmt, tmp_path) -> bytes:
    out = tmp_path / ("out." + fmt.lower())
    with open_dumpfile(client, str(out), fmt, "w") as writer:
        dump(client, writer)
    return out.read_bytes()


def xml_chunks(data: bytes, schema):
    root = etree.fromstring(data)
    return [_dedup(schema.by_instance_name(e.tag).name for e in chunk
                   if isinstance(e.tag, str)) for chunk in root.iter("data")]


def yaml_chunks(data: bytes):
    """Each chunk's type tags in the order the file has them."""
    return [list(doc or {}) for doc in yaml.safe_load_all(data)]


def test_plan_order_is_dumporder(catalogue):
    schema = catalogue.schema
    groups = dict(chunk_groups(schema))
    chunks = plan_chunks(catalogue)
    names = _dedup(n for n, _ in chunks)
    assert names == [n for n, _ in chunk_groups(schema)]
    for name, types in chunks:
        expected = list(groups[name])
        if name == "investigation":
            # An investigation's chunk holds its own datafile queries only if
            # it has datasets; the first item is the investigation itself.
            assert types == expected[:len(types)]
        else:
            assert types == expected


def test_written_files_follow_the_plan(catalogue, tmp_path):
    schema = catalogue.schema
    chunks = plan_chunks(catalogue)
    xml = xml_chunks(dumped(catalogue, "XML", tmp_path), schema)
    assert len(xml) == len(chunks)
    assert sum(map(len, xml)) > 10
    for (name, planned), written in zip(chunks, xml):
        assert written == [t for t in planned if t in written], name
        assert set(written) <= set(planned), name
    yml = yaml_chunks(dumped(catalogue, "YAML", tmp_path))
    assert len(yml) == len(xml)
    for tags, types in zip(yml, xml):
        assert tags == sorted(tags)             # PyYAML's key order, python-icat's bytes
        assert {schema.by_instance_name(t).name for t in tags} == set(types)


def test_yaml_reader_restores_in_restore_order(catalogue, tmp_path):
    from backends.yaml import YAMLDumpFileReader
    path = tmp_path / "out.yaml"
    path.write_bytes(dumped(catalogue, "YAML", tmp_path))
    rank = {t: i for i, t in enumerate(restore_order(catalogue.schema))}
    seen = 0
    with YAMLDumpFileReader(catalogue, str(path)) as reader:
        for node in reader.getdata():
            types = _dedup(raw.tag for raw in reader.parse_chunk(node))
            names = [catalogue.schema.by_instance_name(t).name for t in types]
            assert names == sorted(names, key=rank.__getitem__)
            seen += len(names)
    assert seen > 10


@pytest.mark.parametrize("version", VERSIONS)
def test_orders_are_dependency_orders(version):
    """Every type comes after each type it refers to (its own type aside),
    in the dump order and in the restore order, for every schema version;
    the fixed parts are python-icat's lists unchanged."""
    schema = Schema.for_version(version)
    for order, fixed in ((type_order(schema), [t for _, ts in CHUNK_GROUPS for t in ts]),
                         (restore_order(schema), PYICAT_RESTORE_ORDER)):
        assert sorted(order) == sorted(et.name for et in schema)
        at = {t: i for i, t in enumerate(order)}
        for et in schema:
            for f in et.ones.values():
                if f.type != et.name:
                    assert at[f.type] < at[et.name], (et.name, f.name, f.type)
        assert [t for t in order if t in fixed] == [t for t in fixed if t in schema]


def test_dependency_order_places_unknown_types_after_their_references():
    schema = Schema.for_version("6.2")
    order = restore_order(schema)
    # Not in python-icat 1.7.0's list: each right after the last type it needs.
    assert order.index("InvestigationFacilityCycle") == order.index("Investigation") + 1
    assert order.index("Subject") == order.index("DataPublication") + 1
    assert order.index("DataCollectionInvestigation") == order.index("DataCollection") + 1
    alone = dependency_order((), schema)
    assert not schema[alone[0]].ones and alone[-1] != "Facility"
