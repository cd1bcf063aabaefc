"""python-icat's dumpfile API, used as python-icat's documentation and scripts
use it, with only the import line changed.

The script below is python-icat code; the harness gives it a client (an
embedded catalogue here, where python-icat would build ``icat.Client``).
"""

import textwrap

import pytest

from icatdump.store import EmbeddedClient, init_catalogue

# python-icat:  from icat.dumpfile import open_dumpfile
SCRIPT = textwrap.dedent('''
    from icatdump import open_dumpfile

    # Ingest, as python-icat's icatingest.py does it.
    with open_dumpfile(client, infile, "YAML", "r") as dumpfile:
        for obj in dumpfile.getobjs():
            obj.create()

    # Dump, as python-icat's documentation shows a writer used by hand.
    dumpfile = open_dumpfile(client, outfile, "XML", "w")
    dumpfile.head()
    dumpfile.writedata(["SELECT o FROM Facility o", "SELECT o FROM User o"])
    dumpfile.finalize()
''')


def test_python_icat_script_with_the_import_changed(tmp_path, example):
    cat = tmp_path / "c.sqlite"
    init_catalogue(cat)
    client = EmbeddedClient(cat)
    out = tmp_path / "out.xml"
    exec(compile(SCRIPT, "pyicat-script", "exec"),
         {"client": client, "infile": str(example("icatdump-6.2.yaml")), "outfile": str(out)})
    assert len(client.search("SELECT o FROM Investigation o")) == 3
    text = out.read_text()
    assert text.startswith("<?xml") and text.rstrip().endswith("</icatdata>")
    assert text.count("<facility ") == 1 and text.count("<user ") > 5
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    client.close()


def test_backends_filled_on_first_access():
    """python-icat's ``Backends`` lists the formats without any call first."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "from icatdump.dumpfile import Backends; "
                        "print(sorted(Backends))"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "['PORT', 'XML', 'YAML']", r.stdout + r.stderr


def test_create_needs_a_bound_object(tmp_path):
    from icatdump.entity import Entity
    from icatdump.schema import Schema
    obj = Entity(Schema.for_version("6.2")["Facility"], {"name": "x"})
    with pytest.raises(AttributeError, match="bound to no client"):
        obj.create()
