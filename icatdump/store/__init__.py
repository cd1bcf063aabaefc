"""The embedded ICAT catalogue on SQLite.

``init_catalogue(path, version)`` creates one; ``EmbeddedClient(path)`` opens
it as a :class:`icatdump.client.Client`.  Modules: ``ddl`` (tables from the
schema), ``values`` (Python ↔ SQL values), ``jpql`` (query parser),
``sqlgen`` (JPQL → SQL), ``loader`` (rows → Entities, INCLUDE), ``write``
(create/update/delete with ICAT's validation), ``catalogue`` (the client).
"""

from .catalogue import CatalogueError, EmbeddedClient, init_catalogue

__all__ = ["CatalogueError", "EmbeddedClient", "init_catalogue"]
