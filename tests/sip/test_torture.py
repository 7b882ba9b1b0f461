"""RFC 4475 torture tests: valid messages parse to the right values, invalid ones are refused."""

from __future__ import annotations

import pytest

from voipbin.sip.errors import ParseError
from voipbin.sip.message import CSeq, Request, Response
from voipbin.sip.parser import parse_message, validate_request

from . import torture as t


def request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert validate_request(msg) is None
    # Whatever we accept we must be able to send on unchanged in meaning.
    again = parse_message(bytes(msg))
    assert again == msg
    return msg


def response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    assert parse_message(bytes(msg)) == msg
    return msg


def test_wsinv_short_tortuous_invite() -> None:
    req = request(t.WSINV)
    assert req.method == "INVITE"
    uri = req.sip_uri
    assert (uri.user, uri.host, uri.port, uri.params) == (
        "vivekg",
        "chair-dnrc.example.com",
        None,
        {"unknownparam": None},
    )
    to = req.to_addr
    assert (to.display_name, to.uri, to.tag) == ("", "sip:vivekg@chair-dnrc.example.com", "1918181833n")
    frm = req.from_addr
    assert frm.display_name == 'J Rosenberg \\"'
    assert (frm.uri, frm.tag) == ("sip:jdrosen@example.com", "98asjd8")
    assert req.max_forwards == 68
    assert req.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert req.cseq == CSeq(9, "INVITE")
    vias = req.vias
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert req.headers["Subject"] == ""
    assert req.headers["newfangledheader"] == "newfangled value continued newfangled value"
    # Unknown headers are never split on commas.
    assert req.headers.get_all("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    assert req.content_type == "application/sdp"
    assert req.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    (contact,) = req.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.uri == "sip:jdrosen@example.com"
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(req.body) == 150 and req.body.startswith(b"v=0\r\n")


def test_intmeth_wide_range_of_valid_characters() -> None:
    req = request(t.INTMETH)
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = req.sip_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert req.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    to = req.to_addr
    assert to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert to.sip_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    frm = req.from_addr
    assert frm.display_name == "token1~` token2'+_ token3*%!.-"
    assert frm.tag == "_token~1'+`*%!-."
    assert frm.params["fromparam''~+*_!.-%"] == "работающий"
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.cseq == CSeq(139122385, req.method)
    assert req.max_forwards == 255
    assert req.headers["extensionHeader-!.%*+_`'~"] == "\ufeff大停電"
    assert req.body == b""


def test_esc01_percent_escapes_kept_verbatim() -> None:
    req = request(t.ESC01)
    assert req.sip_uri.user == "sips%3Auser%40example.com"
    assert req.sip_uri.host == "example.net"
    assert req.to_addr.sip_uri.user == "%75se%72"
    assert req.from_addr.sip_uri.user == "I%20have%20spaces"
    assert req.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert req.content_type == "application/sdp"
    (contact,) = req.contacts
    assert contact.sip_uri.user == "cal%6Cer"
    assert contact.sip_uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}


def test_escnull_nulls_in_user_part() -> None:
    req = request(t.ESCNULL)
    assert req.to_addr.sip_uri.user == "null-%00-null"
    assert [c.sip_uri.user for c in req.contacts] == ["%00", "%00%00"]
    assert req.headers["Content-Length"] == "0"


def test_esc02_percent_is_not_an_escape_elsewhere() -> None:
    req = request(t.ESC02)
    assert req.method == "RE%47IST%45R"
    assert req.to_addr.display_name == "%Z%45"
    assert req.vias[0].branch == "z9hG4bK209%fzsnel234"
    # Two Contacts; "C%6Fntact" is an unknown header, not a third one.
    assert [c.sip_uri.user for c in req.contacts] == ["alias1", "alias3"]
    assert req.headers["C%6Fntact"] == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_before_angle_bracket() -> None:
    req = request(t.LWSDISP)
    assert req.from_addr.display_name == "caller"
    assert req.from_addr.tag == "323"


def test_longreq_long_values() -> None:
    req = request(t.LONGREQ)
    to = req.to_addr
    assert to.display_name == t.LONG_DISPLAY
    assert to.sip_uri.port == 6000
    assert to.sip_uri.params == {
        "unknownparam1": t.LONG_PARAM1,
        t.LONG_PARAM2: "shortvalue",
        t.LONG_PARAM3.lower(): None,
    }
    assert req.from_addr.tag == t.LONG_TAG
    assert req.from_addr.sip_uri.user == t.LONG_USER
    assert req.call_id == t.LONG_CALLID
    vias = req.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].received == "192.0.2.5"
    assert vias[-1].branch == t.LONG_BRANCH
    assert len(req.headers.get_all(t.LONG_HDR)) == 1


def test_dblreq_trailing_octets_in_datagram_ignored() -> None:
    req = request(t.DBLREQ)
    assert req.method == "REGISTER"
    assert req.body == b""
    assert b"INVITE" not in bytes(req)
    assert req.contacts[0].uri == "sip:j.user@host.example.com"


def test_semiuri_params_in_user_part() -> None:
    req = request(t.SEMIURI)
    assert req.sip_uri.user == "user;par=u%40example.net"
    assert req.sip_uri.host == "example.com"
    assert req.sip_uri.params == {}
    assert req.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_varied_and_unknown() -> None:
    req = request(t.TRANSPORTS)
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_unreason_utf8_reason_phrase() -> None:
    res = response(t.UNREASON)
    assert res.status_code == 200
    assert res.reason == t.UNREASON_PHRASE
    assert len(res.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    res = response(t.NOREASON)
    assert (res.status_code, res.reason) == (100, "")
    assert res.to_addr.tag == "902jndnke3"


def test_badbranch_parses() -> None:
    # Bare magic cookie: the transaction layer decides, the parser must not break.
    assert request(t.BADBRANCH).vias[0].branch == "z9hG4bK"


def test_baddate_is_accepted_liberally() -> None:
    # Date is never interpreted, so a non-GMT zone is carried, not refused.
    assert request(t.BADDATE).headers["Date"] == "Fri, 01 Jan 2010 16:00:00 EST"


def test_unknown_schemes_parse_but_are_not_sip_uris() -> None:
    req = request(t.UNKSCM)
    with pytest.raises(ParseError) as err:
        _ = req.sip_uri
    assert err.value.status_code == 416
    novel = request(t.NOVELSC)
    assert novel.uri == "soap.beep://192.0.2.103:3002"
    assert novel.to_addr.uri == "isbn:2983792873"
    assert novel.from_addr.uri == "http://www.example.com"
    assert novel.contacts[0].uri == "name:John_Smith"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(t.BADINV01, id="3.1.2.1-extraneous-separators"),
        pytest.param(t.CLERR, id="3.1.2.2-content-length-too-large"),
        pytest.param(t.NCL, id="3.1.2.3-negative-content-length"),
        pytest.param(t.SCALAR02, id="3.1.2.4-request-scalars-overlarge"),
        pytest.param(t.SCALARLG, id="3.1.2.5-response-scalars-overlarge"),
        pytest.param(t.QUOTBAL, id="3.1.2.6-unterminated-quote"),
        pytest.param(t.LTGTRURI, id="3.1.2.7-angle-brackets-request-uri"),
        pytest.param(t.LWSRURI, id="3.1.2.8-lws-in-request-uri"),
        pytest.param(t.LWSSTART, id="3.1.2.9-multiple-sp-in-request-line"),
        pytest.param(t.TRWS, id="3.1.2.10-trailing-sp-in-request-line"),
        pytest.param(t.REGBADCT, id="3.1.2.13-uri-with-headers-not-enclosed"),
        pytest.param(t.BADASPEC, id="3.1.2.14-spaces-in-addr-spec"),
        pytest.param(t.BADDN, id="3.1.2.15-non-token-display-name"),
        pytest.param(t.BIGCODE, id="3.1.2.19-overlarge-status-code"),
    ],
)
def test_invalid_messages_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert err.value.status_code == 400


def test_badvers_unknown_version_is_505() -> None:
    with pytest.raises(ParseError) as err:
        parse_message(t.BADVERS)
    assert err.value.status_code == 505


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(t.MISMATCH01, "CSeq method", id="3.1.2.17-mismatch01"),
        pytest.param(t.MISMATCH02, "CSeq method", id="3.1.2.18-mismatch02"),
        pytest.param(t.ESCRURI, "Request-URI", id="3.1.2.11-escaped-headers-in-request-uri"),
        pytest.param(t.INSUF, "missing From", id="3.3.1-missing-required-headers"),
    ],
)
def test_semantically_invalid_requests(data: bytes, reason: str) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    error = validate_request(msg)
    assert error is not None and reason in error.reason
    assert error.status_code == 400
