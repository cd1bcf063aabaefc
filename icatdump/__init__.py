"""icatdump: dump an ICAT catalogue to a file and ingest such a file back.

Reads and writes the ICAT data files of python-icat's icatdump/icatingest
(XML and YAML), against a real ICAT over SOAP or an embedded SQLite catalogue.
"""

__version__ = "0.1.0"
GENERATOR = "icatdump (icatdump %s)" % __version__
