"""A local ICAT Data Service (IDS) beside the local ICAT server.

:mod:`.store` keeps the files, :mod:`.server` speaks ids.server's REST API
over them and over the catalogue of the same ``icatdata serve`` process,
:mod:`.client` is the small IDS client ``icatingest --upload-datafiles`` uses,
and :mod:`.local` has ``put`` itself, shared by the server and by uploads
into an embedded catalogue (no HTTP).
"""
