"""Datagram parsing edge cases, the stream framer, and validate_request."""

from __future__ import annotations

import pytest

from voipbin.sip.errors import ParseError
from voipbin.sip.message import Request, Response
from voipbin.sip.parser import (
    MAX_HEADER_BYTES,
    StreamFramer,
    is_keepalive,
    parse_message,
    validate_request,
)

from . import torture as t

OPTIONS = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKopt\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: opt-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
)


def with_body(body: bytes, head: bytes = OPTIONS) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_leading_crlfs_and_bare_lf_are_tolerated() -> None:
    msg = parse_message(b"\r\n\r\n" + with_body(b"xy").replace(b"\r\n", b"\n"))
    assert isinstance(msg, Request)
    assert msg.body == b"xy"
    assert msg.call_id == "opt-1"


def test_udp_body_without_content_length_is_rest_of_datagram() -> None:
    msg = parse_message(OPTIONS + b"\r\nrest of datagram")
    assert msg.body == b"rest of datagram"
    assert b"Content-Length: 16\r\n" in bytes(msg)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"garbage",
        OPTIONS,  # no blank line
        OPTIONS + b"Content-Length: 5\r\n\r\nabc",
        OPTIONS + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        OPTIONS + b"Content-Length: five\r\n\r\n",
        OPTIONS + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n",
        OPTIONS + b"Bad Header: x\r\n\r\n",
        OPTIONS + b"NoColon\r\n\r\n",
        OPTIONS + b"X: a\rb\r\n\r\n",
        b" OPTIONS sip:a@b SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n folded-first: x\r\n\r\n",
        b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n",
        b"OPTIONS sip:a@b\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 099 Low\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"OPT\xffIONS sip:a@b SIP/2.0\r\n\r\n",
        OPTIONS.replace(b"opt-1", b"two words") + b"\r\n",
        OPTIONS + b"From: <sip:x@y>\r\n\r\n",
        OPTIONS + b"Route: <sip:proxy@example.com;lr>, \r\n\r\n",
    ],
)
def test_malformed_datagrams(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


def test_oversized_header_is_513() -> None:
    data = OPTIONS + b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert err.value.status_code == 513


def test_utf8_tolerant_round_trip_of_invalid_octets() -> None:
    data = with_body(b"", OPTIONS + b"Subject: caf\xe9 \xff\r\n")
    msg = parse_message(data)
    assert bytes(msg) == data


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(OPTIONS)


def test_framer_splits_messages_and_counts_pings() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + with_body(b"one") + b"\r\n\r\n" + with_body(b"two!") + with_body(b"")
    out = framer.feed(stream)
    assert [m.body for m in out if isinstance(m, Request)] == [b"one", b"two!", b""]
    assert framer.pings == 2
    assert framer.broken is None


def test_framer_byte_at_a_time() -> None:
    framer = StreamFramer()
    data = with_body(b"hello") + with_body(b"world")
    out: list[object] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert [m.body for m in out if isinstance(m, Request)] == [b"hello", b"world"]


def test_framer_waits_for_the_body() -> None:
    framer = StreamFramer()
    data = with_body(b"0123456789")
    assert framer.feed(data[:-4]) == []
    (msg,) = framer.feed(data[-4:])
    assert isinstance(msg, Request) and msg.body == b"0123456789"


def test_framer_malformed_but_framed_message_does_not_break_stream() -> None:
    framer = StreamFramer()
    bad = with_body(b"", OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"))
    out = framer.feed(bad + with_body(b"ok"))
    assert isinstance(out[0], ParseError)
    assert isinstance(out[1], Request) and out[1].body == b"ok"
    assert framer.broken is None


def test_framer_missing_content_length_breaks_stream() -> None:
    framer = StreamFramer()
    out = framer.feed(OPTIONS + b"\r\n" + with_body(b"next"))
    assert len(out) == 1 and isinstance(out[0], ParseError)
    assert framer.broken is not None
    assert framer.feed(with_body(b"more")) == []


def test_framer_limits() -> None:
    framer = StreamFramer(max_body_bytes=10)
    (err,) = framer.feed(with_body(b"x" * 11))
    assert isinstance(err, ParseError) and err.status_code == 413

    framer = StreamFramer(max_header_bytes=1024)
    assert framer.feed(OPTIONS) == []
    (err,) = framer.feed(b"X-Pad: " + b"a" * 2000)
    assert isinstance(err, ParseError) and err.status_code == 513


def test_framer_responses_and_negative_content_length() -> None:
    framer = StreamFramer()
    (res,) = framer.feed(t.NOREASON)
    assert isinstance(res, Response) and res.status_code == 100
    (err,) = framer.feed(t.NCL)
    assert isinstance(err, ParseError)
    assert framer.broken is not None


def test_validate_request() -> None:
    msg = parse_message(with_body(b""))
    assert isinstance(msg, Request)
    assert validate_request(msg) is None

    msg.headers["Max-Forwards"] = "256"
    error = validate_request(msg)
    assert error is not None and "Max-Forwards" in error.reason

    msg.headers["Max-Forwards"] = "70"
    msg.headers.remove("Via")
    error = validate_request(msg)
    assert error is not None and "Via" in error.reason

    scalar = parse_message(t.SCALAR02.replace(b"36893488147419103232", b"1"))
    assert isinstance(scalar, Request)
    error = validate_request(scalar)
    assert error is not None and "Max-Forwards" in error.reason
