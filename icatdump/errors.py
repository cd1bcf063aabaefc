"""Every error icatdump raises on purpose, and the exit code each one means.

One root, :class:`IcatdumpError`: a class states its exit code (and may
carry a ``hint``, what to do next), so the commands never guess from the
type of an exception what went wrong.  :func:`classify` is the one place
where an exception becomes an exit code and a one-line message; exceptions
from outside the hierarchy that stand for bad input or a lost connection
(``ValueError`` from a parser, ``OSError``, ``ConnectionError``) are mapped
there too, and anything else is an internal error: a bug, not a data
problem.

The classes keep the bases they had before they moved here (``ValueError``
for the data problems, ``ConnectionError`` for lost connections), so code
that catches those keeps working; their old modules still export them.
This module imports nothing of the package, so every module can import it
to report an error without importing another that reports the same kind.
"""

from __future__ import annotations

#: Exit codes, the same for every command.
EXIT_OK = 0
EXIT_DATA = 1           # a bad or inconsistent file, a value the catalogue rejects
EXIT_USAGE = 2          # how the command was called, its configuration
EXIT_SERVER = 3         # connection or server problem, a busy catalogue
EXIT_INTERNAL = 4       # a bug: an exception nobody expected
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_BROKEN_PIPE = 141  # the output pipe closed (``| head``), as shells report SIGPIPE

__all__ = [
    "EXIT_OK", "EXIT_DATA", "EXIT_USAGE", "EXIT_SERVER", "EXIT_INTERNAL", "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "IcatdumpError", "UsageProblem", "ConfigError", "CatalogueError", "CatalogueBusy",
    "ServerError", "DataFileError", "DataConsistencyError", "ValueProblem", "KeyError_",
    "SearchResultError", "DecodeError", "ClientFault", "CatalogueChanged",
    "IcatError", "ParameterError", "InternalError", "PrivilegesError", "NoSuchObjectError",
    "ObjectExistsError", "SessionError", "ValidationError", "NotImplementedError_",
    "ERROR_TYPES", "error_for", "classify",
]


class IcatdumpError(Exception):
    """The root of icatdump's errors.

    ``exit_code`` is what a command exits with when this error ends it;
    ``hint`` (optional) is a second line telling what to do next, e.g. how
    to resume an ingest.
    """

    exit_code: int = EXIT_DATA
    hint: str | None = None

    def __init__(self, *args, hint: str | None = None):
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


# -- usage and configuration (exit 2) -------------------------------------------

class UsageProblem(IcatdumpError):
    """A problem with how the command was called (exit 2)."""

    exit_code = EXIT_USAGE


class ConfigError(IcatdumpError):
    """A configuration problem; the message is one line naming its source.

    The commands print it and exit with status 2.
    """

    exit_code = EXIT_USAGE


class CatalogueError(IcatdumpError):
    """The file is not an embedded catalogue, or cannot become one.

    A usage problem (exit 2): the command was pointed at the wrong file.
    """

    exit_code = EXIT_USAGE


# -- connection and server (exit 3) ---------------------------------------------

class CatalogueBusy(CatalogueError):
    """Another process is writing the catalogue (exit 3: try again later)."""

    exit_code = EXIT_SERVER


class ServerError(IcatdumpError, ConnectionError):
    """No usable reply from a server: the connection dropped, a 5xx that is
    no ICAT fault, a malformed reply, an HTTP error status, a fault of no
    ICAT type, no complete reply within the timeout, a reply larger than the
    ceiling (exit 3).  The message is one line naming the server and what it
    did."""

    exit_code = EXIT_SERVER


# -- data problems (exit 1) -----------------------------------------------------

class DataFileError(IcatdumpError, ValueError):
    """A problem with the content of a data file, with where it is.

    ``str()`` gives one line: file, chunk, line, key, then the cause.
    """

    def __init__(self, cause, file=None, chunk=None, line=None, key=None):
        super().__init__(cause)
        self.cause, self.file, self.chunk, self.line, self.key = cause, file, chunk, line, key
        #: The ICAT error type when the catalogue refused an object of the file.
        self.icat_type: str | None = None

    def place(self) -> str:
        """Where in the file: ``chunk N, line L, KEY``, each part if known."""
        return ", ".join(part for part in (
            "chunk %d" % self.chunk if self.chunk else "",
            "line %d" % self.line if self.line else "", self.key or "") if part)

    def one_line_cause(self) -> str:
        """The cause on one line (parsers' messages may span several)."""
        return " ".join(str(self.cause).split())

    def __str__(self):
        where = ", ".join(part for part in (str(self.file or ""), self.place()) if part)
        cause = self.one_line_cause()
        return "%s: %s" % (where, cause) if where else cause


class DataConsistencyError(IcatdumpError, ValueError):
    """An object lacks what its unique key needs."""


class ValueProblem(IcatdumpError, ValueError):
    """A value that cannot be converted to its attribute's type."""


class KeyError_(IcatdumpError, ValueError):
    """A key that does not follow the key grammar."""


class CatalogueChanged(IcatdumpError, ValueError):
    """Objects were created, changed or deleted while the dump read them."""

    hint = ("no file was written: dump again while nothing writes to the catalogue "
            "(a server offers no snapshot to read one state from)")

    def __init__(self, changed: list[str]):
        self.changed = changed
        super().__init__("the catalogue changed while it was dumped (%s)" % ", ".join(changed))


class SearchResultError(IcatdumpError, ValueError):
    """A search that had to find exactly one object found none or several."""


class DecodeError(IcatdumpError, ValueError):
    """A bean or value in a SOAP message that does not fit the schema."""


class ClientFault(IcatdumpError):
    """A request to the local SOAP server that is not a well-formed call of a
    known operation (the server answers it with a fault; no command exits
    with it)."""


# -- errors as ICAT reports them --------------------------------------------------

class IcatError(IcatdumpError):
    """An error as ICAT reports it: a type, a message and, for createMany,
    the offset of the failing object."""

    type = "INTERNAL"

    def __init__(self, message, offset=None, type=None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        if type is not None:
            self.type = type

    def __str__(self):
        return "%s: %s" % (self.type, self.message)


class ParameterError(IcatError):
    type = "BAD_PARAMETER"


class InternalError(IcatError):
    type = "INTERNAL"


class PrivilegesError(IcatError):
    type = "INSUFFICIENT_PRIVILEGES"


class NoSuchObjectError(IcatError):
    type = "NO_SUCH_OBJECT_FOUND"


class ObjectExistsError(IcatError):
    type = "OBJECT_ALREADY_EXISTS"


class SessionError(IcatError):
    """Login failed or the session expired: a server problem (exit 3)."""

    type = "SESSION"
    exit_code = EXIT_SERVER


class ValidationError(IcatError):
    type = "VALIDATION"


class NotImplementedError_(IcatError):
    type = "NOT_IMPLEMENTED"


ERROR_TYPES = {cls.type: cls for cls in (
    ParameterError, InternalError, PrivilegesError, NoSuchObjectError,
    ObjectExistsError, SessionError, ValidationError, NotImplementedError_)}


def error_for(type_name: str, message: str, offset=None) -> IcatError:
    """Build the IcatError subclass for an ICAT exception type name."""
    return ERROR_TYPES.get(type_name, IcatError)(message, offset, type_name)


# -- exit codes ---------------------------------------------------------------------

def one_line(exc: BaseException) -> str:
    """The message of an exception on one line (parsers' messages may span lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def classify(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception that ends a command.

    Outside the hierarchy, ``ValueError`` counts as bad input (parsers and
    conversions raise it for malformed text), ``ConnectionError`` and
    ``TimeoutError`` as connection problems, ``OSError`` as a file that
    cannot be read or written, an SQLite operational or database error as a
    catalogue that cannot be used.  Anything else is :data:`EXIT_INTERNAL`.
    """
    import sqlite3
    message = one_line(exc)
    if isinstance(exc, IcatdumpError):
        return exc.exit_code, message
    if isinstance(exc, ValueError):
        return EXIT_DATA, message
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_SERVER, message
    if isinstance(exc, OSError):
        name = getattr(exc, "filename", None)
        return EXIT_DATA, ("%s: %s" % (name, exc.strerror) if name else message)
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError)) \
            or type(exc) is sqlite3.DatabaseError:
        return EXIT_DATA, "catalogue: %s" % message
    return EXIT_INTERNAL, "%s: %s" % (type(exc).__name__, message)
