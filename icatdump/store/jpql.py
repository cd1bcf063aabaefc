"""Parse ICAT's JPQL subset into a small syntax tree.

The grammar follows ICAT's own parser (ICAT-FACTS §3.1)::

    query   ::= SELECT [DISTINCT] item (',' item)* FROM Entity var join*
                [WHERE expr] [GROUP BY expr (',' expr)* [HAVING expr]]
                [ORDER BY expr [ASC|DESC] (',' …)*]
                ( [INCLUDE include] [LIMIT limit] | [LIMIT limit] [INCLUDE include] )
    join    ::= [LEFT [OUTER] | INNER] JOIN path [AS] var  |  ',' path [AS] var
    include ::= '1' | path [[AS] var] (',' path [[AS] var])*
    limit   ::= INTEGER ',' (INTEGER | '*')

As in ICAT's tokenizer a dotted path (``o.facility.name``) is one NAME token,
only the space character separates tokens (TAB/CR/LF are errors), keywords
are case-insensitive and strings double ``''`` for a quote.  Expressions use
one precedence ladder, OR < AND < NOT < comparison < additive <
multiplicative < unary, so that parentheses may group conditions and values
alike.  Nothing here knows the schema; ``sqlgen.py`` resolves names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..client import ParameterError

KEYWORDS = frozenset("""
ABS ALL AND ANY AS ASC AVG BETWEEN BOTH BY CONCAT COUNT CURRENT_DATE CURRENT_TIME
CURRENT_TIMESTAMP DESC DISTINCT DIV EMPTY ESCAPE FALSE FETCH FROM GROUP HAVING IN INCLUDE
INNER IS JOIN LEADING LEFT LENGTH LIMIT LOCATE LOWER MAX MEMBER MIN MINUS MOD MULT NOT NULL
OBJECT OR ORDER OUTER PLUS REAL SELECT SIZE SQRT SUBSTRING SUM TIMESTAMP TRAILING TRIM TRUE
UPPER WHERE OF EXISTS
""".split())

AGGREGATES = frozenset(("COUNT", "MIN", "MAX", "AVG", "SUM"))
FUNCTIONS = frozenset(("UPPER", "LOWER", "LENGTH", "CONCAT", "SUBSTRING", "TRIM", "ABS",
                       "SQRT", "MOD", "LOCATE", "SIZE"))
COMPARISONS = frozenset(("=", "<>", "!=", "<", "<=", ">", ">="))


# -- syntax tree ---------------------------------------------------------------

@dataclass
class Path:
    """``var.field.field``; ``parts[0]`` is a variable (or an enum literal)."""
    parts: tuple


@dataclass
class Literal:
    value: object
    kind: str            # string, int, real, bool, ts, enum, null
    pos: int = field(default=-1, compare=False, repr=False)   # of its token in the text


@dataclass
class Param:
    name: str


@dataclass
class Binary:
    op: str              # AND OR = <> < ... + - * /
    left: object
    right: object


@dataclass
class Unary:
    op: str              # NOT or -
    operand: object


@dataclass
class Like:
    operand: object
    pattern: object
    escape: object = None
    negated: bool = False


@dataclass
class In:
    operand: object
    items: list          # expressions, or [Query] for a sub-select
    negated: bool = False


@dataclass
class IsNull:
    operand: object
    negated: bool = False


@dataclass
class IsEmpty:
    operand: object
    negated: bool = False


@dataclass
class Between:
    operand: object
    low: object
    high: object
    negated: bool = False


@dataclass
class Func:
    name: str            # upper case
    args: list
    distinct: bool = False


@dataclass
class Exists:
    query: "Query"
    negated: bool = False


@dataclass
class Join:
    kind: str            # INNER or LEFT
    path: Path
    alias: str


@dataclass
class IncludeStep:
    path: Path
    alias: str | None


@dataclass
class Query:
    items: list
    entity: str
    var: str
    distinct: bool = False
    joins: list = field(default_factory=list)
    where: object = None
    group_by: list = field(default_factory=list)
    having: object = None
    order: list = field(default_factory=list)        # (expr, descending)
    include: list | None = None                      # IncludeStep list, or "1"
    limit: tuple | None = None                       # (offset, count or None)


# -- tokenizer -----------------------------------------------------------------

@dataclass
class Token:
    kind: str            # KW NAME STR INT REAL PARAM TS OP PUNCT END
    value: str
    pos: int


_TS = re.compile(r"\{ts (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\}")
_NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?")
_NAME = re.compile(r"[A-Za-z$_][A-Za-z0-9$_.]*")


def read_quoted(text: str, start: int) -> tuple[str, int] | None:
    """The string literal whose opening quote is at ``text[start]``: its
    value (a doubled quote stands for one) and the index after its closing
    quote; None if it never closes.  ICAT's JPQL and its old concise syntax
    quote alike."""
    j, parts = start + 1, []
    while True:
        k = text.find("'", j)
        if k < 0:
            return None
        parts.append(text[j:k])
        if not text.startswith("''", k):
            return "".join(parts), k + 1
        parts.append("'")
        j = k + 2


def tokenize(text: str) -> list[Token]:
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == " ":           # ICAT's lexer skips spaces only, not tabs or newlines
            i += 1
            continue
        if ch == "'":
            quoted = read_quoted(text, i)
            if quoted is None:
                raise ParameterError("Unterminated string starting at position %d in %r"
                                     % (i, text))
            tokens.append(Token("STR", quoted[0], i))
            i = quoted[1]
            continue
        if ch == "{":
            m = _TS.match(text, i)
            if not m:
                raise ParameterError("Timestamp must be written {ts yyyy-mm-dd hh:mm:ss} "
                                     "at position %d" % i)
            tokens.append(Token("TS", m.group(1), i))
            i = m.end()
            continue
        if ch in "0123456789" or (ch == "-" and text[i + 1:i + 2].isdigit()
                                  and text[i + 1].isascii()):
            m = _NUMBER.match(text, i)
            assert m is not None        # a digit, or '-' and a digit, starts a number
            s = m.group(0)
            tokens.append(Token("REAL" if ("." in s or "e" in s or "E" in s) else "INT", s, i))
            i = m.end()
            continue
        if (ch.isascii() and ch.isalpha()) or ch in "$_":
            m = _NAME.match(text, i)
            assert m is not None        # a letter, '$' or '_' starts a name
            word = m.group(0)
            up = word.upper()
            if up in KEYWORDS:
                tokens.append(Token("KW", up, i))
            elif up == "LIKE":
                tokens.append(Token("KW", "LIKE", i))
            else:
                tokens.append(Token("NAME", word, i))
            i = m.end()
            continue
        if ch == ":":
            m = _NAME.match(text, i + 1)
            if not m:
                raise ParameterError("Bad parameter at position %d in %r" % (i, text))
            tokens.append(Token("PARAM", m.group(0), i))
            i = m.end()
            continue
        two = text[i:i + 2]
        if two in ("<>", "!=", "<=", ">="):
            tokens.append(Token("OP", two, i))
            i += 2
            continue
        if ch in "=<>":
            tokens.append(Token("OP", ch, i))
            i += 1
            continue
        if ch in "(),+-*/":
            tokens.append(Token("PUNCT", ch, i))
            i += 1
            continue
        raise ParameterError("Unexpected character %r at position %d in %r" % (ch, i, text))
    tokens.append(Token("END", "", n))
    return tokens


# -- parser --------------------------------------------------------------------

class Parser:
    """Recursive descent over the token list; one method per production."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # token helpers
    def peek(self, offset=0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, kind, value=None, offset=0) -> bool:
        tok = self.peek(offset)
        return tok.kind == kind and (value is None or tok.value == value)

    def accept(self, kind, value=None):
        if self.at(kind, value):
            return self.next()
        return None

    def expect(self, kind, value=None) -> Token:
        if not self.at(kind, value):
            self.error("expected %s" % (value or kind))
        return self.next()

    def error(self, what):
        tok = self.peek()
        found = "end of query" if tok.kind == "END" else repr(tok.value)
        raise ParameterError("Invalid query: %s but found %s at position %d in %r"
                             % (what, found, tok.pos, self.text))

    # query
    def parse(self) -> Query:
        q = self.query()
        if not self.at("END"):
            self.error("expected end of query")
        return q

    def query(self, top=True) -> Query:
        self.expect("KW", "SELECT")
        distinct = bool(self.accept("KW", "DISTINCT"))
        items = [self.expr()]
        while self.accept("PUNCT", ","):
            items.append(self.expr())
        self.expect("KW", "FROM")
        entity = self.expect("NAME").value
        if "." in entity:
            self.error("expected an entity name")
        self.accept("KW", "AS")
        var = self.expect("NAME").value
        q = Query(items=items, entity=entity, var=var, distinct=distinct)
        q.joins = self.joins()
        if self.accept("KW", "WHERE"):
            q.where = self.expr()
        if self.accept("KW", "GROUP"):
            self.expect("KW", "BY")
            q.group_by = [self.expr()]
            while self.accept("PUNCT", ","):
                q.group_by.append(self.expr())
            if self.accept("KW", "HAVING"):
                q.having = self.expr()
        if self.accept("KW", "ORDER"):
            self.expect("KW", "BY")
            q.order = [self.order_item()]
            while self.accept("PUNCT", ","):
                q.order.append(self.order_item())
        if top:
            for _ in range(2):
                if q.include is None and self.accept("KW", "INCLUDE"):
                    q.include = self.include()
                elif q.limit is None and self.accept("KW", "LIMIT"):
                    q.limit = self.limit()
        return q

    def joins(self) -> list[Join]:
        joins: list[Join] = []
        while True:
            if self.at("KW", "JOIN") or self.at("KW", "INNER") or self.at("KW", "LEFT"):
                kind = "INNER"
                if self.accept("KW", "LEFT"):
                    kind = "LEFT"
                    self.accept("KW", "OUTER")
                else:
                    self.accept("KW", "INNER")
                self.expect("KW", "JOIN")
                if self.at("KW", "FETCH"):
                    self.error("FETCH is not supported")
            elif self.at("PUNCT", ",") and self.at("NAME", offset=1):
                self.next()
                kind = "INNER"
            else:
                return joins
            path = self.path_token()
            if len(path.parts) < 2:
                self.error("expected a join path var.field")
            self.accept("KW", "AS")
            alias = self.expect("NAME").value
            joins.append(Join(kind, path, alias))

    def path_token(self) -> Path:
        return Path(tuple(self.expect("NAME").value.split(".")))

    def order_item(self):
        e = self.expr()
        desc = False
        if self.accept("KW", "DESC"):
            desc = True
        else:
            self.accept("KW", "ASC")
        return (e, desc)

    def include(self):
        if self.at("INT", "1"):
            self.next()
            if not (self.at("END") or self.at("KW", "LIMIT")):
                self.error("nothing may follow INCLUDE 1")
            return "1"
        steps = [self.include_step()]
        while self.accept("PUNCT", ","):
            steps.append(self.include_step())
        return steps

    def include_step(self) -> IncludeStep:
        path = self.path_token()
        if len(path.parts) < 2:
            self.error("expected an include path var.field")
        alias = None
        if self.accept("KW", "AS") or self.at("NAME"):
            alias = self.expect("NAME").value
        return IncludeStep(path, alias)

    def limit(self):
        offset = int(self.expect("INT").value)
        self.expect("PUNCT", ",")
        if self.accept("PUNCT", "*"):
            count = None
        else:
            count = int(self.expect("INT").value)
        if offset < 0 or (count is not None and count < 0):
            self.error("LIMIT needs non-negative numbers")
        if max(offset, count or 0) > 2 ** 31 - 1:      # LimitClause.java: Java ints
            self.error("LIMIT numbers must be below 2^31")
        return (offset, count)

    # expressions
    def expr(self):
        left = self.and_expr()
        while self.accept("KW", "OR"):
            left = Binary("OR", left, self.and_expr())
        return left

    def and_expr(self):
        left = self.not_expr()
        while self.accept("KW", "AND"):
            left = Binary("AND", left, self.not_expr())
        return left

    def not_expr(self):
        if self.accept("KW", "NOT"):
            return Unary("NOT", self.not_expr())
        return self.predicate()

    def predicate(self):
        if self.accept("KW", "EXISTS"):
            self.expect("PUNCT", "(")
            sub = self.query(top=False)
            self.expect("PUNCT", ")")
            return Exists(sub)
        left = self.additive()
        tok = self.peek()
        if tok.kind == "OP":
            self.next()
            return Binary(tok.value, left, self.additive())
        negated = bool(self.accept("KW", "NOT"))
        if self.accept("KW", "LIKE"):
            pattern = self.additive()
            escape = self.additive() if self.accept("KW", "ESCAPE") else None
            return Like(left, pattern, escape, negated)
        if self.accept("KW", "IN"):
            self.expect("PUNCT", "(")
            if self.at("KW", "SELECT"):
                items = [self.query(top=False)]
            else:
                items = [self.additive()]
                while self.accept("PUNCT", ","):
                    items.append(self.additive())
            self.expect("PUNCT", ")")
            return In(left, items, negated)
        if self.accept("KW", "BETWEEN"):
            low = self.additive()
            self.expect("KW", "AND")
            return Between(left, low, self.additive(), negated)
        if negated:
            self.error("expected LIKE, IN or BETWEEN after NOT")
        if self.accept("KW", "IS"):
            neg = bool(self.accept("KW", "NOT"))
            if self.accept("KW", "NULL"):
                return IsNull(left, neg)
            if self.accept("KW", "EMPTY"):
                return IsEmpty(left, neg)
            self.error("expected NULL or EMPTY")
        return left

    def additive(self):
        left = self.multiplicative()
        while True:
            if self.at("PUNCT", "+") or self.at("PUNCT", "-"):
                op = self.next().value
                left = Binary(op, left, self.multiplicative())
            elif self.at("INT") or self.at("REAL"):
                # "a -1": the tokenizer glued the minus to the number.
                tok = self.peek()
                if not str(tok.value).startswith("-"):
                    return left
                self.next()
                kind = "int" if tok.kind == "INT" else "real"
                num = int(tok.value[1:]) if kind == "int" else float(tok.value[1:])
                left = Binary("-", left, Literal(num, kind, tok.pos))
            else:
                return left

    def multiplicative(self):
        left = self.unary()
        while self.at("PUNCT", "*") or self.at("PUNCT", "/"):
            op = self.next().value
            left = Binary(op, left, self.unary())
        return left

    def unary(self):
        if self.accept("PUNCT", "-"):
            return Unary("-", self.unary())
        if self.accept("PUNCT", "+"):
            return self.unary()
        return self.primary()

    def primary(self):
        tok = self.peek()
        if tok.kind == "PUNCT" and tok.value == "(":
            self.next()
            if self.at("KW", "SELECT"):
                e = self.query(top=False)
            else:
                e = self.expr()
            self.expect("PUNCT", ")")
            return e
        if tok.kind == "STR":
            self.next()
            return Literal(tok.value, "string", tok.pos)
        if tok.kind == "INT":
            self.next()
            return Literal(int(tok.value), "int", tok.pos)
        if tok.kind == "REAL":
            self.next()
            return Literal(float(tok.value), "real", tok.pos)
        if tok.kind == "TS":
            self.next()
            return Literal(tok.value, "ts", tok.pos)
        if tok.kind == "PARAM":
            self.next()
            return Param(tok.value)
        if tok.kind == "NAME":
            self.next()
            return Path(tuple(tok.value.split(".")))
        if tok.kind == "KW":
            if tok.value in ("TRUE", "FALSE"):
                self.next()
                return Literal(tok.value == "TRUE", "bool")
            if tok.value == "NULL":
                self.next()
                return Literal(None, "null")
            if tok.value in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME"):
                self.next()
                return Func(tok.value, [])
            if tok.value in AGGREGATES or tok.value in FUNCTIONS:
                self.next()
                return self.call(tok.value)
        self.error("expected a value or a path")

    def call(self, name):
        self.expect("PUNCT", "(")
        distinct = False
        if name in AGGREGATES and self.accept("KW", "DISTINCT"):
            distinct = True
        args = []
        if not self.at("PUNCT", ")"):
            args.append(self.expr())
            while self.accept("PUNCT", ","):
                args.append(self.expr())
        self.expect("PUNCT", ")")
        return Func(name, args, distinct)


def is_jpql(text: str) -> bool:
    """Whether ICAT reads ``text`` as JPQL: it starts with SELECT; anything
    else is the old concise syntax (``concise.py``)."""
    return text.strip().upper().startswith("SELECT")


def parse(text: str) -> Query:
    """Parse one JPQL query; ParameterError (BAD_PARAMETER) if it is not one."""
    text = str(text)
    if not is_jpql(text):
        raise ParameterError("Only JPQL queries starting with SELECT are parsed here "
                             "(a concise query goes through concise.search_text first): %r" % text)
    return Parser(text.strip(" ")).parse()
