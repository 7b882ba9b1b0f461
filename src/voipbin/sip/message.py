"""SIP messages and the structured header values the stack needs.

``Request``/``Response`` hold headers as unfolded strings (see
:class:`Headers`); the typed views (:class:`Address`, :class:`Via`,
:class:`CSeq`, :class:`SipUri`) parse on demand and raise
:class:`ParseError` on malformed values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._grammar import TOKEN_RE, WS, format_params, is_token, parse_params, parse_quoted, quote
from .errors import ParseError
from .headers import Headers, canonical_name
from .uri import SipUri, is_absolute_uri, split_hostport

__all__ = [
    "REASON_PHRASES",
    "Address",
    "CSeq",
    "Headers",
    "ParseError",
    "Request",
    "Response",
    "SipUri",
    "Via",
    "canonical_name",
    "make_response",
]

SIP_VERSION = "SIP/2.0"
MAX_CSEQ = 2**32 - 1
BRANCH_MAGIC = "z9hG4bK"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def _check_uri(uri: str) -> None:
    """Reject URIs that are not absolute; fully validate the ones we speak."""
    if not is_absolute_uri(uri):
        raise ParseError(f"bad URI {uri[:80]!r}")
    if uri.partition(":")[0].lower() in ("sip", "sips", "tel"):
        SipUri.parse(uri)


@dataclass
class Address:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route...).

    ``uri`` is kept as text because any absolute URI is legal here; use
    :attr:`sip_uri` for the parsed SIP form.  Parameter names are lower-cased.
    """

    uri: str
    display_name: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Address:
        s = text.strip(WS)
        display = ""
        if s.startswith('"'):
            display, end = parse_quoted(s, 0)
            s = s[end:].lstrip(WS)
            if not s.startswith("<"):
                raise ParseError("quoted display name without <URI>")
        # A display name cannot hold ';', so a '<' after one is inside a
        # parameter value of an addr-spec, not the start of a name-addr.
        lt = s.find("<")
        semi = s.find(";")
        if lt >= 0 and (semi < 0 or lt < semi):
            if lt > 0:
                # Unquoted display-name: *(token LWS).  No LWS before '<' is
                # tolerated (RFC 4475 3.1.1.6).
                words = s[:lt].split()
                if not all(is_token(w) for w in words):
                    raise ParseError("display name needs quoting")
                display = " ".join(words)
            gt = s.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated <URI>")
            uri, rest = s[lt + 1 : gt], s[gt + 1 :]
        else:
            # addr-spec form: parameters after the URI belong to the header,
            # so the URI cannot carry ';', '?' or ',' of its own (RFC 3261 20).
            uri, separator, rest = s.partition(";")
            uri = uri.rstrip(WS)
            rest = separator + rest
            if "?" in uri or "," in uri:
                raise ParseError("URI with headers must be enclosed in <>")
        _check_uri(uri)
        return cls(uri, display, parse_params(rest, "address"))

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)


_VIA_RE = re.compile(
    rf"[{WS}]*({TOKEN_RE.pattern})[{WS}]*/[{WS}]*({TOKEN_RE.pattern})[{WS}]*/"
    rf"[{WS}]*({TOKEN_RE.pattern})[{WS}]+(.+)",
    re.DOTALL,
)


@dataclass
class Via:
    """One Via value: ``SIP/2.0/<transport> host[:port];params``.

    IPv6 hosts keep their brackets.  ``rport`` is ``True`` for the bare
    flag a client sends, the port number once a server has filled it in,
    and ``None`` when absent (RFC 3581).
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        head, semi, params = text.partition(";")
        m = _VIA_RE.fullmatch(head)
        if m is None:
            raise ParseError("malformed Via")
        name, version, transport, sent_by = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise ParseError(f"unsupported Via protocol {name}/{version}", 505)
        # COLON is SWS ":" SWS, so "host : 5060" is legal.
        sent_by = re.sub(rf"[{WS}]*:[{WS}]*", ":", sent_by.strip(WS))
        if any(c in WS for c in sent_by):
            raise ParseError("malformed Via sent-by")
        host, port = split_hostport(sent_by)
        return cls(transport.upper(), host, port, parse_params(semi + params, "Via"))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def rport(self) -> int | bool | None:
        if "rport" not in self.params:
            return None
        value = self.params["rport"]
        if value is None:
            return True
        if not (value.isascii() and value.isdigit()) or len(value) > 5:
            return None
        return int(value)


_CSEQ_RE = re.compile(rf"[{WS}]*([0-9]+)[{WS}]+({TOKEN_RE.pattern})[{WS}]*")


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        m = _CSEQ_RE.fullmatch(text)
        if m is None:
            raise ParseError("malformed CSeq")
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > 10 or int(digits) > MAX_CSEQ:
            raise ParseError("CSeq number out of range")
        return cls(int(digits), m.group(2))

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def _check_line(text: str, what: str) -> None:
    if "\r" in text or "\n" in text:
        raise ValueError(f"CR/LF in {what}")


class _MessageMixin:
    """Serialization and typed header accessors shared by requests and responses."""

    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def encode(self) -> bytes:
        """Wire form; Content-Length always matches the body."""
        lines = [self._start_line()]
        wrote_length = False
        for name, value in self.headers:
            if name == "Content-Length":
                if wrote_length:
                    continue
                value = str(len(self.body))
                wrote_length = True
            _check_line(name, "header name")
            _check_line(value, f"header {name}")
            if not name or ":" in name or any(c in WS for c in name):
                raise ValueError(f"bad header name {name!r}")
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + bytes(self.body)

    def __bytes__(self) -> bytes:
        return self.encode()

    def _single(self, name: str) -> str:
        values = self.headers.get_all(name)
        if not values:
            raise ParseError(f"missing {name}")
        if len(values) > 1:
            raise ParseError(f"more than one {name}")
        return values[0]

    @property
    def call_id(self) -> str:
        return self._single("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self._single("CSeq"))

    @property
    def from_addr(self) -> Address:
        return Address.parse(self._single("From"))

    @property
    def to_addr(self) -> Address:
        return Address.parse(self._single("To"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def contacts(self) -> list[Address]:
        """Contact addresses; the ``Contact: *`` of a de-REGISTER yields none."""
        return [Address.parse(v) for v in self.headers.get_all("Contact") if v.strip(WS) != "*"]

    @property
    def contact_wildcard(self) -> bool:
        return any(v.strip(WS) == "*" for v in self.headers.get_all("Contact"))

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        value = value.strip(WS)
        digits = value.lstrip("0") or "0"
        if not (value.isascii() and value.isdigit()) or len(digits) > 3:
            raise ParseError("bad Max-Forwards")
        return int(digits)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")


@dataclass(eq=True)
class Request(_MessageMixin):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def _start_line(self) -> str:
        for part, what in ((self.method, "method"), (self.uri, "Request-URI")):
            if not part or any(c.isspace() for c in part):
                raise ValueError(f"bad {what} {part!r}")
        return f"{self.method} {self.uri} {self.version}"

    @property
    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)


@dataclass(eq=True)
class Response(_MessageMixin):
    status_code: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def _start_line(self) -> str:
        if not 100 <= self.status_code <= 699:
            raise ValueError(f"bad status code {self.status_code}")
        _check_line(self.reason, "reason phrase")
        return f"{self.version} {self.status_code} {self.reason}"


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
) -> Response:
    """Build a response that matches ``request`` (RFC 3261 8.2.6.2).

    Copies Via (all, in order), From, To, Call-ID and CSeq.  ``to_tag`` is
    added to To unless it already carries a tag (a mid-dialog request).
    Dialog-forming headers (Record-Route, Contact) are the caller's job.
    """
    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            if name == "To" and to_tag is not None and Address.parse(value).tag is None:
                if not is_token(to_tag):
                    raise ValueError(f"bad tag {to_tag!r}")
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
    if reason is None:
        reason = REASON_PHRASES.get(status_code, "")
    return Response(status_code, reason, headers)
