"""Field rules: what ICAT accepts as the value of each field, in one table.

A :class:`FieldRule` says, for one field of one entity type, how a value
read from a file or a SOAP message is converted (by the field's schema
type, :func:`icatdump.types.converter`), which values an enumeration
allows, whether a create without a value fails, what the server stores for
an omitted value, and how long a string may be -- counted in ICAT's unit.
The readers, ``icatdata check``, the embedded catalogue's validation and
the SOAP codec all take their rule from here, so that a file ``check``
passes is a file an ingest accepts, and the other way round.

ICAT facts behind the table (icat.server @ 48fb3271, ``M/`` =
``src/main/java/org/icatproject/core/manager/``, ``E/`` = ``.../entity/``):

* **String length is counted in UTF-16 code units.**  ``M/EntityInfoHandler``
  takes a String field's limit from ``@Column(length)``, 255 when none is
  given (the ``stringLength`` of ``getEntityInfo``), and
  ``M/EntityBeanManager.isValid`` refuses a value when
  ``((String) value).length() > length`` with ``VALIDATION "<Entity>:
  <field> cannot have length > N"``.  Java's ``String.length()`` is the
  number of UTF-16 code units: a character outside the Basic Multilingual
  Plane (an emoji) counts 2.  So a Datafile description of 200 emoji is
  400 units long, over the limit of 255, though Python's ``len()`` says 200.
* ``isValid`` runs only after the database refused a ``persist``/``flush``
  (``create``, ``createMany``, ``update``, ``cloneEntity``); the column
  itself is ``VARCHAR(N)`` from EclipseLink's DDL generation
  (``persistence.xml``: ``create-or-extend-tables``) and counts in the
  database's own unit: characters (code points) in MySQL/MariaDB with
  utf8mb4, bytes under Oracle's default length semantics [not verified
  against a running database].  UTF-16 units are ICAT's own rule, the one
  its message and its ``stringLength`` speak of, and never fewer than code
  points, so a value within them also fits a MySQL column.
* **Not null.**  ``isValid`` also refuses a null field marked
  ``@Column(nullable=false)`` / ``@JoinColumn(nullable=false)`` (``"<Entity>:
  <field> cannot be null."``).  A Java primitive ``boolean`` is never null:
  an omitted one is ``false`` (``E/Dataset.complete``), and a few ``Long``
  fields have Java initializers (``private Long fileSize = 0L``,
  :data:`icatdump.schema.DEFAULTS`), so omitting those is no error.
* **Enumerations** (``ParameterValueType``, ``StudyStatus``) accept their
  constant names only (:data:`icatdump.schema.ENUMS`).
* **Integral types** are Java's: ``Long`` 64-bit, ``Integer`` 32-bit
  (:data:`icatdump.types.INT_RANGES`); a SOAP message with a value outside
  does not parse, and SQLite integers are 64-bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .schema import ATTRIBUTE, DEFAULTS, ENUMS, MANY, EntityType, Field
from .types import INT_RANGES, ValueProblem, converter

#: The Java type whose values are never null (an omitted one is false).
PRIMITIVE_DEFAULTS = {"boolean": False}


def icat_length(text: str) -> int:
    """The length of a string as ICAT counts it: UTF-16 code units
    (``java.lang.String.length()``), so each character beyond U+FFFF counts 2."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) >> 1


@dataclass(frozen=True)
class FieldRule:
    """The rules of one attribute or many-to-one relation of an entity type.

    ``length``: the longest string allowed, in ICAT's unit (:func:`icat_length`);
    ``required``: a create without a value fails (not null, no server default);
    ``default``: the Python value the server stores for an omitted attribute;
    ``enum``: the allowed names of an enumeration type;
    ``range``: the lowest and highest value of an integral type (Java's);
    ``convert``: a file or wire value to the field's Python value, raising
    :class:`icatdump.types.ValueProblem` (always, for a relation: its value
    is an object, resolved by reference, never converted).
    """
    entity: str
    name: str
    kind: str
    type: str
    length: int | None
    required: bool
    default: object
    enum: tuple | None
    range: tuple | None
    convert: Callable[[Any], Any]

    def too_long(self, value) -> int | None:
        """The ICAT length of a string over the limit, else None."""
        limit = self.length
        if limit is None or value.__class__ is not str:
            return None
        n = len(value)
        if n + n <= limit:      # even all astral characters would fit
            return None
        n = icat_length(value)
        return n if n > limit else None

    def length_problem(self, value) -> str | None:
        """"is N characters long, at most L allowed", or None if it fits."""
        n = self.too_long(value)
        if n is None:
            return None
        if n == len(value):
            return "is %d characters long, at most %s allowed" % (n, self.length)
        return ("is %d UTF-16 code units long (%d characters; ICAT counts a character "
                "beyond U+FFFF as 2), at most %s allowed" % (n, len(value), self.length))


def _reference(entity: str, name: str) -> Callable[[Any], Any]:
    def convert(value):
        raise ValueProblem("%s.%s: expected a reference to an object, not a value"
                           % (entity, name))
    return convert


@lru_cache(maxsize=None)
def field_rule(entity: str, f: Field) -> FieldRule:
    """The rule of field ``f`` of the entity type named ``entity``."""
    if f.kind == MANY:
        raise ValueError("%s.%s is a one-to-many relation: no value rules" % (entity, f.name))
    if f.kind != ATTRIBUTE:
        return FieldRule(entity, f.name, f.kind, f.type, None, f.not_null, None, None, None,
                         _reference(entity, f.name))
    default = DEFAULTS.get((entity, f.name), PRIMITIVE_DEFAULTS.get(f.type))
    length = f.length if f.type == "String" else None
    return FieldRule(entity, f.name, f.kind, f.type, length, f.not_null and default is None,
                     default, ENUMS.get(f.type), INT_RANGES.get(f.type), converter(f, entity))


def rules_of(etype: EntityType) -> dict[str, FieldRule]:
    """The rules of an entity type's attributes and many-to-one relations,
    by field name (attributes first, each group by name)."""
    name = etype.name
    rules = {n: field_rule(name, f) for n, f in etype.attrs.items()}
    rules.update((n, field_rule(name, f)) for n, f in etype.ones.items())
    return rules
