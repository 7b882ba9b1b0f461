"""Lexical helpers shared by the header parsers (RFC 3261 section 25.1).

Everything here works on already-unfolded header values (``str``) and
raises :class:`ParseError` -- never anything else -- on bad input, so the
callers can promise the same to theirs.
"""

from __future__ import annotations

import re

from .errors import ParseError

TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
# Unquoted generic-param values are ``token / host``; host adds ':' and
# brackets for IPv6 (``received=2001:db8::1``).
_GEN_VALUE_CHARS = TOKEN_CHARS | frozenset(":[]")
WS = " \t"

TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def is_token(text: str) -> bool:
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def parse_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string opening at ``text[start]``.

    Returns the unescaped contents and the index just past the closing quote.
    """
    if start >= len(text) or text[start] != '"':
        raise ParseError("expected a quoted string")
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise ParseError("unterminated quoted string")


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string, escaping what qdtext cannot hold."""
    if "\r" in text or "\n" in text:
        raise ValueError("CR/LF cannot appear in a quoted string")
    out = ['"']
    for c in text:
        if c in '"\\' or (ord(c) < 0x20 and c != "\t") or c == "\x7f":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def split_unquoted(text: str, sep: str, *, angles: bool = False) -> list[str]:
    """Split on ``sep`` outside quoted strings (and, optionally, ``<...>``)."""
    parts: list[str] = []
    buf_start = 0
    i = 0
    n = len(text)
    in_angle = False
    while i < n:
        c = text[i]
        if c == '"':
            _, i = parse_quoted(text, i)
            continue
        if angles and c == "<":
            if in_angle:
                raise ParseError("nested '<'")
            in_angle = True
        elif angles and c == ">":
            if not in_angle:
                raise ParseError("unbalanced '>'")
            in_angle = False
        elif c == sep and not in_angle:
            parts.append(text[buf_start:i])
            buf_start = i + 1
        i += 1
    if in_angle:
        raise ParseError("unterminated '<'")
    parts.append(text[buf_start:])
    return parts


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements.

    Commas inside quoted strings and angle brackets do not split.  An empty
    element next to real ones (``a,,b``) is malformed; a wholly empty value
    stays one empty element (e.g. an empty ``Supported:``).
    """
    if not value.strip(WS):
        return [""]
    parts = [p.strip(WS) for p in split_unquoted(value, ",", angles=True)]
    if any(not p for p in parts):
        raise ParseError("empty element in header list")
    return parts


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; LWS is allowed around ';' and '='.

    Names are case-insensitive and returned lower-cased; quoted values are
    returned unquoted.  Duplicate or empty parameters are malformed.
    """
    params: dict[str, str | None] = {}
    text = text.strip(WS)
    if not text:
        return params
    if text[0] != ";":
        raise ParseError(f"unexpected text after {what}")
    for piece in split_unquoted(text[1:], ";"):
        name, eq, raw = piece.partition("=")
        name = name.strip(WS)
        if not is_token(name):
            raise ParseError(f"bad parameter name in {what}")
        value: str | None = None
        if eq:
            raw = raw.strip(WS)
            if raw.startswith('"'):
                value, end = parse_quoted(raw, 0)
                if raw[end:].strip(WS):
                    raise ParseError(f"junk after quoted parameter in {what}")
            elif raw and all(c in _GEN_VALUE_CHARS for c in raw):
                value = raw
            else:
                raise ParseError(f"bad value for parameter {name!r} in {what}")
        key = name.lower()
        if key in params:
            raise ParseError(f"duplicate parameter {name!r} in {what}")
        params[key] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Render header parameters, quoting values that are not token/host."""
    out: list[str] = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value and all(c in _GEN_VALUE_CHARS for c in value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote(value)}")
    return "".join(out)
