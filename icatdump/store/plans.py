"""Translated queries, reused for queries of the same shape.

A dump sends hundreds of queries that differ only in their literals (the
investigation id, the last id of the previous page).  Tokenizing, parsing
and translating one costs far more than running it, so a translation is
kept per *shape*: the query text with every string, number and timestamp
literal cut out.  A query of a known shape gets the kept SQL with its own
literals bound, each converted as the translator converted the literal in
the same place (by the type of the field it is compared with).

Only what is certain is reused.  A translation is kept when every literal
the scanner below cut out became exactly one bound parameter, and the
conversion repeated from the literal's text gives the parameter the
translator bound; anything else (``:user``, ``CURRENT_TIMESTAMP``, ``a -1``
where the minus is an operator) is translated every time.  Scanning stops
at INCLUDE or LIMIT: what follows holds no literals (``INCLUDE 1`` and the
LIMIT numbers stay part of the shape).  A literal that does not convert for
its field (``o.id = 'x'``) is translated again, so the error is the
translator's own.
"""

from __future__ import annotations

import dataclasses
import re

from ..types import UTC, parse_datetime
from . import concise, jpql
from .sqlgen import translate
from .values import date_to_sql, literal_for

#: Lexemes that matter for finding literals: names (so that the digits of
#: ``t0`` are not a number), strings, timestamps and numbers, as the
#: tokenizer in ``jpql.py`` reads them.
_LEXEME = re.compile(r"""
    (?P<name>[:A-Za-z$_][A-Za-z0-9$_.]*)
  | (?P<str>'(?:[^']|'')*')
  | (?P<ts>\{ts\ \d{4}-\d{2}-\d{2}\ \d{2}:\d{2}:\d{2}\})
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
""", re.VERBOSE)

_STOP = frozenset(("INCLUDE", "LIMIT"))

#: How many shapes are kept; a dump uses a few dozen.
MAX_SHAPES = 1000


def scan(text: str) -> tuple[str, list]:
    """``(shape, literals)``: the text with its literals cut out, and the
    literals as ``(position, kind, text)``."""
    pieces, literals, start = [], [], 0
    for m in _LEXEME.finditer(text):
        kind = m.lastgroup
        if kind == "name":
            if m.group().upper() in _STOP:
                break
            continue
        pieces.append(text[start:m.start()])
        pieces.append("\0" + kind)          # the kind is part of the shape
        literals.append((m.start(), kind, m.group()))
        start = m.end()
    pieces.append(text[start:])
    return "".join(pieces), literals


def _value(kind: str, text: str, field, zone):
    """The parameter bound for a literal of ``kind`` written ``text``,
    compared with ``field`` (or None), as ``sqlgen.Translator`` binds it
    (a date without offset read in ``zone``)."""
    raw: str | int | float
    if kind == "str":
        raw = text[1:-1].replace("''", "'")
    elif kind == "num":
        raw = float(text) if ("." in text or "e" in text or "E" in text) else int(text)
    else:
        raw = text[4:-1]
        if field is None:
            return date_to_sql(parse_datetime(raw, zone))
    return raw if field is None else literal_for(field, raw, zone)


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


class _Template:
    """A kept translation: the plan, and for each literal of the shape the
    parameter it goes to and the field it is converted for."""

    def __init__(self, plan, slots):
        self.plan = plan
        self.slots = slots      # (parameter index, literal index, kind, field)

    def plan_for(self, literals, zone):
        params = list(self.plan.params)
        for pi, li, kind, f in self.slots:
            params[pi] = _value(kind, literals[li][2], f, zone)
        return dataclasses.replace(self.plan, params=params)


def _template(plan, literals, zone) -> _Template | None:
    """A template from a fresh translation, if it is certain to be right."""
    by_pos = {pos: i for i, (pos, _, _) in enumerate(literals)}
    slots, used = [], set()
    for pi, source in enumerate(plan.sources):
        if source is None:
            return None
        node, f = source
        if node.pos < 0:
            continue            # a constant of the shape (an enum value)
        li = by_pos.get(node.pos)
        if li is None or li in used:
            return None
        kind = literals[li][1]
        try:
            ok = _same(_value(kind, literals[li][2], f, zone), plan.params[pi])
        except (ValueError, TypeError, OverflowError):
            ok = False
        if not ok:
            return None
        used.add(li)
        slots.append((pi, li, kind, f))
    if len(used) != len(literals):
        return None
    return _Template(plan, slots)


class PlanCache:
    """Translate JPQL text to a :class:`~icatdump.store.sqlgen.Plan`, reusing
    the translations of earlier queries of the same shape."""

    def __init__(self, schema, meta: bool = False):
        self.schema = schema
        self.templates: dict[str, _Template | None] = {}
        #: Whether entity results end with the audit columns
        #: (``loader.RowLoader``); changed through ``EmbeddedClient.meta``.
        self.meta = meta
        #: The zone date literals without offset are read in; changed
        #: through ``EmbeddedClient.timezone``.
        self.zone = UTC

    def plan(self, text: str, user: str, authz=None):
        """The plan of ``text``; with ``authz`` (see ``sqlgen.Translator``)
        translated afresh, since the restrictions depend on the user and on
        the rules of the moment."""
        text = concise.search_text(text, self.schema).strip(" ")
        if authz is not None:
            return translate(self.schema, jpql.parse(text), user, self.meta, authz, self.zone)
        shape, literals = scan(text)
        template = self.templates.get(shape, False)
        if template:
            try:
                return template.plan_for(literals, self.zone)
            except (ValueError, TypeError, OverflowError):
                pass            # translated below, for the translator's error
        plan = translate(self.schema, jpql.parse(text), user, self.meta, zone=self.zone)
        if template is False:
            if len(self.templates) >= MAX_SHAPES:
                self.templates.clear()
            self.templates[shape] = _template(plan, literals, self.zone)
        return plan
