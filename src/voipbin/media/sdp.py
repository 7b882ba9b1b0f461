"""SDP (RFC 4566) parsing and serialization, and RFC 3264 offer/answer for G.711 audio.

Sans-IO like the rest of the package: text in, dataclasses out. The parser is
lenient about what real phones send (blank lines, bare ``\\n`` line ends, unknown
line types and attributes, non-RTP streams such as T.38) and raises
:class:`SdpError` only when a line we rely on cannot be read.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, TypeAlias

from voipbin.media.g711 import CODECS_BY_NAME, PCMA, PCMU, Codec

Direction: TypeAlias = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTION_BY_NAME: Final[dict[str, Direction]] = {direction: direction for direction in DIRECTIONS}

# Plain RTP profiles we can answer; SRTP (RTP/SAVP...) needs keys we do not have.
RTP_PROFILES: Final = ("RTP/AVP", "RTP/AVPF")
TELEPHONE_EVENT: Final = "telephone-event"
# Events 0-15 are the DTMF digits; 16 (flash) is commonly offered too and harmless.
TELEPHONE_EVENT_FMTP: Final = "0-16"


class SdpError(ValueError):
    """Malformed SDP, or an offer/answer we cannot accept."""


@dataclass
class Origin:
    """The o= line; ``session_version`` must grow with every changed description."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class RtpMap:
    """One a=rtpmap value: ``PCMU/8000`` or ``opus/48000/2``."""

    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.encoding}/{self.clock_rate}{suffix}"


@dataclass
class MediaDescription:
    """One m= section.

    ``formats`` are the m-line tokens as written: payload type numbers for RTP,
    but e.g. ``t38`` for fax, so they stay strings; :attr:`payload_types` gives the
    numbers. ``direction`` is already resolved against the session-level attribute.
    ``attributes`` keeps every other a= line (ssrc, rtcp-mux, ICE...) in order.
    """

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int = 1
    connection: str | None = None
    rtpmap: dict[int, RtpMap] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: Direction = "sendrecv"
    rtcp_port: int | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def payload_types(self) -> list[int]:
        return [int(fmt) for fmt in self.formats if fmt.isdigit()]

    def encoding(self, payload_type: int) -> RtpMap | None:
        """What a payload type carries: its rtpmap, else the RFC 3551 static assignment."""
        if payload_type in self.rtpmap:
            return self.rtpmap[payload_type]
        return _STATIC_RTPMAP.get(payload_type)


@dataclass
class SessionDescription:
    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def audio(self) -> MediaDescription | None:
        """The first audio stream that is not disabled (port 0), if any."""
        return next((m for m in self.media if m.media == "audio" and m.port != 0), None)

    def connection_for(self, media: MediaDescription) -> str | None:
        """The address a stream's media goes to: its own c= line, else the session's."""
        return media.connection or self.connection

    def serialize(self) -> str:
        o = self.origin
        lines = [
            "v=0",
            f"o={o.username} {o.session_id} {o.session_version} IN {_addrtype(o.address)} {o.address}",
            f"s={self.session_name or '-'}",
        ]
        if self.connection is not None:
            lines.append(_connection_line(self.connection))
        lines.append("t=0 0")
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count != 1 else str(m.port)
            lines.append(" ".join([f"m={m.media}", port, m.proto, *m.formats]))
            if m.connection is not None:
                lines.append(_connection_line(m.connection))
            for pt in m.payload_types:
                if pt in m.rtpmap:
                    lines.append(f"a=rtpmap:{pt} {m.rtpmap[pt]}")
                if pt in m.fmtp:
                    lines.append(f"a=fmtp:{pt} {m.fmtp[pt]}")
            if m.ptime is not None:
                lines.append(f"a=ptime:{m.ptime}")
            if m.rtcp_port is not None:
                lines.append(f"a=rtcp:{m.rtcp_port}")
            lines.extend(_attribute_line(name, value) for name, value in m.attributes)
            # Disabled streams carry no attributes worth stating (RFC 3264 section 6).
            if m.port != 0:
                lines.append(f"a={m.direction}")
        return "\r\n".join(lines) + "\r\n"

    def __str__(self) -> str:
        return self.serialize()


_STATIC_RTPMAP: Final = {
    PCMU.payload_type: RtpMap(PCMU.name, 8000),
    PCMA.payload_type: RtpMap(PCMA.name, 8000),
    3: RtpMap("GSM", 8000),
    9: RtpMap("G722", 8000),
    13: RtpMap("CN", 8000),
    18: RtpMap("G729", 8000),
}


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _connection_line(address: str) -> str:
    return f"c=IN {_addrtype(address)} {address}"


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


# --------------------------------------------------------------------------- parsing


def _int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    if not text.isdigit() or (high is not None and not low <= int(text) <= high):
        raise SdpError(f"bad {what}: {text!r}")
    return int(text)


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN":
        raise SdpError(f"bad c= line: {value!r}")
    # Multicast "/ttl/count" suffixes do not change where we send.
    return parts[2].split("/")[0]


def _parse_rtpmap(value: str) -> tuple[int, RtpMap]:
    pt_text, _, spec = value.partition(" ")
    parts = spec.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SdpError(f"bad a=rtpmap: {value!r}")
    channels = _int(parts[2], "rtpmap channels", 1) if len(parts) == 3 else 1
    return _int(pt_text, "payload type", 0, 127), RtpMap(parts[0], _int(parts[1], "clock rate", 1), channels)


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad m= line: {value!r}")
    port_text, _, count_text = parts[1].partition("/")
    return MediaDescription(
        media=parts[0],
        port=_int(port_text, "port", 0, 65535),
        port_count=_int(count_text, "port count", 1) if count_text else 1,
        proto=parts[2],
        formats=parts[3:],
    )


def _apply_media_attribute(media: MediaDescription, name: str, value: str | None) -> None:
    if name == "rtpmap" and value is not None:
        pt, rtpmap = _parse_rtpmap(value)
        media.rtpmap[pt] = rtpmap
    elif name == "fmtp" and value is not None and value.split(" ", 1)[0].isdigit():
        pt_text, _, params = value.partition(" ")
        media.fmtp[_int(pt_text, "payload type", 0, 127)] = params.strip()
    elif name == "ptime" and value is not None:
        try:
            media.ptime = round(float(value))
        except ValueError:
            raise SdpError(f"bad a=ptime: {value!r}") from None
    elif name == "rtcp" and value is not None:
        # "a=rtcp:53021 IN IP4 192.0.2.1": only the port differs from the RTP stream's in practice.
        media.rtcp_port = _int(value.partition(" ")[0], "rtcp port", 0, 65535)
    else:
        media.attributes.append((name, value))


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse an SDP body; :class:`SdpError` when it is malformed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")

    sd = SessionDescription()
    seen_origin = False
    session_direction: Direction | None = None
    media_directions: list[Direction | None] = []
    for line in lines[1:]:
        kind, sep, value = line.partition("=")
        if not sep or len(kind) != 1:
            raise SdpError(f"bad SDP line: {line!r}")
        current = sd.media[-1] if sd.media else None
        if kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(f"bad o= line: {value!r}")
            sd.origin = Origin(
                parts[0], _int(parts[1], "session id"), _int(parts[2], "session version"), parts[5]
            )
            seen_origin = True
        elif kind == "s":
            sd.session_name = value
        elif kind == "c":
            if current is None:
                sd.connection = _parse_connection(value)
            else:
                current.connection = _parse_connection(value)
        elif kind == "m":
            sd.media.append(_parse_media(value))
            media_directions.append(None)
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            parsed_value = attr_value if ":" in value else None
            direction = _DIRECTION_BY_NAME.get(name)
            if direction is not None:
                if current is None:
                    session_direction = direction
                else:
                    media_directions[-1] = direction
            elif current is None:
                sd.attributes.append((name, parsed_value))
            else:
                _apply_media_attribute(current, name, parsed_value)
        # Other line types (b, i, u, e, p, t, r, z, k) change nothing we act on.
    if not seen_origin:
        raise SdpError("SDP has no o= line")
    for media, media_direction in zip(sd.media, media_directions, strict=True):
        media.direction = media_direction or session_direction or "sendrecv"
    return sd


# --------------------------------------------------------------------------- offer/answer


class Negotiation(NamedTuple):
    """The outcome of offer/answer for the audio stream.

    ``codec`` carries the payload type the peer uses for it (which can be dynamic);
    ``remote`` is where the SDP says to send RTP (symmetric RTP may correct it).
    For :func:`negotiate`, ``answer`` is the answer we produced and its audio
    ``direction`` is ours; for :func:`parse_answer` it is the peer's answer, and our
    direction is :func:`reverse_direction` of its audio direction.
    """

    answer: SessionDescription
    codec: Codec
    remote: tuple[str, int]
    telephone_event_pt: int | None


def reverse_direction(direction: Direction) -> Direction:
    """The direction that complements one from the other side (RFC 3264 section 6.1)."""
    if direction == "sendonly":
        return "recvonly"
    if direction == "recvonly":
        return "sendonly"
    return direction


def _match_codec(media: MediaDescription, codecs: Sequence[Codec]) -> Codec | None:
    """The first of the offerer's formats that we support, with its payload type."""
    by_name = {codec.name.upper(): codec for codec in codecs}
    for pt in media.payload_types:
        rtpmap = media.encoding(pt)
        if rtpmap is None or rtpmap.channels != 1:
            continue
        codec = by_name.get(rtpmap.encoding.upper())
        if codec is not None and rtpmap.clock_rate == codec.clock_rate:
            return codec if codec.payload_type == pt else dataclasses.replace(codec, payload_type=pt)
    return None


def _telephone_event_pt(media: MediaDescription, clock_rate: int) -> int | None:
    # Linphone offers telephone-event at several rates; only ours shares the audio clock.
    for pt in media.payload_types:
        rtpmap = media.encoding(pt)
        if rtpmap and rtpmap.encoding.lower() == TELEPHONE_EVENT and rtpmap.clock_rate == clock_rate:
            return pt
    return None


def _remote_address(sd: SessionDescription, media: MediaDescription) -> tuple[str, int]:
    address = sd.connection_for(media)
    if address is None:
        raise SdpError("audio stream has no connection address")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"connection address {address!r} is not an IP address") from None
    return address, media.port


def _audio_media(
    port: int,
    codecs: Sequence[Codec],
    telephone_event_pt: int | None,
    direction: Direction,
    proto: str = "RTP/AVP",
) -> MediaDescription:
    # We always send 20 ms frames, so that is also what we ask to receive.
    media = MediaDescription("audio", port, proto, [], ptime=20, direction=direction)
    for codec in codecs:
        media.formats.append(str(codec.payload_type))
        media.rtpmap[codec.payload_type] = RtpMap(codec.name, codec.clock_rate)
    if telephone_event_pt is not None:
        media.formats.append(str(telephone_event_pt))
        media.rtpmap[telephone_event_pt] = RtpMap(TELEPHONE_EVENT, codecs[0].clock_rate)
        media.fmtp[telephone_event_pt] = TELEPHONE_EVENT_FMTP
    return media


def _new_session_id() -> int:
    # 62 bits: random as RFC 4566 suggests, yet fits a signed 64-bit column.
    return secrets.randbits(62)


def build_offer(
    address: str,
    port: int,
    session_id: int | None = None,
    version: int = 1,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephone_event_pt: int | None = 101,
    *,
    direction: Direction = "sendrecv",
    session_name: str = "voipbin",
) -> SessionDescription:
    """An offer for one audio stream listing ``codecs`` in order of preference."""
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    media = _audio_media(port, codecs, telephone_event_pt, direction)
    origin = Origin("-", _new_session_id() if session_id is None else session_id, version, address)
    return SessionDescription(origin, session_name, address, [media])


def negotiate(
    offer: SessionDescription,
    address: str,
    port: int,
    session_id: int | None = None,
    version: int = 1,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    *,
    session_name: str = "voipbin",
) -> Negotiation:
    """Answer an offer: accept the first audio stream with a codec in common.

    The codec is the first one *in the offer's order* that we support (the offerer
    states its preference; RFC 3264 section 6.1). Every other m-line is answered
    with port 0, since an answer must mirror the offer's streams one for one.
    """
    accepted: tuple[MediaDescription, Codec, int | None] | None = None
    answer_media: list[MediaDescription] = []
    for media in offer.media:
        codec = None
        if accepted is None and media.media == "audio" and media.port != 0 and media.proto in RTP_PROFILES:
            codec = _match_codec(media, codecs)
        if codec is None:
            answer_media.append(MediaDescription(media.media, 0, media.proto, list(media.formats) or ["0"]))
            continue
        # The offerer's payload type for events is the one it will send and expect.
        te_pt = _telephone_event_pt(media, codec.clock_rate)
        accepted = (media, codec, te_pt)
        answer_media.append(
            _audio_media(port, [codec], te_pt, reverse_direction(media.direction), media.proto)
        )
    if accepted is None:
        raise SdpError("the offer has no active audio stream with a codec in common")
    media, codec, te_pt = accepted
    remote = _remote_address(offer, media)
    origin = Origin("-", _new_session_id() if session_id is None else session_id, version, address)
    return Negotiation(SessionDescription(origin, session_name, address, answer_media), codec, remote, te_pt)


def parse_answer(answer: SessionDescription, offer: SessionDescription) -> Negotiation:
    """Check the answer to our ``offer`` and read what was agreed for the audio stream."""
    if len(answer.media) != len(offer.media):
        raise SdpError("the answer does not have one m-line per offered stream")
    for offered, answered in zip(offer.media, answer.media, strict=True):
        if offered.media != "audio" or offered.port == 0:
            continue
        if answered.port == 0:
            raise SdpError("the answer rejected the audio stream")
        # Only codecs we offered count, matched by name at the answerer's payload type.
        offered_codecs = [
            codec
            for pt in offered.payload_types
            if (rtpmap := offered.encoding(pt)) is not None
            and (codec := CODECS_BY_NAME.get(rtpmap.encoding.upper())) is not None
        ]
        codec = _match_codec(answered, offered_codecs)
        if codec is None:
            raise SdpError("the answer chose no codec that we offered")
        te_pt = None
        if _telephone_event_pt(offered, codec.clock_rate) is not None:
            te_pt = _telephone_event_pt(answered, codec.clock_rate)
        return Negotiation(answer, codec, _remote_address(answer, answered), te_pt)
    raise SdpError("the offer has no active audio stream")
