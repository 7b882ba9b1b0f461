"""Property tests: the parser only ever raises ParseError, and round trips are stable."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voipbin.sip.digest import parse_auth_header
from voipbin.sip.errors import ParseError
from voipbin.sip.headers import Headers
from voipbin.sip.message import Address, Request, Response, SipUri, Via
from voipbin.sip.parser import StreamFramer, _parse_datagram, parse_message

from . import torture as t

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID_SAMPLES = [t.WSINV, t.INTMETH, t.ESC01, t.LONGREQ, t.SEMIURI, t.UNREASON, t.NOREASON]
SIP_TOKENS = [b"\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"=", b"@", b"%",
              b"/", b"?", b"0", b"9", b"\x00", b"\xff", b"\xc3", b"SIP/2.0", b"Via", b"Content-Length",
              b"l: 99999999999", b"CSeq", b"[", b"]", b"*"]
SIP_BYTES = st.sampled_from(SIP_TOKENS)


def strictly_parse(data: bytes) -> None:
    """Call the parser without its catch-all, so any stray exception fails the test."""
    try:
        _parse_datagram(data)
    except ParseError:
        pass


@BOUNDED
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    strictly_parse(data)
    strictly_parse(b"INVITE sip:a@b SIP/2.0\r\n" + data)


@BOUNDED
@given(st.sampled_from(VALID_SAMPLES), st.data())
def test_mutated_messages_raise_only_parse_error(sample: bytes, data: st.DataObject) -> None:
    buf = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(SIP_BYTES | st.binary(min_size=1, max_size=4))
        if op == "insert":
            buf[pos:pos] = chunk
        elif op == "delete":
            del buf[pos : pos + len(chunk)]
        else:
            buf[pos : pos + len(chunk)] = chunk
    strictly_parse(bytes(buf))


@BOUNDED
@given(st.text(max_size=300))
def test_parse_auth_header_never_raises(value: str) -> None:
    result = parse_auth_header("Digest " + value)
    assert result is None or all(isinstance(v, str) for v in result.values())
    parse_auth_header(value)


# -- generated well-formed messages --------------------------------------------

TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=10)
LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
HOST = st.lists(LABEL, min_size=1, max_size=3).map(".".join) | st.sampled_from(
    ["192.0.2.1", "[2001:db8::1]"]
)
USER = st.text(alphabet=string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/", min_size=1, max_size=10)
URI_PARAM = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.!~*'()", min_size=1, max_size=8)
PORT = st.none() | st.integers(1, 65535)
LINE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)
HEADER_VALUE = LINE_TEXT.map(lambda s: s.strip(" \t"))


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    params = draw(st.dictionaries(URI_PARAM, st.none() | URI_PARAM, max_size=2))
    return str(
        SipUri(draw(st.sampled_from(["sip", "sips"])), draw(st.none() | USER), None, draw(HOST), draw(PORT), params)
    )


@st.composite
def addresses(draw: st.DrawFn, tag: bool) -> str:
    params = {"tag": draw(TOKEN)} if tag else {}
    return str(Address(draw(sip_uris()), draw(LINE_TEXT), params))


@st.composite
def header_sets(draw: st.DrawFn, method: str) -> Headers:
    h = Headers()
    for _ in range(draw(st.integers(1, 3))):
        via = Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "WS"])), draw(HOST), draw(PORT))
        via.params = {"branch": "z9hG4bK" + draw(TOKEN)}
        if draw(st.booleans()):
            via.params["rport"] = None
        h.add("Via", str(via))
    h.add("From", draw(addresses(tag=True)))
    h.add("To", draw(addresses(tag=draw(st.booleans()))))
    h.add("Call-ID", draw(TOKEN) + "@" + draw(HOST))
    h.add("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}")
    h.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for _ in range(draw(st.integers(0, 2))):
        h.add("Contact", draw(addresses(tag=False)))
    for _ in range(draw(st.integers(0, 3))):
        h.add("X-" + draw(TOKEN), draw(HEADER_VALUE))
    return h


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        method = draw(TOKEN)
        return Request(method, draw(sip_uris()), draw(header_sets(method)), body)
    reason = draw(LINE_TEXT)
    return Response(draw(st.integers(100, 699)), reason, draw(header_sets(draw(TOKEN))), body)


@BOUNDED
@given(messages())
def test_serialize_parse_serialize_is_stable(msg: Request | Response) -> None:
    first = msg.encode()
    parsed = parse_message(first)
    assert type(parsed) is type(msg)
    assert parsed.body == msg.body
    second = parsed.encode()
    assert second == first
    assert parse_message(second) == parsed
    # The typed views agree with what was generated.
    assert [str(v) for v in parsed.vias] == msg.headers.get_all("Via")
    assert str(parsed.from_addr) == msg.headers["From"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Request | Response]]:
    msgs = draw(st.lists(messages(), min_size=1, max_size=4))
    parts: list[bytes] = []
    for msg in msgs:
        parts.append(draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"])))
        parts.append(msg.encode())
    return b"".join(parts), [parse_message(m.encode()) for m in msgs]


@BOUNDED
@given(streams(), st.lists(st.integers(0, 10_000), max_size=12))
def test_framer_is_independent_of_chunking(
    stream: tuple[bytes, list[Request | Response]], cuts: list[int]
) -> None:
    data, expected = stream
    whole = StreamFramer()
    assert whole.feed(data) == expected

    framer = StreamFramer()
    got: list[Request | Response | ParseError] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        got += framer.feed(data[lo:hi])
    assert got == expected
    assert framer.pings == whole.pings
    assert framer.broken is None


@BOUNDED
@given(st.lists(st.binary(max_size=300) | SIP_BYTES, max_size=10))
def test_framer_survives_garbage(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_header_bytes=512, max_body_bytes=512)
    for chunk in chunks:
        for item in framer.feed(chunk):
            assert isinstance(item, Request | Response | ParseError)


@pytest.mark.slow
def test_a_long_fuzz_raises_only_parse_error() -> None:
    """50,000 seeded mutations of valid messages (hypothesis above explores; this goes long)."""
    rng = random.Random(20261125)
    for _ in range(50_000):
        buf = bytearray(rng.choice(VALID_SAMPLES))
        for _ in range(rng.randint(1, 12)):
            pos = rng.randrange(len(buf) + 1)
            chunk = rng.choice(SIP_TOKENS) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 6))
            op = rng.random()
            if op < 0.4:
                buf[pos:pos] = chunk
            elif op < 0.7:
                del buf[pos : pos + len(chunk)]
            else:
                buf[pos : pos + len(chunk)] = chunk
        strictly_parse(bytes(buf))
