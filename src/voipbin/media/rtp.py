"""RTP and RTCP wire formats (RFC 3550) and receiver statistics, without any I/O.

The parsers sit directly behind a UDP socket and see whatever the network sends, so
they raise :class:`RtpError` (a ``ValueError``) and nothing else, whatever the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias

RTP_VERSION: Final = 2
RTP_HEADER_LENGTH: Final = 12
RTP_SEQ_MOD: Final = 1 << 16

RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
RTCP_APP: Final = 204

# RFC 3550 A.1: a forward jump smaller than this is loss; a backward step smaller
# than MAX_MISORDER is reordering; anything else is a suspected restart of the source.
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_EPOCH_OFFSET: Final = 2_208_988_800


class RtpError(ValueError):
    """Malformed RTP or RTCP data, or a field that does not fit its wire width."""


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a port carrying both (RFC 5761 section 4).

    An RTCP packet type (SR 200 .. APP 204, plus the feedback/XR types up to 223)
    lands where RTP keeps marker + payload type 64-95, a range RTP must not use
    when muxed, so the second octet alone decides.
    """
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit RTP timestamps."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def _check(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise RtpError(f"{name} {value!r} does not fit in {bits} bits")


def _pack(fmt: str, *values: int) -> bytes:
    try:
        return struct.pack(fmt, *values)
    except struct.error as exc:
        raise RtpError(str(exc)) from None


@dataclass
class RtpPacket:
    """One RTP packet (RFC 3550 section 5.1); the version is always 2.

    ``extension`` keeps the raw header-extension words (``None`` when the X bit is
    clear) so a packet relays unchanged; ``padding_size`` counts the padding octets
    including the final count octet (0 when the P bit is clear).
    """

    payload_type: int = 0
    marker: bool = False
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    extension_profile: int = 0
    extension: bytes | None = None
    padding_size: int = 0

    @property
    def padding(self) -> bool:
        return self.padding_size > 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        data = bytes(data)
        if len(data) < RTP_HEADER_LENGTH:
            raise RtpError("RTP packet shorter than its fixed header")
        first, second, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6} is not 2")
        csrc_count = first & 0x0F
        pos = RTP_HEADER_LENGTH + 4 * csrc_count
        if len(data) < pos:
            raise RtpError("RTP packet truncated in its CSRC list")
        csrc = list(struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_LENGTH))

        extension_profile = 0
        extension: bytes | None = None
        if first & 0x10:
            if len(data) < pos + 4:
                raise RtpError("RTP packet truncated in its header extension")
            extension_profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if len(data) < pos + 4 * words:
                raise RtpError("RTP header extension longer than the packet")
            extension = data[pos : pos + 4 * words]
            pos += 4 * words

        end = len(data)
        padding_size = 0
        if first & 0x20:
            # The count includes itself, so 0 is impossible; it may not eat the header.
            padding_size = data[-1]
            if padding_size == 0 or padding_size > end - pos:
                raise RtpError(f"RTP padding count {padding_size} is invalid")
            end -= padding_size

        return cls(
            payload_type=second & 0x7F,
            marker=bool(second & 0x80),
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=data[pos:end],
            csrc=csrc,
            extension_profile=extension_profile,
            extension=extension,
            padding_size=padding_size,
        )

    def serialize(self) -> bytes:
        _check("payload_type", self.payload_type, 7)
        _check("sequence_number", self.sequence_number, 16)
        _check("timestamp", self.timestamp, 32)
        _check("ssrc", self.ssrc, 32)
        _check("padding_size", self.padding_size, 8)
        if len(self.csrc) > 15:
            raise RtpError("an RTP packet carries at most 15 CSRCs")
        for source in self.csrc:
            _check("csrc", source, 32)

        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding_size:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            struct.pack("!BBHII", first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            words, rest = divmod(len(self.extension), 4)
            if rest or words > 0xFFFF:
                raise RtpError("RTP header extension must be whole 32-bit words, at most 65535")
            _check("extension_profile", self.extension_profile, 16)
            parts.append(struct.pack("!HH", self.extension_profile, words))
            parts.append(bytes(self.extension))
        parts.append(bytes(self.payload))
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes([self.padding_size]))
        return b"".join(parts)


# --------------------------------------------------------------------------- RTCP


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time."""
    return round((unix_time + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR value an RR echoes back."""
    return (ntp >> 16) & 0xFFFF_FFFF


@dataclass
class RtcpReportBlock:
    """Reception report about one source, as carried in SR and RR (RFC 3550 6.4.1).

    ``packets_lost`` is signed (duplicates can make it negative); ``jitter`` is in
    timestamp units; ``lsr``/``dlsr`` are NTP middle-32 and 1/65536 s respectively.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    LENGTH: ClassVar[int] = 24

    def serialize(self) -> bytes:
        _check("fraction_lost", self.fraction_lost, 8)
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise RtpError(f"packets_lost {self.packets_lost} does not fit in 24 bits")
        lost_word = (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF)
        return _pack(
            "!IIIIII",
            self.ssrc,
            lost_word,
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> RtcpReportBlock:
        if len(data) < offset + cls.LENGTH:
            raise RtpError("RTCP report block truncated")
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass
class RtcpSenderInfo:
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass
class RtcpSrPacket:
    ssrc: int
    sender_info: RtcpSenderInfo
    reports: list[RtcpReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        info = self.sender_info
        body = _pack(
            "!IQIII",
            self.ssrc,
            info.ntp_timestamp,
            info.rtp_timestamp,
            info.packet_count,
            info.octet_count,
        )
        body += b"".join(report.serialize() for report in self.reports)
        return _rtcp_header(RTCP_SR, len(self.reports), body)


@dataclass
class RtcpRrPacket:
    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _pack("!I", self.ssrc) + b"".join(report.serialize() for report in self.reports)
        return _rtcp_header(RTCP_RR, len(self.reports), body)


@dataclass
class RtcpByePacket:
    sources: list[int]
    reason: str | None = None

    def serialize(self) -> bytes:
        body = b"".join(_pack("!I", source) for source in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            if len(text) > 255:
                raise RtpError("BYE reason longer than 255 octets")
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), body)


RtcpPacket: TypeAlias = RtcpSrPacket | RtcpRrPacket | RtcpByePacket


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    if count > 31:
        raise RtpError("an RTCP packet holds at most 31 items")
    # The length field counts 32-bit words minus one, header included.
    return _pack("!BBH", (RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its SR, RR and BYE parts.

    SDES, APP and feedback packets are checked for framing and skipped: we only
    need the report blocks and the BYE.
    """
    data = bytes(data)
    packets: list[RtcpPacket] = []
    pos = 0
    if not data:
        raise RtpError("empty RTCP packet")
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpError("RTCP packet truncated in its header")
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {first >> 6} is not 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtpError("RTCP length field runs past the datagram")
        count = first & 0x1F
        body = data[pos + 4 : end]
        if first & 0x20:
            pad = body[-1] if body else 0
            if pad == 0 or pad > len(body):
                raise RtpError(f"RTCP padding count {pad} is invalid")
            body = body[: len(body) - pad]
        pos = end

        if packet_type == RTCP_SR:
            if len(body) < 24 + RtcpReportBlock.LENGTH * count:
                raise RtpError("RTCP SR shorter than its report count")
            ssrc, ntp, rtp_ts, packet_count, octet_count = struct.unpack_from("!IQIII", body)
            reports = [RtcpReportBlock.parse(body, 24 + 24 * i) for i in range(count)]
            info = RtcpSenderInfo(ntp, rtp_ts, packet_count, octet_count)
            packets.append(RtcpSrPacket(ssrc, info, reports))
        elif packet_type == RTCP_RR:
            if len(body) < 4 + RtcpReportBlock.LENGTH * count:
                raise RtpError("RTCP RR shorter than its report count")
            (ssrc,) = struct.unpack_from("!I", body)
            reports = [RtcpReportBlock.parse(body, 4 + 24 * i) for i in range(count)]
            packets.append(RtcpRrPacket(ssrc, reports))
        elif packet_type == RTCP_BYE:
            if len(body) < 4 * count:
                raise RtpError("RTCP BYE shorter than its source count")
            sources = list(struct.unpack_from(f"!{count}I", body))
            reason: str | None = None
            rest = body[4 * count :]
            if rest:
                if 1 + rest[0] > len(rest):
                    raise RtpError("RTCP BYE reason runs past the packet")
                reason = rest[1 : 1 + rest[0]].decode("utf-8", errors="replace")
            packets.append(RtcpByePacket(sources, reason))
    return packets


def build_sender_report(
    ssrc: int,
    ntp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    report: RtcpReportBlock | None = None,
) -> bytes:
    """An SR, with the report block about the peer's stream when we receive one."""
    info = RtcpSenderInfo(ntp, rtp_timestamp, packet_count & 0xFFFF_FFFF, octet_count & 0xFFFF_FFFF)
    return RtcpSrPacket(ssrc, info, [report] if report is not None else []).serialize()


def build_receiver_report(ssrc: int, report: RtcpReportBlock | None = None) -> bytes:
    """An RR: what a party that has sent nothing since the last report emits."""
    return RtcpRrPacket(ssrc, [report] if report is not None else []).serialize()


def build_bye(ssrc: int, reason: str | None = None) -> bytes:
    return RtcpByePacket([ssrc], reason).serialize()


# --------------------------------------------------------------------------- statistics


class RtpReceiverStats:
    """Reception statistics for one source: RFC 3550 A.1 sequence tracking, A.3 loss, A.8 jitter.

    ``add`` takes the arrival time already converted to the stream's timestamp units
    (e.g. seconds * 8000), so the caller owns the clock. Source probation from A.1 is
    left out: the SSRC comes from signalling, not from guessing at a shared port.
    """

    def __init__(self) -> None:
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq: int | None = None
        self.received = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self._expected_prior = 0
        self._received_prior = 0

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = None
        self.cycles = 0
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = None
        self.jitter = 0.0

    def add(self, packet: RtpPacket, arrival: float) -> bool:
        """Account for one packet; False when it was set aside as a suspected restart."""
        seq = packet.sequence_number
        if self.base_seq is None:
            self._init_seq(seq)
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
            elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
                # A huge jump: only believe it when the next packet follows on from it.
                if seq == self.bad_seq:
                    self._init_seq(seq)
                else:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return False
            # else: duplicate or reordered packet, counted but not moving max_seq.
        self.received += 1

        transit = arrival - packet.timestamp
        if self._transit is not None:
            # Wrap the difference so a timestamp rolling over 2**32 is not a jump.
            d = abs(((transit - self._transit + 0x8000_0000) % (1 << 32)) - 0x8000_0000)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit
        return True

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if self.base_seq is None:
            return 0
        return self.extended_max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def report_block(self, ssrc: int, lsr: int = 0, dlsr: int = 0) -> RtcpReportBlock:
        """Report block for an SR/RR; the fraction lost covers the time since the last call."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return RtcpReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=max(-0x800000, min(0x7FFFFF, self.lost)),
            highest_sequence=self.extended_max_seq & 0xFFFF_FFFF,
            jitter=int(self.jitter) & 0xFFFF_FFFF,
            lsr=lsr,
            dlsr=dlsr,
        )
