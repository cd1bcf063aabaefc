"""icatdump: dump an ICAT catalogue to a file and ingest such a file back.

Reads and writes the ICAT data files of python-icat's icatdump/icatingest
(XML and YAML), against a real ICAT over SOAP or an embedded SQLite catalogue.

The public API is the names in ``__all__``: python-icat's ``icat.dumpfile``
names (:func:`open_dumpfile`, :class:`DumpFileReader`,
:class:`DumpFileWriter`, :data:`Backends`, :func:`register_backend`), the
clients, the ingest driver and the errors.  They are imported on first use,
so that ``import icatdump`` (which every command and plugin does) stays
cheap: the SOAP client pulls in suds, the data files lxml and PyYAML.

The functions ``ingest()`` and ``dump()`` are not named here: their modules
``icatdump.ingest`` and ``icatdump.dump`` bear the same names, and a
submodule, once imported, would shadow them as attributes of the package.
Import them from their modules.
"""

from __future__ import annotations

from importlib import import_module

#: ``typing.TYPE_CHECKING`` without importing typing (type checkers take any
#: name TYPE_CHECKING as true).
TYPE_CHECKING = False

__version__ = "0.1.0"
GENERATOR = "icatdump (icatdump %s)" % __version__

#: Each public name and the module that defines it.
_HOMES = {
    "open_dumpfile": "registry", "DumpFileReader": "dumpfile", "DumpFileWriter": "dumpfile",
    "Backends": "registry", "register_backend": "registry",
    "Client": "client", "Entity": "entity",
    "EmbeddedClient": "store", "init_catalogue": "store",
    "SoapClient": "soap.client",
    "Ingester": "ingest", "IngestStats": "ingest", "Selection": "dump",
    "IcatdumpError": "errors", "UsageProblem": "errors", "ConfigError": "errors",
    "CatalogueError": "errors", "CatalogueBusy": "errors", "ServerError": "errors",
    "DataFileError": "errors", "DataConsistencyError": "errors", "ValueProblem": "errors",
    "KeyError_": "errors", "SearchResultError": "errors", "DecodeError": "errors",
    "IcatError": "errors", "ParameterError": "errors", "InternalError": "errors",
    "PrivilegesError": "errors", "NoSuchObjectError": "errors",
    "ObjectExistsError": "errors", "SessionError": "errors", "ValidationError": "errors",
    "NotImplementedError_": "errors", "CatalogueChanged": "errors",
}

__all__ = [
    "__version__",
    "open_dumpfile", "DumpFileReader", "DumpFileWriter", "Backends", "register_backend",
    "Client", "Entity", "EmbeddedClient", "init_catalogue", "SoapClient",
    "Ingester", "IngestStats", "Selection",
    "IcatdumpError", "UsageProblem", "ConfigError", "CatalogueError", "CatalogueBusy",
    "ServerError", "DataFileError", "DataConsistencyError", "ValueProblem", "KeyError_",
    "SearchResultError", "DecodeError", "IcatError", "ParameterError", "InternalError",
    "PrivilegesError", "NoSuchObjectError", "ObjectExistsError", "SessionError",
    "ValidationError", "NotImplementedError_", "CatalogueChanged",
]

if TYPE_CHECKING:   # what the lazy names are, for type checkers and editors
    from .client import Client
    from .dump import Selection
    from .dumpfile import DumpFileReader, DumpFileWriter
    from .entity import Entity
    from .errors import (CatalogueBusy, CatalogueChanged, CatalogueError, ConfigError,
                         DataConsistencyError, DataFileError, DecodeError, IcatdumpError, IcatError, InternalError,
                         KeyError_, NoSuchObjectError, NotImplementedError_,
                         ObjectExistsError, ParameterError, PrivilegesError,
                         SearchResultError, ServerError, SessionError, UsageProblem,
                         ValidationError, ValueProblem)
    from .ingest import Ingester, IngestStats
    from .registry import Backends, open_dumpfile, register_backend
    from .soap.client import SoapClient
    from .store import EmbeddedClient, init_catalogue


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    value = getattr(import_module("." + home, __name__), name)
    globals()[name] = value         # found once, a plain attribute afterwards
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
