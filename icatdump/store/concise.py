"""ICAT's old concise query syntax, translated into JPQL.

icat.server still accepts every query that does not start with SELECT in the
syntax of ICAT 4.2 and older, and converts it into JPQL before anything else
(``core/oldparser/OldSearchQuery``, ICAT-FACTS §3.5).  Clients still send it:
python-icat's ``createUser`` (``User[name='x']``), ``searchChunked``
(``"0, 100 Facility"``), its examples and tests.  This module does the same
conversion, so that such a query then takes exactly the JPQL path (parser,
translator, INCLUDE loader, LIMIT): one home for query semantics.

The grammar, as icat.server reads it::

    query   ::= [ [offset] ',' [count] ] [DISTINCT] Name [include] [order] tables
              | [ [offset] ',' [count] ] [DISTINCT] Name order include tables
              | (MIN|MAX|AVG|COUNT|SUM) '(' Name ')' tables
    Name    ::= Entity | Entity.path          (INCLUDE only after a bare Entity)
    include ::= INCLUDE 1 | INCLUDE Entity (',' Entity)*
    order   ::= ORDER BY path [ASC|DESC] (',' path [ASC|DESC])*
    tables  ::= [ '[' cond ']' ] ( '<->' Entity [ '[' cond ']' ] )*
    cond    ::= term (OR term)*        term ::= factor (AND factor)*
    factor  ::= [NOT] ( '(' cond ')' | value op value
                        | name IN '(' value (',' value)* ')' | name BETWEEN value AND value )

Its meaning, also icat.server's:

* every entity named becomes the JPQL variable ``Entity$``; the entities
  joined with ``<->`` are linked by following the schema's relations from the
  first one, each reached exactly once (a second way to one is an error);
* a ``[…]`` condition belongs to the entity before it: a bare name in it is
  that entity's field (``[name='x']``, ``[type.name='y']``), a bare word on
  the other side of a comparison is an enum value (``[valueType=NUMERIC]``);
* ORDER BY paths are fields of the first entity;
* ``INCLUDE Dataset, Datafile`` names types: each is included along the one
  relation path that reaches it (``INCLUDE 1``: all many-to-one relations);
* ``offset,count`` becomes ``LIMIT offset, count`` (``*`` when count is
  missing); no ordering is implied.

Error messages are icat.server's (BAD_PARAMETER), except where it fails with
an internal error (a loop at the first entity, a dangling ``[``): there the
message says what is wrong.  Where icat.server writes ``OR`` without a space
before it, and so breaks enum and timestamp values, the output is correct.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NoReturn

from ..client import ParameterError
from ..query import literal
from ..schema import ENUMS, MANY, ONE, EntityType, Field, Schema
from .jpql import is_jpql, read_quoted
from .sqlgen import ID_FIELD, META_FIELDS

KEYWORDS = frozenset(("DISTINCT", "ORDER", "BY", "ASC", "DESC", "IN", "BETWEEN",
                      "INCLUDE", "AND", "OR", "NOT", "MIN", "MAX", "AVG", "COUNT", "SUM"))
AGGREGATES = ("COUNT", "MAX", "MIN", "AVG", "SUM")
VALUE_KINDS = ("NAME", "STRING", "INTEGER", "REAL", "PARAMETER", "TIMESTAMP")

#: How icat.server prints a token type in an error message.
_KIND_TEXT = {"COMPOP": ">, <, !=, =, <>, >=, <=", "OPENPAREN": "(", "CLOSEPAREN": ")"}

#: Fields every entity has (EntityBaseBean), with their types.
BASE_FIELDS = {"id": ID_FIELD, **META_FIELDS}

#: The Java class of a field, as icat.server names it in messages and in
#: the ``<class>.<word>`` it makes of a bare word compared with a field.
ENTITY_CLASS = "org.icatproject.core.entity.%s"
_JAVA_TYPES = {"String": "java.lang.String", "Date": "java.util.Date",
               "Double": "java.lang.Double", "Long": "java.lang.Long",
               "Integer": "java.lang.Integer", "Boolean": "java.lang.Boolean"}


def java_class(f: Field) -> str:
    if f.kind == MANY:
        return "java.util.List"
    if f.kind == ONE or f.type in ENUMS:
        return ENTITY_CLASS % f.type
    return _JAVA_TYPES.get(f.type, f.type)


_TS = re.compile(r"\{\s*ts\s+(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2})\s*\}")
_SINGLE = {"[": "BRA", "]": "KET", "(": "OPENPAREN", ")": "CLOSEPAREN", ",": "COMMA",
           "=": "COMPOP"}


@dataclass
class Token:
    kind: str            # one of icat.server's OldToken types
    value: str


def _lex_error(text: str, i: int, state: str) -> NoReturn:
    if i < len(text):
        near = text[max(0, i - 4):min(i + 5, len(text))]
        raise ParameterError("Unexpected character '%s' near \"%s\" in state %s for string: %s"
                             % (text[i], near, state, text))
    raise ParameterError("Unexpected end of string in state %s for string: %s" % (state, text))


def tokenize(text: str) -> list[Token]:
    """icat.server's OldTokenizer: only the space separates; names may hold dots."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch.isalpha():
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_."):
                j += 1
            word = text[i:j]
            up = word.upper()
            if up in KEYWORDS:
                tokens.append(Token(up, up))
            elif up == "LIKE":
                tokens.append(Token("COMPOP", "LIKE"))
            else:
                tokens.append(Token("NAME", word))
            i = j
        elif ch.isdecimal() or ch == "-":
            j = i + 1
            while j < n and text[j].isdecimal():
                j += 1
            if j < n and text[j] in "eE.":
                while j < n and (text[j].isdecimal() or text[j] in "eE.+-"):
                    j += 1
                try:
                    number = float(text[i:j])
                except ValueError:
                    _lex_error(text, j, "REAL")
                if not math.isfinite(number):
                    raise ParameterError("Number %s is out of range in %s" % (text[i:j], text))
                tokens.append(Token("REAL", repr(number)))
            else:
                tokens.append(Token("INTEGER", text[i:j]))
            i = j
        elif ch == ":":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(Token("PARAMETER", text[i:j]))
            i = j
        elif ch == "'":
            quoted = read_quoted(text, i)
            if quoted is None:
                _lex_error(text, n, "INQUOTES")
            tokens.append(Token("STRING", quoted[0]))
            i = quoted[1]
        elif ch == "<":
            if text.startswith("<->", i):
                tokens.append(Token("ENTSEP", "<->"))
                i += 3
            elif text.startswith("<-", i):
                _lex_error(text, i + 2, "LTMINUS")
            elif text[i + 1:i + 2] in (">", "="):
                tokens.append(Token("COMPOP", text[i:i + 2]))
                i += 2
            else:
                tokens.append(Token("COMPOP", "<"))
                i += 1
        elif ch == ">":
            op = ">=" if text.startswith(">=", i) else ">"
            tokens.append(Token("COMPOP", op))
            i += len(op)
        elif ch == "!":
            if not text.startswith("!=", i):
                _lex_error(text, i + 1, "NOT")
            tokens.append(Token("COMPOP", "!="))
            i += 2
        elif ch == "{":
            k = text.find("}", i)
            if k < 0:
                break           # as in icat.server: an unclosed timestamp is dropped
            m = _TS.fullmatch(text, i, k + 1)
            if not m:
                raise ParameterError("Timestamp %s is not of form {ts yyyy-mm-dd hh:mm:ss}."
                                     % text[i:k + 1])
            tokens.append(Token("TIMESTAMP", "{ts %s %s}" % m.groups()))
            i = k + 1
        elif ch in _SINGLE:
            tokens.append(Token(_SINGLE[ch], ch))
            i += 1
        else:
            _lex_error(text, i, "NONE")
    return tokens


class _Input:
    """The token stream, with icat.server's OldInput/OldParserException messages."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0

    def peek(self, off: int = 0) -> Token | None:
        n = self.pos + off
        return self.tokens[n] if 0 <= n < len(self.tokens) else None

    def at(self, kind: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == kind

    def consume(self, *kinds: str) -> Token:
        t = self.peek()
        if t is None:
            raise ParameterError("Attempt to read beyond end")
        if kinds and t.kind not in kinds:
            around = [self.peek(i) for i in (-2, -1)]
            after = [self.peek(i) for i in (1, 2)]
            raise ParameterError(
                "Expected token from types [%s] at token %s in %s< %s > %s" % (
                    ", ".join(_KIND_TEXT.get(k, k) for k in kinds), t.value,
                    "".join(x.value + " " for x in around if x is not None), t.value,
                    "".join(x.value + " " for x in after if x is not None)))
        self.pos += 1
        return t


# -- conditions -------------------------------------------------------------------

@dataclass
class Predicate:
    left: Token
    op: Token                           # COMPOP, IN or BETWEEN
    right: list                         # one value; the IN list; low and high


@dataclass
class Factor:
    negated: bool
    item: Predicate | list              # a predicate, or a condition (list of terms)


def _condition(inp: _Input) -> list:
    """``term (OR term)*``: a list of terms, each a list of Factors."""
    terms = [_term(inp)]
    while inp.at("OR"):
        inp.consume()
        terms.append(_term(inp))
    return terms


def _term(inp: _Input) -> list:
    factors = [_factor(inp)]
    while inp.at("AND"):
        inp.consume()
        factors.append(_factor(inp))
    return factors


def _factor(inp: _Input) -> Factor:
    negated = inp.at("NOT")
    if negated:
        inp.consume()
    if inp.at("OPENPAREN"):
        inp.consume()
        cond = _condition(inp)
        inp.consume("CLOSEPAREN")
        return Factor(negated, cond)
    return Factor(negated, _predicate(inp))


def _predicate(inp: _Input) -> Predicate:
    left = inp.consume(*VALUE_KINDS)
    op = inp.consume("COMPOP", "IN", "BETWEEN")
    if op.kind == "COMPOP":
        return Predicate(left, op, [inp.consume(*VALUE_KINDS)])
    if op.kind == "IN":
        inp.consume("OPENPAREN")
        items = [inp.consume(*VALUE_KINDS[1:])]
        while inp.consume("COMMA", "CLOSEPAREN").kind == "COMMA":
            items.append(inp.consume(*VALUE_KINDS[1:]))
        return Predicate(left, op, items)
    low = inp.consume(*VALUE_KINDS)
    inp.consume("AND")
    return Predicate(left, op, [low, inp.consume(*VALUE_KINDS)])


# -- the query --------------------------------------------------------------------

@dataclass
class ConciseQuery:
    result: str                         # Entity or Entity.path
    offset: int | None = None
    count: int | None = None
    distinct: bool = False
    aggregate: str | None = None
    include: object = None              # None, "1" or a list of entity names
    order: list = field(default_factory=list)        # (path, descending)
    #: (entity name, condition or None); the first is the result's entity.
    tables: list = field(default_factory=list)


def parse(text: str) -> ConciseQuery:
    """Read a concise query (no schema needed, entity names unchecked)."""
    inp = _Input(tokenize(text))
    t = inp.consume("NAME", "DISTINCT", "INTEGER", "COMMA", *AGGREGATES)
    if t.kind in AGGREGATES:
        inp.consume("OPENPAREN")
        q = ConciseQuery(inp.consume("NAME").value, aggregate=t.kind)
        inp.consume("CLOSEPAREN")
    else:
        offset = count = None
        if t.kind in ("INTEGER", "COMMA"):
            if t.kind == "INTEGER":
                offset = _integer(t)
                inp.consume("COMMA")
            t = inp.consume("NAME", "DISTINCT", "INTEGER")
            if t.kind == "INTEGER":
                count = _integer(t)
                t = inp.consume("NAME", "DISTINCT")
        distinct = t.kind == "DISTINCT"
        if distinct:
            t = inp.consume("NAME")
        q = ConciseQuery(t.value, offset, count, distinct)
        simple = "." not in q.result
        if inp.at("ORDER"):
            q.order = _order(inp)
            if simple and inp.at("INCLUDE"):
                q.include = _include(inp)
        else:
            if simple and inp.at("INCLUDE"):
                q.include = _include(inp)
            if inp.at("ORDER"):
                q.order = _order(inp)
    q.tables.append((q.result.split(".")[0], _bracket(inp)))
    while inp.peek() is not None:
        inp.consume("ENTSEP")
        name = inp.consume("NAME").value
        q.tables.append((name, _bracket(inp)))
    return q


def _bracket(inp: _Input):
    """An optional ``[condition]``."""
    if not inp.at("BRA"):
        return None
    inp.consume()
    cond = _condition(inp)
    inp.consume("KET")
    return cond


def _integer(t: Token) -> int:
    try:
        return int(t.value)
    except ValueError:
        raise ParameterError("%s is not a number" % t.value) from None


def _order(inp: _Input) -> list:
    inp.consume("ORDER")
    inp.consume("BY")
    items = [_sort_spec(inp)]
    while inp.at("COMMA"):
        inp.consume()
        items.append(_sort_spec(inp))
    return items


def _sort_spec(inp: _Input):
    name = inp.consume("NAME").value
    desc = False
    if inp.at("ASC") or inp.at("DESC"):
        desc = inp.consume().kind == "DESC"
    return (name, desc)


def _include(inp: _Input):
    inp.consume("INCLUDE")
    t = inp.consume("NAME", "INTEGER")
    if t.kind == "INTEGER":
        if t.value != "1":
            raise ParameterError("Only integer value allowed in the INCLUDE list is 1")
        return "1"
    names = [t.value]
    while inp.at("COMMA"):
        inp.consume()
        names.append(inp.consume("NAME").value)
    return names


# -- translation --------------------------------------------------------------------

def _entity(schema: Schema, name: str) -> EntityType:
    if name not in schema:
        raise ParameterError("%s is not an ICAT entity" % name)
    return schema[name]


def _relations(etype: EntityType):
    """Relations as icat.server's EntityInfoHandler lists them: (field, is collection)."""
    for f in etype.fields.values():
        if f.kind in (ONE, MANY):
            yield f, f.kind == MANY


def _var(etype: EntityType) -> str:
    return etype.name + "$"


def _tree(schema: Schema, start: EntityType, others: list[EntityType], includes: bool) -> list:
    """The relations that link ``others`` to ``start``, as (parent, field,
    target) in walking order: icat.server's DagHandler.  Each entity must be
    reached by exactly one path, not counting the way back to the entity
    just left; for INCLUDEs, below a many-to-one hop only many-to-one
    relations are followed."""
    where = " in list of INCLUDES." if includes else ""
    wanted = {et.name for et in others} | {start.name}
    used = {start.name}
    edges = []

    def follow(pred: EntityType | None, here: EntityType, cascade: bool):
        for f, many in _relations(here):
            if many and not cascade:
                continue
            target = schema[f.type]
            if target.name not in wanted or (pred is not None and target.name == pred.name):
                continue
            if target.name in used:
                raise ParameterError(
                    "Can't have loop in graph of entities. '%s' was encountered twice "
                    "following %s -> %s -> %s%s" % (target.name, pred.name if pred else "",
                                                    here.name, target.name, where))
            used.add(target.name)
            edges.append((here, f, target))
            follow(here, target, many or not includes)

    follow(None, start, True)
    missing = [et.name for et in others if et.name not in used]
    if missing:
        raise ParameterError("Unable to reach %s%s" % (", ".join(dict.fromkeys(missing)), where))
    return edges


def _joins(schema: Schema, start: EntityType, others: list[EntityType]) -> str:
    """``A <-> B <-> C`` as JOINs, each entity's variable ``Entity$``."""
    return " ".join("JOIN %s.%s AS %s" % (_var(parent), f.name, _var(target))
                    for parent, f, target in _tree(schema, start, others, False))


def _includes(schema: Schema, start: EntityType, names: list[str]) -> str:
    """``INCLUDE Type, …`` as JPQL include steps (icat.server's OldInclude):
    the first from ``Start$``, then from the aliases ``Type_$``; nothing
    when no relation leads anywhere (``Dataset INCLUDE Dataset``)."""
    types = [_entity(schema, n) for n in names]
    steps = []
    for parent, f, target in _tree(schema, start, types, True):
        var = _var(start) if parent is start else parent.name + "_$"
        steps.append("%s.%s AS %s_$" % (var, f.name, target.name))
    return "INCLUDE " + ", ".join(steps) if steps else ""


def _not_found(level: str, cls: str):
    raise ParameterError("Field %s not found in class class %s" % (level, cls))


class _Where:
    """One ``[…]`` condition as JPQL, its bare names fields of ``etype``."""

    def __init__(self, schema: Schema, etype: EntityType):
        self.schema = schema
        self.etype = etype

    def condition(self, terms: list) -> str:
        return "(%s)" % " OR ".join(self.term(t) for t in terms)

    def term(self, factors: list) -> str:
        return " AND ".join(self.factor(f) for f in factors)

    def factor(self, f: Factor) -> str:
        neg = "NOT " if f.negated else ""
        if isinstance(f.item, Predicate):
            return neg + self.predicate(f.item)
        return "%s(%s)" % (neg, self.condition(f.item))

    def name(self, tok: Token) -> str | None:
        """``Entity$.path`` if ``tok`` is a name starting with a field, else None."""
        if tok.kind != "NAME":
            return None
        first = tok.value.split(".")[0]
        if first not in BASE_FIELDS and not self.etype.has(first):
            return None
        return "%s.%s" % (_var(self.etype), tok.value)

    @staticmethod
    def value(tok: Token) -> str:
        if tok.kind == "STRING":
            return literal(tok.value)
        return tok.value        # numbers, :user, {ts …}, TRUE/FALSE, names as written

    def enum_value(self, path: str, word: str) -> str:
        """A bare word compared with ``path``: ``<Java type of path>.<word>``,
        which names an enum value when the path ends at an enum field."""
        etype: EntityType | None = self.etype
        cls = ENTITY_CLASS % self.etype.name
        for level in path.split("."):
            if etype is not None and etype.has(level):
                f = etype.field(level)
            elif level in BASE_FIELDS:
                f = BASE_FIELDS[level]
            else:
                _not_found(level, cls)
            etype = self.schema[f.type] if f.kind == ONE else None
            cls = java_class(f)
        return "%s.%s" % (cls.replace(".core.entity", ""), word)

    def predicate(self, p: Predicate) -> str:
        op = p.op
        if op.kind == "COMPOP":
            right = p.right[0]
            name = self.name(p.left)
            name_tok, value_tok = p.left, right
            if name is None:
                name = self.name(right)
                name_tok, value_tok = right, p.left
            if name is None:
                raise ParameterError("Attribute comparisons require one attribute name "
                                     "and one value: %s %s %s"
                                     % (p.left.value, op.value, right.value))
            if value_tok.kind != "NAME" or value_tok.value.upper() in ("TRUE", "FALSE"):
                value = self.value(value_tok)
            else:
                value = self.enum_value(name_tok.value, value_tok.value)
            return "%s %s %s" % (name, op.value, value)
        if p.left.kind != "NAME":
            raise ParameterError("\"%s\" comparisons require a name on the LHS rather than %s"
                                 % (op.kind, _KIND_TEXT.get(p.left.kind, p.left.kind)))
        name = self.name(p.left)
        if name is None:
            _not_found(p.left.value.split(".")[0], ENTITY_CLASS % self.etype.name)
        if op.kind == "IN":
            return "%s IN (%s)" % (name, ", ".join(self.value(v) for v in p.right))
        low, high = p.right
        return "%s BETWEEN %s AND %s" % (name, self.value(low), self.value(high))


def search_text(text: str, schema: Schema) -> str:
    """The JPQL of a search query: ``text`` itself, or, if it does not start
    with SELECT, the concise query translated as icat.server translates it."""
    return text if is_jpql(text) else to_jpql(text, schema)


def to_jpql(text: str, schema: Schema) -> str:
    """The JPQL query icat.server runs for the concise query ``text``."""
    q = parse(text)
    first = _entity(schema, q.tables[0][0])
    include = None
    if isinstance(q.include, list):
        include = _includes(schema, first, q.include)
    elif q.include == "1":
        include = "INCLUDE 1"
    others = [_entity(schema, name) for name, _ in q.tables[1:]]
    joins = _joins(schema, first, others)

    path = q.result.partition(".")[2]
    item = _var(first) + ("." + path if path else "")
    if q.aggregate:
        item = "%s(%s)" % (q.aggregate, item)
    parts = ["SELECT", "DISTINCT " + item if q.distinct else item,
             "FROM", first.name, "AS", _var(first)]
    if joins:
        parts.append(joins)
    wheres = [_Where(schema, et).condition(cond)
              for et, (_, cond) in zip([first] + others, q.tables) if cond is not None]
    if wheres:
        parts.append("WHERE " + " AND ".join(wheres))
    if q.order:
        parts.append("ORDER BY " + ", ".join(
            "%s.%s%s" % (_var(first), p, " DESC" if desc else "") for p, desc in q.order))
    if include:
        parts.append(include)
    if q.offset is not None or q.count is not None:
        parts.append("LIMIT %d, %s" % (q.offset or 0, "*" if q.count is None else q.count))
    return " ".join(parts)


def get_query(text: str, schema: Schema) -> str:
    """A ``get`` query in the old form ``Entity INCLUDE 1|Type, …`` as the
    new form ``Entity AS Entity$ INCLUDE …`` (icat.server's OldGetQuery,
    used when the second word is INCLUDE); any other text unchanged."""
    words = text.split()
    if len(words) < 2 or words[1].upper() != "INCLUDE":
        return text
    inp = _Input(tokenize(text))
    etype = _entity(schema, inp.consume("NAME").value)
    include = _include(inp)
    extra = inp.peek()
    if extra is not None:
        raise ParameterError("Trailing tokens at end of query %s..." % extra.value)
    steps = "INCLUDE 1" if include == "1" else _includes(schema, etype, include)
    return ("%s AS %s %s" % (etype.name, _var(etype), steps)).strip()
