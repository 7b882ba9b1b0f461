"""SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966).

Components are kept exactly as escaped on the wire: ``%00`` in a user part
stays ``%00`` so that nothing downstream truncates or re-interprets it
(RFC 4475 3.1.1.4).  Use :func:`urllib.parse.unquote` where the decoded
value is wanted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError

_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESC = r"%[0-9A-Fa-f]{2}"
# '#' is not legal unescaped, but phones send feature codes like *98# raw.
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/#]|{_ESC})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_PARAMCHAR_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
_HNVCHAR_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*")
_TEL_RE = re.compile(rf"(?:[0-9A-Za-z+\-.()*#]|{_ESC})+")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")


_USER_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,")


def escape_user(text: str) -> str:
    """``text`` as a URI user part that stands for itself: everything that could end the user
    part, the URI or the header (``@ ; ? > " %``, spaces, control characters) percent-escaped."""
    return "".join(c if c in _USER_SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def parse_port(text: str) -> int:
    if not (1 <= len(text) <= 5 and text.isascii() and text.isdigit()):
        raise ParseError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ParseError(f"port out of range: {port}")
    return port


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]``; IPv6 hosts keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise ParseError(f"bad IPv6 reference {host!r}")
        if not rest:
            return host, None
        if rest[0] != ":":
            raise ParseError("junk after IPv6 reference")
        return host, parse_port(rest[1:])
    host, colon, port = text.partition(":")
    if not _HOSTNAME_RE.fullmatch(host):
        raise ParseError(f"bad host {host!r}")
    return host, parse_port(port) if colon else None


def is_absolute_uri(text: str) -> bool:
    """``scheme ":" something`` with nothing that would break a header."""
    scheme, colon, rest = text.partition(":")
    return (
        bool(colon and rest)
        and _SCHEME_RE.fullmatch(scheme) is not None
        and not any(c.isspace() or c in '<>"' or ord(c) < 0x20 or c == "\x7f" for c in rest)
    )


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        name, eq, value = piece.partition("=")
        if not _PARAMCHAR_RE.fullmatch(name) or (eq and not _PARAMCHAR_RE.fullmatch(value)):
            raise ParseError(f"bad URI parameter {piece!r}")
        key = name.lower()
        if key in params:
            raise ParseError(f"duplicate URI parameter {name!r}")
        params[key] = value if eq else None
    return params


def _parse_uri_headers(text: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if not eq or not name or not _HNVCHAR_RE.fullmatch(name) or not _HNVCHAR_RE.fullmatch(value):
            raise ParseError(f"bad URI header {piece!r}")
        headers.append((name, value))
    return headers


@dataclass
class SipUri:
    """A ``sip:``/``sips:`` URI, or a ``tel:`` URI (number in ``user``, no host)."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or not _SCHEME_RE.fullmatch(scheme):
            raise ParseError(f"not a URI: {text[:80]!r}")
        if scheme == "tel":
            number, semi, params = rest.partition(";")
            if not _TEL_RE.fullmatch(number):
                raise ParseError(f"bad telephone number {number!r}")
            return cls("tel", number, None, "", None, _parse_uri_params(params) if semi else {})
        if scheme not in ("sip", "sips"):
            raise ParseError(f"unsupported URI scheme {scheme!r}", 416)

        user = password = None
        at = rest.find("@")
        if at >= 0:
            user, colon, pw = rest[:at].partition(":")
            if not _USER_RE.fullmatch(user):
                raise ParseError(f"bad user part {user!r}")
            if colon:
                if not _PASSWORD_RE.fullmatch(pw):
                    raise ParseError("bad password part")
                password = pw
            rest = rest[at + 1 :]
        rest, qmark, headers = rest.partition("?")
        hostport, semi, params = rest.partition(";")
        host, port = split_hostport(hostport)
        return cls(
            scheme,
            user,
            password,
            host,
            port,
            _parse_uri_params(params) if semi else {},
            _parse_uri_headers(headers) if qmark else [],
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = [f"tel:{self.user or ''}"]
        else:
            out = [f"{self.scheme}:"]
            if self.user is not None:
                out.append(self.user)
                if self.password is not None:
                    out.append(f":{self.password}")
                out.append("@")
            out.append(self.host)
            if self.port is not None:
                out.append(f":{self.port}")
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None
