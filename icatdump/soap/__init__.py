"""ICAT's SOAP API: a client for real ICAT servers and a local compatible server.

* :mod:`.wsdl` generates the WSDL and XSD of an ICAT server from a schema;
* :mod:`.codec` turns entities into SOAP XML and back (shared by both sides);
* :mod:`.sessions` holds logins and their lifetimes for the server;
* :mod:`.server` answers ICAT's operations over HTTP for any ``Client``,
  within the timeouts and ceilings of :mod:`.limits`;
* :mod:`.client` is ``SoapClient``, the suds-based client of a real ICAT.
"""
