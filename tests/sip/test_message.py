"""Structured header values, the Headers collection, serialization and make_response."""

from __future__ import annotations

import pytest

from voipbin.sip.errors import ParseError
from voipbin.sip.headers import COMPACT_FORMS, Headers, canonical_name
from voipbin.sip.message import Address, CSeq, Request, Response, SipUri, Via, make_response
from voipbin.sip.parser import parse_message


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi&priority=urgent",
        "sip:example.com;maddr=239.255.255.1;ttl=15",
        "sip:+15551234567@gw.example.com;user=phone",
        "sip:*98#@pbx.example.com",
        "sip:%00@host5.example.com",
        "tel:+1-201-555-0123;phone-context=example.com",
    ],
)
def test_sip_uri_round_trips(text: str) -> None:
    uri = SipUri.parse(text)
    assert str(uri) == text
    assert SipUri.parse(str(uri)) == uri


def test_sip_uri_fields() -> None:
    uri = SipUri.parse("sips:alice:secret@[2001:db8::1]:5061;transport=TCP;lr?subject=hi")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "secret",
        "[2001:db8::1]",
        5061,
    )
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.transport == "tcp"
    assert uri.headers == [("subject", "hi")]
    tel = SipUri.parse("tel:+15551234567")
    assert (tel.scheme, tel.user, tel.host) == ("tel", "+15551234567", "")


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:example.com:99999",
        "sip:example.com:",
        "sip:ali ce@example.com",
        "sip:[::1",
        "sip:example.com;lr;lr",
        "sip:example.com;",
        "sip:a%zz@example.com",
        "sip:example.com?novalue",
        "example.com",
        "tel:",
    ],
)
def test_sip_uri_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        SipUri.parse(text)


def test_unsupported_scheme_is_416() -> None:
    with pytest.raises(ParseError) as err:
        SipUri.parse("http://example.com/")
    assert err.value.status_code == 416


def test_address_forms() -> None:
    a = Address.parse('"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=abc;expires=60')
    assert a.display_name == 'Alice "A" Smith'
    assert a.uri == "sip:alice@example.com;transport=tcp"
    assert a.params == {"tag": "abc", "expires": "60"}
    assert a.tag == "abc"
    assert Address.parse(str(a)) == a

    # addr-spec: parameters after the URI belong to the header, not the URI.
    b = Address.parse("sip:bob@example.com;tag=xyz")
    assert (b.display_name, b.uri, b.tag) == ("", "sip:bob@example.com", "xyz")
    assert str(b) == "<sip:bob@example.com>;tag=xyz"

    c = Address.parse("Bob Smith <sip:bob@example.com>")
    assert c.display_name == "Bob Smith"
    assert Address.parse('<sip:x@y>;+sip.instance="<urn:uuid:1>"').params == {
        "+sip.instance": "<urn:uuid:1>"
    }


def test_address_str_quotes_when_needed() -> None:
    a = Address("sip:a@b", display_name='Weird "name"\\', params={"x": "has space", "lr": None})
    text = str(a)
    assert text == '"Weird \\"name\\"\\\\" <sip:a@b>;x="has space";lr'
    assert Address.parse(text) == a


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "<sip:a@b",
        "< sip:a@b >",
        "Bell, Alexander <sip:a@b>",
        "<sip:a@b>;;",
        "<sip:a@b>;tag=1;tag=2",
        "<sip:a@b>;tag=",
        "<sip:a@b> junk",
        "sip:a@b?Route=x",
        '"name" sip:a@b',
        "",
        "*",
    ],
)
def test_address_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        Address.parse(text)


def test_via() -> None:
    v = Via.parse("SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK776;rport;received=192.0.2.9")
    assert (v.transport, v.host, v.port, v.branch, v.received) == (
        "UDP",
        "192.0.2.1",
        5060,
        "z9hG4bK776",
        "192.0.2.9",
    )
    assert v.rport is True
    assert Via.parse("SIP/2.0/TCP h;rport=5061").rport == 5061
    assert Via.parse("SIP/2.0/TCP h").rport is None
    assert Via.parse("SIP/2.0/TLS [2001:db8::1]:5061;received=2001:db8::9").received == "2001:db8::9"
    assert Via.parse("SIP / 2.0 / WSS host : 443 ; branch = z9hG4bKx").port == 443
    text = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport"
    assert str(Via.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0/UDP", "SIP/2.0 UDP host", "SIP/3.0/UDP host", "SIP/2.0/UDP host:0x50", "SIP/2.0/UDP a b"],
)
def test_via_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(text)


def test_cseq() -> None:
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(4294967295, "BYE")) == "4294967295 BYE"
    for bad in ("4294967296 INVITE", "INVITE", "1", "-1 INVITE", "1 INV ITE", "9" * 5000 + " X"):
        with pytest.raises(ParseError):
            CSeq.parse(bad)


def test_compact_forms() -> None:
    expected = {
        "i": "Call-ID",
        "m": "Contact",
        "f": "From",
        "t": "To",
        "v": "Via",
        "l": "Content-Length",
        "c": "Content-Type",
        "k": "Supported",
        "s": "Subject",
        "e": "Content-Encoding",
        "o": "Event",
        "r": "Refer-To",
        "u": "Allow-Events",
        "x": "Session-Expires",
    }
    for short, long in expected.items():
        assert COMPACT_FORMS[short] == long
        assert canonical_name(short.upper()) == long
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Custom") == "X-Custom"


def test_headers_collection() -> None:
    h = Headers([("v", "a"), ("Via", "b"), ("X-Foo", "1")])
    assert h.get_all("VIA") == ["a", "b"]
    assert h["via"] == "a"
    assert "x-foo" in h and "Route" not in h
    h.add("x-FOO", "2")
    assert h.get_all("X-Foo") == ["1", "2"]
    h.set("Via", "c")
    assert h.items() == [("Via", "c"), ("X-Foo", "1"), ("x-FOO", "2")]
    assert h.remove("x-foo") == 2
    del h["v"]
    assert len(h) == 0
    with pytest.raises(KeyError):
        h["Via"]
    assert h.get("Via", "none") == "none"
    assert Headers([("f", "x")]) == Headers([("From", "x")])


def _options() -> Request:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc")
    h.add("Via", "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKdef")
    h.add("From", "<sip:alice@example.com>;tag=a1")
    h.add("To", "<sip:bob@example.com>")
    h.add("Call-ID", "c1@example.com")
    h.add("CSeq", "1 INVITE")
    h.add("Max-Forwards", "70")
    return Request("INVITE", "sip:bob@example.com", h)


def test_encode_always_writes_correct_content_length() -> None:
    req = _options()
    req.body = b"hello"
    assert req.encode().endswith(b"Content-Length: 5\r\n\r\nhello")
    req.headers.add("Content-Length", "999")
    req.headers.add("l", "7")
    data = bytes(req)
    assert data.count(b"Content-Length") == 1
    assert b"Content-Length: 5\r\n" in data
    again = parse_message(data)
    assert again.body == b"hello"


def test_encode_refuses_header_injection() -> None:
    req = _options()
    req.headers.add("Subject", "hi\r\nVia: evil")
    with pytest.raises(ValueError):
        req.encode()
    with pytest.raises(ValueError):
        bytes(Request("INVITE", "sip:a@b c", Headers()))
    with pytest.raises(ValueError):
        bytes(Response(200, "OK\r\n"))


def test_make_response_copies_and_tags() -> None:
    req = _options()
    res = make_response(req, 180, to_tag="b2")
    assert (res.status_code, res.reason) == (180, "Ringing")
    assert res.headers.get_all("Via") == req.headers.get_all("Via")
    assert res.headers["From"] == "<sip:alice@example.com>;tag=a1"
    assert res.to_addr.tag == "b2"
    assert res.call_id == "c1@example.com"
    assert res.cseq == CSeq(1, "INVITE")
    assert "Max-Forwards" not in res.headers
    # An existing To tag (mid-dialog request) is kept.
    req.headers["To"] = "<sip:bob@example.com>;tag=old"
    assert make_response(req, 200, to_tag="new").to_addr.tag == "old"
    assert make_response(req, 299).reason == ""
    assert make_response(req, 486, "Busy").reason == "Busy"
    encoded = bytes(make_response(req, 200))
    assert encoded.startswith(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\n")


def test_list_splitting_rules() -> None:
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
        b'Contact: "Doe, John" <sip:john@a>;expires=60, <sip:john,doe@b>\r\n'
        b'Authorization: Digest username="a", realm="b", nonce="c", uri="sip:x", response="d"\r\n'
        b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
        b"X-List: a, b\r\n"
        b"Supported:\r\n"
        b"\r\n"
    )
    msg = parse_message(data)
    assert len(msg.headers.get_all("Via")) == 2
    assert [c.display_name for c in msg.contacts] == ["Doe, John", ""]
    assert msg.contacts[1].uri == "sip:john,doe@b"
    assert len(msg.headers.get_all("Authorization")) == 1
    assert msg.headers["Date"] == "Sat, 13 Nov 2010 23:29:00 GMT"
    assert msg.headers["X-List"] == "a, b"
    assert msg.headers.get_all("Supported") == [""]


def test_contact_star() -> None:
    data = b"REGISTER sip:example.com SIP/2.0\r\nContact: *\r\nExpires: 0\r\nl: 0\r\n\r\n"
    msg = parse_message(data)
    assert msg.contact_wildcard and msg.contacts == []
    with pytest.raises(ParseError):
        parse_message(data.replace(b"*", b"*, <sip:a@b>"))
