"""SDP parsing/serialization and offer/answer against bodies real phones and PBXs send."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipbin.media.g711 import PCMA, PCMU
from voipbin.media.sdp import (
    MediaDescription,
    RtpMap,
    SdpError,
    build_offer,
    negotiate,
    parse_answer,
    parse_sdp,
    reverse_direction,
)


def crlf(text: str) -> str:
    return "\r\n".join(line.strip() for line in text.strip().splitlines()) + "\r\n"


BARESIP = crlf("""
    v=0
    o=- 1798429476 3018339040 IN IP4 192.168.1.34
    s=-
    c=IN IP4 192.168.1.34
    t=0 0
    m=audio 10670 RTP/AVP 96 9 0 8 101
    b=AS:128
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp-rsize
    a=sendrecv
    a=label:1
    a=ssrc:1238734124 cname:b9d7c7a0-5f4e-4d1b-9a7c-1f1f2f3f4f5f
    a=rtcp-mux
""")

LINPHONE = crlf("""
    v=0
    o=alice 1853 1340 IN IP4 192.168.0.17
    s=Talk
    c=IN IP4 192.168.0.17
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=fmtp:97 vbr=on
    a=rtpmap:98 speex/8000
    a=fmtp:98 vbr=on
    a=fmtp:18 annexb=yes
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 5000
    a=rtcp-fb:* ccm tmmbr
""")

# sipp's built-in uac scenario: static PCMU, no telephone-event at all.
SIPP = crlf("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 0
    a=rtpmap:0 PCMU/8000
""")

ASTERISK = crlf("""
    v=0
    o=- 1234567 1234567 IN IP4 10.0.0.5
    s=Asterisk
    c=IN IP4 10.0.0.5
    t=0 0
    m=audio 17328 RTP/AVP 8 0 3 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

ASTERISK_HOLD = ASTERISK.replace("1234567 1234567", "1234567 1234568").replace("a=sendrecv", "a=sendonly")

FREESWITCH = crlf("""
    v=0
    o=FreeSWITCH 1690000000 1690000001 IN IP4 203.0.113.10
    s=FreeSWITCH
    c=IN IP4 203.0.113.10
    t=0 0
    m=audio 23456 RTP/AVP 102 9 0 8 103 101 13
    a=rtpmap:102 opus/48000/2
    a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:103 telephone-event/48000
    a=fmtp:103 0-16
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=rtpmap:13 CN/8000
    a=ptime:20
    a=sendrecv
    a=rtcp:23457 IN IP4 203.0.113.10
""")

# RFC 2543 hold: the address is zeroed, the attributes say nothing.
OLD_HOLD = crlf("""
    v=0
    o=- 2 3 IN IP4 198.51.100.7
    s=-
    c=IN IP4 0.0.0.0
    t=0 0
    m=audio 4000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
""")


def test_baresip_offer() -> None:
    offer = parse_sdp(BARESIP)
    assert offer.origin.session_id == 1798429476
    audio = offer.audio
    assert audio is not None
    assert audio.formats == ["96", "9", "0", "8", "101"]
    assert audio.rtpmap[96] == RtpMap("opus", 48000, 2)
    assert audio.fmtp[101] == "0-15"
    assert ("ssrc", "1238734124 cname:b9d7c7a0-5f4e-4d1b-9a7c-1f1f2f3f4f5f") in audio.attributes
    assert ("rtcp-mux", None) in audio.attributes

    answer, codec, remote, te_pt = negotiate(offer, "203.0.113.1", 30000, session_id=9, version=1)
    # opus and G722 come first in the offer but are not ours: PCMU is the first we share.
    assert codec == PCMU
    assert remote == ("192.168.1.34", 10670)
    assert te_pt == 101
    text = answer.serialize()
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "c=IN IP4 203.0.113.1\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\n" in text
    assert "a=sendrecv\r\n" in text
    assert "opus" not in text


def test_linphone_offer_picks_the_8khz_telephone_event() -> None:
    offer = parse_sdp(LINPHONE)
    assert offer.session_name == "Talk"
    assert offer.attributes[0][0] == "rtcp-xr"
    result = negotiate(offer, "10.1.1.1", 30002)
    assert result.codec == PCMU
    assert result.telephone_event_pt == 100
    assert result.remote == ("192.168.0.17", 7078)
    answer_audio = result.answer.media[0]
    assert answer_audio.formats == ["0", "100"]
    assert answer_audio.fmtp[100] == "0-16"


def test_sipp_offer_without_telephone_event() -> None:
    result = negotiate(parse_sdp(SIPP), "127.0.0.1", 30004)
    assert result.codec == PCMU
    assert result.telephone_event_pt is None
    assert result.answer.media[0].formats == ["0"]
    assert "telephone-event" not in result.answer.serialize()


def test_asterisk_offer_prefers_pcma_in_its_order() -> None:
    offer = parse_sdp(ASTERISK)
    audio = offer.audio
    assert audio is not None and audio.ptime == 20
    assert ("maxptime", "150") in audio.attributes
    result = negotiate(offer, "10.0.0.9", 30006)
    assert result.codec == PCMA
    assert result.telephone_event_pt == 101
    assert result.answer.media[0].formats == ["8", "101"]


def test_freeswitch_offer_with_dynamic_payload_types_and_rtcp_port() -> None:
    offer = parse_sdp(FREESWITCH)
    audio = offer.audio
    assert audio is not None
    assert audio.rtcp_port == 23457
    assert audio.encoding(13) == RtpMap("CN", 8000)
    result = negotiate(offer, "10.0.0.9", 30008)
    assert result.codec == PCMU
    assert result.telephone_event_pt == 101  # not 103, the 48 kHz one


def test_hold_with_sendonly_is_answered_recvonly() -> None:
    result = negotiate(parse_sdp(ASTERISK_HOLD), "10.0.0.9", 30010, version=2)
    assert result.answer.media[0].direction == "recvonly"
    assert "a=recvonly\r\n" in result.answer.serialize()
    assert result.remote == ("10.0.0.5", 17328)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive")],
)
def test_direction_is_mirrored(offered: str, answered: str) -> None:
    offer = build_offer("192.0.2.1", 4000, direction=offered)  # type: ignore[arg-type]
    result = negotiate(parse_sdp(offer.serialize()), "192.0.2.2", 5000)
    assert result.answer.media[0].direction == answered
    assert reverse_direction(result.answer.media[0].direction) == offered


def test_rfc2543_hold_address_is_reported_as_is() -> None:
    result = negotiate(parse_sdp(OLD_HOLD), "192.0.2.2", 5000)
    assert result.remote == ("0.0.0.0", 4000)
    assert result.codec == PCMU


def test_session_level_direction_applies_to_media_without_one() -> None:
    offer = parse_sdp(SIPP.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"))
    assert offer.media[0].direction == "sendonly"
    assert negotiate(offer, "127.0.0.1", 5000).answer.media[0].direction == "recvonly"


def test_video_and_second_audio_streams_are_rejected_with_port_zero() -> None:
    text = crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.10
        s=-
        c=IN IP4 192.0.2.10
        t=0 0
        m=video 9000 RTP/AVP 96
        a=rtpmap:96 H264/90000
        m=audio 9002 RTP/AVP 8
        c=IN IP4 192.0.2.99
        m=audio 9004 RTP/AVP 0
    """)
    result = negotiate(parse_sdp(text), "192.0.2.1", 5000)
    media = result.answer.media
    assert [(m.media, m.port) for m in media] == [("video", 0), ("audio", 5000), ("audio", 0)]
    assert media[0].formats == ["96"]
    assert result.codec == PCMA
    assert result.remote == ("192.0.2.99", 9002)  # the media-level c= wins
    reparsed = parse_sdp(result.answer.serialize())
    assert [m.port for m in reparsed.media] == [0, 5000, 0]


def test_dynamic_payload_type_for_g711_is_kept() -> None:
    text = SIPP.replace("RTP/AVP 0", "RTP/AVP 96").replace("rtpmap:0 PCMU", "rtpmap:96 pcmu")
    result = negotiate(parse_sdp(text), "127.0.0.1", 5000)
    assert result.codec.name == "PCMU"
    assert result.codec.payload_type == 96
    assert result.answer.media[0].rtpmap[96] == RtpMap("PCMU", 8000)


def test_fax_stream_parses() -> None:
    text = crlf("""
        v=0
        o=- 1 2 IN IP4 192.0.2.10
        s=-
        c=IN IP4 192.0.2.10
        t=0 0
        m=image 4002 udptl t38
        a=T38FaxVersion:0
        a=T38FaxRateManagement:transferredTCF
    """)
    offer = parse_sdp(text)
    assert offer.media[0].formats == ["t38"]
    assert offer.media[0].payload_types == []
    with pytest.raises(SdpError):
        negotiate(offer, "192.0.2.1", 5000)


@pytest.mark.parametrize(
    "text",
    [
        SIPP.replace("m=audio 6000", "m=audio 0"),  # the only audio stream is disabled
        BARESIP.replace("96 9 0 8 101", "96 9"),  # nothing we can decode
        SIPP.replace("RTP/AVP", "RTP/SAVP"),  # SRTP needs keys we do not have
        SIPP.replace("c=IN IP4 127.0.0.1\r\n", ""),  # nowhere to send
        SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com"),  # would need DNS
    ],
)
def test_unacceptable_offers(text: str) -> None:
    with pytest.raises(SdpError):
        negotiate(parse_sdp(text), "127.0.0.1", 5000)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",  # no v=
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",  # no o=
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:fast\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:\r\n",
    ],
)
def test_malformed_sdp(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)
    assert issubclass(SdpError, ValueError)


def test_not_utf8() -> None:
    with pytest.raises(SdpError):
        parse_sdp(b"v=0\r\no=\xff 1 1 IN IP4 1.2.3.4\r\n")


def test_lenient_about_line_ends_blank_lines_and_unknown_lines() -> None:
    text = SIPP.replace("\r\n", "\n") + "\n\nx=whatever\nk=prompt\n"
    offer = parse_sdp(text.encode())
    assert offer.audio is not None and offer.audio.port == 6000


def test_serialize_round_trip() -> None:
    offer = parse_sdp(FREESWITCH)
    again = parse_sdp(offer.serialize())
    assert again == offer


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("vocmsat=-0123456789 /:.\r\nINPRTAV")), max_size=200))
def test_fuzzed_text_raises_only_sdp_error(text: str) -> None:
    try:
        offer = parse_sdp("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n" + text)
    except SdpError:
        return
    with contextlib.suppress(SdpError):
        negotiate(offer, "127.0.0.1", 5000)


# ---------------------------------------------------------------- we offer


def test_offer_lists_codecs_then_telephone_event() -> None:
    offer = build_offer("192.0.2.1", 40000, session_id=77, version=3)
    text = offer.serialize()
    assert text.startswith("v=0\r\no=- 77 3 IN IP4 192.0.2.1\r\ns=voipbin\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n")
    assert "m=audio 40000 RTP/AVP 0 8 101\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text
    ipv6 = build_offer("2001:db8::1", 40000, codecs=(PCMA,), telephone_event_pt=None).serialize()
    assert "c=IN IP6 2001:db8::1\r\n" in ipv6
    assert "m=audio 40000 RTP/AVP 8\r\n" in ipv6


def test_parse_answer() -> None:
    offer = build_offer("192.0.2.1", 40000)
    answer = parse_sdp(
        ASTERISK.replace("RTP/AVP 8 0 3 101", "RTP/AVP 8 101").replace("a=sendrecv", "a=recvonly")
    )
    result = parse_answer(answer, offer)
    assert result.codec == PCMA
    assert result.telephone_event_pt == 101
    assert result.remote == ("10.0.0.5", 17328)
    assert reverse_direction(result.answer.media[0].direction) == "sendonly"


def test_parse_answer_without_telephone_event() -> None:
    result = parse_answer(parse_sdp(SIPP), build_offer("192.0.2.1", 40000))
    assert (result.codec, result.telephone_event_pt) == (PCMU, None)


@pytest.mark.parametrize(
    "answer",
    [
        SIPP.replace("m=audio 6000", "m=audio 0"),
        BARESIP.replace("96 9 0 8 101", "96"),  # a codec we never offered
        SIPP + "m=video 0 RTP/AVP 31\r\n",  # more streams than offered
    ],
)
def test_bad_answers(answer: str) -> None:
    with pytest.raises(SdpError):
        parse_answer(parse_sdp(answer), build_offer("192.0.2.1", 40000))


def test_media_description_defaults() -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0", "101"])
    assert media.payload_types == [0, 101]
    assert media.encoding(0) == RtpMap("PCMU", 8000)
    assert media.encoding(101) is None
