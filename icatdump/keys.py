"""Unique keys: the names by which a dump file refers to objects.

The grammar and the quoting are python-icat's (ICAT-FACTS §4), byte for byte:

    key             ::= BeanName '_' attrvaluestring | BeanName '_' DIGITS8
    attrvaluestring ::= attrvalue ( '_' attrvalue )*
    attrvalue       ::= attr '-' value
    value           ::= simplevalue | '(' attrvaluestring ')'

A quoted value keeps ASCII letters and digits and writes every other UTF-8
byte as ``=HH``, so it never contains ``_ - ( )`` and keys stay unambiguous.
"""

from __future__ import annotations

import re

from .errors import KeyError_

_SAFE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_QUOTE_TABLE = [chr(b) if b in _SAFE else "=%02X" % b for b in range(256)]
_HEX = "0123456789ABCDEF"
_GENERIC = re.compile(r"^[A-Za-z]+_\d{8}$")


def quote(value) -> str:
    """Quote a value for use in a key (python-icat's ``simpleqp_quote``)."""
    s = value if isinstance(value, str) else str(value)
    if s.isascii() and s.isalnum():
        return s
    return "".join([_QUOTE_TABLE[b] for b in s.encode("utf-8")])


def unquote(text: str) -> str:
    """Reverse :func:`quote`; upper-case hex digits only, as python-icat."""
    if "=" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "=":
            hi, lo = text[i + 1:i + 2], text[i + 2:i + 3]
            if not hi or not lo or hi not in _HEX or lo not in _HEX:
                raise KeyError_("invalid escape %r in key value %r" % (text[i:i + 3], text))
            out.append(_HEX.index(hi) * 16 + _HEX.index(lo))
            i += 3
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyError_("key value %r is not UTF-8" % text) from None


def is_generic(key: str) -> bool:
    """``DataCollection_00000001``-style keys name objects by file position."""
    return bool(_GENERIC.match(key))


def split_key(key: str) -> tuple[str, str]:
    """``Dataset_investigation-(...)_name-x`` → ``("Dataset", "investigation-(...)_name-x")``."""
    us = key.find("_")
    if us <= 0:
        raise KeyError_("malformed key %r: no entity name" % key)
    return key[:us], key[us + 1:]


def parse_attr_values(text: str) -> dict[str, str]:
    """Parse an attrvaluestring into ``{attr: raw value}``.

    A parenthesised value is returned without its parentheses, still in key
    form, so that it can be parsed again as the related object's key.
    """
    result = {}
    i, n = 0, len(text)
    while i < n:
        dash = text.find("-", i)
        if dash < 0:
            raise KeyError_("malformed key part %r: expected attr-value" % text[i:])
        attr = text[i:dash]
        if not attr.isalpha():
            raise KeyError_("malformed key part %r: bad attribute name" % text[i:])
        i = dash + 1
        if i < n and text[i] == "(":
            depth, j = 0, i
            while j < n:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth:
                raise KeyError_("malformed key part %r: unbalanced parentheses" % text[i:])
            result[attr] = text[i + 1:j]
            i = j + 1
        else:
            j = text.find("_", i)
            j = n if j < 0 else j
            result[attr] = text[i:j]
            i = j
        if i < n:
            if text[i] != "_":
                raise KeyError_("malformed key part %r: expected '_'" % text[i:])
            i += 1
            if i == n:
                raise KeyError_("malformed key: trailing '_'")
    return result


_STRIP_NAME = re.compile(r"^[A-Z-a-z]+_")


def strip_name(key: str) -> str:
    """Drop the leading ``BeanName_`` of a key to nest it in another key."""
    return _STRIP_NAME.sub("", key, count=1)
