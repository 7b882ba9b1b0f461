"""Turning bytes into SIP messages: datagrams, byte streams, and sanity checks.

:func:`parse_message` handles one UDP datagram; :class:`StreamFramer`
cuts a TCP/TLS byte stream into messages.  Both raise (or yield)
:class:`ParseError` for anything malformed and nothing else, whatever
bytes they are given.
"""

from __future__ import annotations

import re

from ._grammar import WS, is_token, split_list
from .errors import ParseError
from .headers import LIST_HEADERS, Headers, canonical_name
from .message import Address, CSeq, Request, Response, SipUri, Via, _check_uri

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "ParseError",
    "StreamFramer",
    "is_keepalive",
    "parse_message",
    "validate_request",
]

MAX_HEADER_BYTES = 16 * 1024  # real requests stay far below; a scanner's padding does not
MAX_BODY_BYTES = 1024 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)


def is_keepalive(data: bytes) -> bool:
    """True for a CRLF keep-alive datagram (RFC 5626 3.5.1), to be ignored."""
    return not data.strip(b"\r\n")


def _split_head(head: bytes) -> tuple[str, Headers]:
    """Split a header block into its start line and unfolded header fields.

    Errors here mean the header block cannot be trusted at all, so a stream
    has lost its framing.
    """
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    fields: list[list[str]] = []
    for i, line in enumerate(lines):
        line = line.removesuffix("\r")
        if "\r" in line:
            raise ParseError("bare CR in header")
        if i == 0:
            continue
        if line[:1] in (" ", "\t"):
            # LWS continuation: the fold counts as a single SP.
            if not fields:
                raise ParseError("continuation line before first header")
            fields[-1][1] = fields[-1][1].rstrip(WS) + " " + line.lstrip(WS)
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(WS)
        if not colon or not is_token(name):
            raise ParseError(f"malformed header line {line[:40]!r}")
        fields.append([name, value])

    start = lines[0].removesuffix("\r")
    headers = Headers()
    for name, value in fields:
        value = value.strip(WS)
        if canonical_name(name).lower() in LIST_HEADERS:
            for item in split_list(value):
                headers.add(name, item)
        else:
            headers.add(name, value)
    return start, headers


def _content_length(headers: Headers) -> int | None:
    values = {v.strip(WS) for v in headers.get_all("Content-Length")}
    if not values:
        return None
    if len(values) > 1:
        raise ParseError("conflicting Content-Length values")
    (value,) = values
    if not (value.isascii() and value.isdigit()):
        raise ParseError("bad Content-Length")
    digits = value.lstrip("0") or "0"
    if len(digits) > 10:
        raise ParseError("Content-Length too large", 413)
    return int(digits)


def _check_version(version: str) -> str:
    if version.upper() == "SIP/2.0":
        return "SIP/2.0"
    if _VERSION_RE.fullmatch(version):
        raise ParseError(f"unsupported version {version}", 505)
    raise ParseError("malformed SIP version")


def _validate_headers(headers: Headers) -> None:
    """Parse the headers the transaction and dialog layers depend on."""
    for name in ("From", "To", "Call-ID", "CSeq"):
        if len(headers.get_all(name)) > 1:
            raise ParseError(f"more than one {name}")
    for value in headers.get_all("Via"):
        Via.parse(value)
    for name in ("From", "To", "Route", "Record-Route"):
        for value in headers.get_all(name):
            Address.parse(value)
    contacts = headers.get_all("Contact")
    for value in contacts:
        if value == "*":
            if len(contacts) > 1:
                raise ParseError("Contact: * mixed with other contacts")
        else:
            Address.parse(value)
    cseq = headers.get("CSeq")
    if cseq is not None:
        CSeq.parse(cseq)
    call_id = headers.get("Call-ID")
    if call_id is not None and (not call_id or any(c.isspace() for c in call_id)):
        raise ParseError("malformed Call-ID")


def _build(start: str, headers: Headers, body: bytes) -> Request | Response:
    """Check the start line and key headers, and assemble the message."""
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        version = _check_version(parts[0])
        if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isascii() or not parts[1].isdigit():
            raise ParseError("malformed status code")
        code = int(parts[1])
        if not 100 <= code <= 699:
            raise ParseError("status code out of range")
        _validate_headers(headers)
        return Response(code, parts[2] if len(parts) > 2 else "", headers, body, version)

    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError("malformed request line")
    method, uri, version = parts
    if not is_token(method):
        raise ParseError("malformed method")
    version = _check_version(version)
    _check_uri(uri)
    _validate_headers(headers)
    return Request(method, uri, headers, body, version)


def _parse_datagram(data: bytes) -> Request | Response:
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("empty message")
    m = _HEAD_END.search(data, 0, MAX_HEADER_BYTES + 4)
    if m is None:
        if len(data) > MAX_HEADER_BYTES:
            raise ParseError("header too large", 513)
        raise ParseError("no blank line after headers")
    if m.start() > MAX_HEADER_BYTES:
        raise ParseError("header too large", 513)
    start, headers = _split_head(data[: m.start()])
    rest = data[m.end() :]
    length = _content_length(headers)
    if length is None:
        # Over UDP the datagram delimits the message (RFC 3261 18.3).
        body = rest
    elif length > len(rest):
        raise ParseError("Content-Length larger than the message")
    else:
        # Octets past Content-Length are noise and are dropped (RFC 4475 3.1.1.8).
        body = rest[:length]
    return _build(start, headers, body)


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram's worth of SIP.  Raises only :class:`ParseError`."""
    try:
        return _parse_datagram(data)
    except ParseError:
        raise
    except Exception as exc:  # pragma: no cover - defence in depth, see tests
        raise ParseError(f"unparseable message ({type(exc).__name__})") from exc


class StreamFramer:
    """Cut a stream transport's bytes into SIP messages.

    ``feed`` returns what completed: messages, or a :class:`ParseError` for
    a message that was framed but malformed (the stream carries on).  When
    framing itself is lost -- no or bad Content-Length, oversized header or
    body -- a final ParseError is returned, :attr:`broken` is set and further
    input is ignored: the transport should close the connection.

    Empty lines between messages are CRLF keep-alives (RFC 5626); each
    double-CRLF "ping" bumps :attr:`pings` so the transport can answer
    with a single CRLF "pong".
    """

    def __init__(
        self, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.pings = 0
        self.broken: ParseError | None = None
        self._buf = bytearray()
        self._scanned = 0  # how far the header-end search got, so it never rescans
        self._crlfs = 0
        # A header block waiting for its body: (start, headers, body length).
        self._pending: tuple[str, Headers, int] | None = None

    def feed(self, data: bytes) -> list[Request | Response | ParseError]:
        if self.broken is not None:
            return []
        self._buf += data
        out: list[Request | Response | ParseError] = []
        try:
            while self._step(out):
                pass
        except ParseError as exc:
            self._fail(exc, out)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - defence in depth
            self._fail(ParseError(f"unparseable stream ({type(exc).__name__})"), out)
        return out

    def _fail(self, exc: ParseError, out: list[Request | Response | ParseError]) -> None:
        self.broken = exc
        self._buf.clear()
        self._pending = None
        out.append(exc)

    def _step(self, out: list[Request | Response | ParseError]) -> bool:
        """Consume one unit (keep-alive CRLF, header block or body); False when starved."""
        buf = self._buf
        if self._pending is not None:
            start, headers, length = self._pending
            if len(buf) < length:
                return False
            body = bytes(buf[:length])
            del buf[:length]
            self._pending = None
            try:
                out.append(_build(start, headers, body))
            except ParseError as exc:
                out.append(exc)
            return True

        if buf[:2] == b"\r\n" or buf[:1] == b"\n":
            del buf[: 2 if buf[:1] == b"\r" else 1]
            self._crlfs += 1
            if self._crlfs == 2:
                self.pings += 1
                self._crlfs = 0
            return True
        if buf == b"\r" or not buf:
            return False
        self._crlfs = 0

        m = _HEAD_END.search(buf, max(0, self._scanned - 3), self.max_header_bytes + 4)
        if m is None:
            if len(buf) > self.max_header_bytes:
                raise ParseError("header too large", 513)
            self._scanned = len(buf)
            return False
        self._scanned = 0
        if m.start() > self.max_header_bytes:
            raise ParseError("header too large", 513)
        start, headers = _split_head(bytes(buf[: m.start()]))
        declared = _content_length(headers)
        if declared is None:
            raise ParseError("missing Content-Length on a stream transport")
        if declared > self.max_body_bytes:
            raise ParseError("body too large", 413)
        del buf[: m.end()]
        self._pending = (start, headers, declared)
        return True


def validate_request(req: Request) -> ParseError | None:
    """Semantic checks a UAS/proxy makes before processing (RFC 3261 8.2, 16.3).

    Returns the error to answer with, or None when the request is sound.
    """
    try:
        if not req.headers.get_all("Via"):
            return ParseError("missing Via")
        # Each accessor parses its header and raises on a malformed one.
        _ = (req.vias, req.from_addr, req.to_addr, req.call_id)
        cseq = req.cseq
        if cseq.method != req.method:
            return ParseError("CSeq method does not match the request method")
        if len(req.headers.get_all("Max-Forwards")) > 1:
            return ParseError("more than one Max-Forwards")
        max_forwards = req.max_forwards
        if max_forwards is not None and max_forwards > 255:
            return ParseError("Max-Forwards out of range")
        # RFC 4475 3.1.2.11: escaped headers belong in no Request-URI.
        if req.uri.partition(":")[0].lower() in ("sip", "sips") and SipUri.parse(req.uri).headers:
            return ParseError("Request-URI carries headers")
    except ParseError as exc:
        return exc
    return None
