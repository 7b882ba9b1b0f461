"""RTP/RTCP wire format and RFC 3550 receiver statistics."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipbin.media.rtp import (
    RtcpByePacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpError,
    RtpPacket,
    RtpReceiverStats,
    build_bye,
    build_receiver_report,
    build_sender_report,
    is_rtcp,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
    seq_diff,
    ts_diff,
)

BOUNDED = settings(max_examples=200, deadline=None)

# ---------------------------------------------------------------- RTP known answers

PLAIN = bytes.fromhex("80001234 deadbeef 12345678") + b"ab"


def test_parse_plain_header() -> None:
    packet = RtpPacket.parse(PLAIN)
    assert packet == RtpPacket(
        payload_type=0,
        marker=False,
        sequence_number=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x12345678,
        payload=b"ab",
    )
    assert not packet.padding
    assert packet.serialize() == PLAIN


def test_marker_payload_type_and_csrcs() -> None:
    data = bytes.fromhex("8288ffff 00000001 cafebabe 00000011 00000022") + b"\x01\x02\x03"
    packet = RtpPacket.parse(data)
    assert packet.marker is True
    assert packet.payload_type == 8
    assert packet.sequence_number == 0xFFFF
    assert packet.timestamp == 1
    assert packet.csrc == [0x11, 0x22]
    assert packet.payload == b"\x01\x02\x03"
    assert packet.serialize() == data


def test_header_extension_is_skipped_and_kept() -> None:
    # X bit, one-byte-header profile 0xBEDE, one word of extension data.
    data = bytes.fromhex("90000001 00000002 00000003 bede0001 10ff0000") + b"payload"
    packet = RtpPacket.parse(data)
    assert packet.extension_profile == 0xBEDE
    assert packet.extension == bytes.fromhex("10ff0000")
    assert packet.payload == b"payload"
    assert packet.serialize() == data


def test_empty_header_extension() -> None:
    data = bytes.fromhex("90000001 00000002 00000003 12340000") + b"x"
    packet = RtpPacket.parse(data)
    assert (packet.extension_profile, packet.extension, packet.payload) == (0x1234, b"", b"x")
    assert packet.serialize() == data


def test_padding_is_stripped() -> None:
    data = bytes.fromhex("a0000001 00000002 00000003") + b"abcd" + b"\x00\x00\x03"
    packet = RtpPacket.parse(data)
    assert packet.payload == b"abcd"
    assert packet.padding_size == 3
    assert packet.padding
    assert packet.serialize() == data


def test_everything_at_once() -> None:
    packet = RtpPacket(
        payload_type=101,
        marker=True,
        sequence_number=7,
        timestamp=0xFFFFFFFF,
        ssrc=0xA1B2C3D4,
        payload=b"\x05\x8a\x03\x20",
        csrc=[1],
        extension_profile=0x1000,
        extension=b"\x00" * 8,
        padding_size=4,
    )
    data = packet.serialize()
    assert data[:2] == bytes([0x80 | 0x20 | 0x10 | 1, 0x80 | 101])
    assert len(data) == 12 + 4 + 4 + 8 + 4 + 4
    assert data[-1] == 4
    assert RtpPacket.parse(data) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("80000001 00000002 000000"),  # 11 bytes
        bytes.fromhex("40000001 00000002 00000003"),  # version 1
        bytes.fromhex("c0000001 00000002 00000003"),  # version 3
        bytes.fromhex("82000001 00000002 00000003") + b"\x00" * 7,  # 2 CSRCs, 7 bytes
        bytes.fromhex("90000001 00000002 00000003") + b"\xbe\xde",  # extension header cut
        bytes.fromhex("90000001 00000002 00000003 bede0002") + b"\x00" * 7,  # extension cut
        bytes.fromhex("a0000001 00000002 00000003") + b"ab\x00",  # padding count 0
        bytes.fromhex("a0000001 00000002 00000003") + b"ab\x04",  # padding past payload
    ],
)
def test_malformed_rtp_raises_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_padding_may_consume_whole_payload() -> None:
    packet = RtpPacket.parse(bytes.fromhex("a0000001 00000002 00000003") + b"\x00\x02")
    assert packet.payload == b""
    assert packet.padding_size == 2


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(payload_type=128),
        RtpPacket(sequence_number=65536),
        RtpPacket(timestamp=-1),
        RtpPacket(ssrc=1 << 32),
        RtpPacket(csrc=list(range(16))),
        RtpPacket(extension=b"abc"),
        RtpPacket(padding_size=256),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet: RtpPacket) -> None:
    with pytest.raises(RtpError):
        packet.serialize()


def test_rtp_error_is_value_error() -> None:
    assert issubclass(RtpError, ValueError)


def test_is_rtcp_demux() -> None:
    assert is_rtcp(build_receiver_report(1))
    assert is_rtcp(bytes([0x80, 200]))
    assert is_rtcp(bytes([0x80, 204]))
    assert not is_rtcp(PLAIN)
    assert not is_rtcp(RtpPacket(payload_type=8, marker=True).serialize())
    assert not is_rtcp(RtpPacket(payload_type=127, marker=True).serialize())
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"\x00\xc8")  # not version 2 (e.g. STUN would be 0x00/0x01)


def test_serial_number_arithmetic() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 90) == 10
    assert ts_diff(5, 0xFFFFFFFB) == 10
    assert ts_diff(0xFFFFFFFB, 5) == -10


# ---------------------------------------------------------------- RTP property tests


@BOUNDED
@given(st.binary(max_size=120))
def test_parse_arbitrary_bytes_raises_only_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)


@BOUNDED
@given(st.integers(0, 63), st.binary(max_size=120))
def test_parse_version2_garbage_raises_only_rtp_error(flags: int, rest: bytes) -> None:
    # Force version 2 so the fuzzing reaches CSRC, extension and padding handling.
    data = bytes([0x80 | flags]) + rest
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    # Everything but the padding filler (which we write as zeros) survives re-serializing.
    keep = len(data) - packet.padding_size
    again = packet.serialize()
    assert len(again) == len(data)
    assert again[:keep] == data[:keep]


@BOUNDED
@given(st.binary(max_size=120))
def test_parse_rtcp_arbitrary_bytes_raises_only_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        parse_rtcp(data)


@BOUNDED
@given(st.integers(0, 63), st.integers(200, 204), st.integers(0, 12), st.binary(max_size=120))
def test_parse_rtcp_plausible_garbage_raises_only_rtp_error(
    flags: int, kind: int, words: int, rest: bytes
) -> None:
    # A valid-looking first header steers the fuzzing into the per-type parsers.
    data = bytes([0x80 | flags, kind]) + words.to_bytes(2, "big") + rest
    with contextlib.suppress(RtpError):
        for packet in parse_rtcp(data):
            assert isinstance(packet, (RtcpSrPacket, RtcpRrPacket, RtcpByePacket))


@st.composite
def rtp_packets(draw: st.DrawFn) -> RtpPacket:
    extension = draw(st.none() | st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4)))
    return RtpPacket(
        payload_type=draw(st.integers(0, 127)),
        marker=draw(st.booleans()),
        sequence_number=draw(st.integers(0, 0xFFFF)),
        timestamp=draw(st.integers(0, 0xFFFFFFFF)),
        ssrc=draw(st.integers(0, 0xFFFFFFFF)),
        payload=draw(st.binary(max_size=64)),
        csrc=draw(st.lists(st.integers(0, 0xFFFFFFFF), max_size=15)),
        extension_profile=0 if extension is None else draw(st.integers(0, 0xFFFF)),
        extension=extension,
        padding_size=draw(st.integers(0, 255)),
    )


@BOUNDED
@given(rtp_packets())
def test_serialize_parse_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(data).serialize() == data


# ---------------------------------------------------------------- RTCP


def test_ntp_helpers() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(1.5) == ((2_208_988_800 + 1) << 32) | (1 << 31)
    assert ntp_middle32(0x1122334455667788) == 0x33445566


def test_receiver_report_known_bytes() -> None:
    block = RtcpReportBlock(
        ssrc=0x01020304,
        fraction_lost=0x40,
        packets_lost=5,
        highest_sequence=0x00011000,
        jitter=17,
        lsr=0xAABBCCDD,
        dlsr=0x10000,
    )
    data = build_receiver_report(0xCAFEBABE, block)
    assert data == bytes.fromhex("81c90007 cafebabe 01020304 40000005 00011000 00000011 aabbccdd 00010000")
    assert parse_rtcp(data) == [RtcpRrPacket(0xCAFEBABE, [block])]


def test_negative_cumulative_loss_round_trips() -> None:
    block = RtcpReportBlock(ssrc=1, packets_lost=-3)
    data = block.serialize()
    assert data[4:8] == bytes.fromhex("00fffffd")
    assert RtcpReportBlock.parse(data) == block
    with pytest.raises(RtpError):
        RtcpReportBlock(ssrc=1, packets_lost=1 << 23).serialize()


def test_sender_report_round_trip() -> None:
    block = RtcpReportBlock(
        ssrc=9, fraction_lost=255, packets_lost=0x7FFFFF, highest_sequence=70000, jitter=3, lsr=1, dlsr=2
    )
    ntp = ntp_timestamp(1_700_000_000.25)
    data = build_sender_report(0x11111111, ntp, 123456, 50, 8000, block)
    assert data[:4] == bytes.fromhex("81c8000c")  # RC=1, PT=200, 13 words
    assert len(data) == 52
    (packet,) = parse_rtcp(data)
    assert packet == RtcpSrPacket(0x11111111, RtcpSenderInfo(ntp, 123456, 50, 8000), [block])
    assert packet.serialize() == data


def test_reports_without_blocks() -> None:
    assert parse_rtcp(build_receiver_report(5)) == [RtcpRrPacket(5, [])]
    (sr,) = parse_rtcp(build_sender_report(5, 1, 2, 3, 4))
    assert isinstance(sr, RtcpSrPacket) and sr.reports == []


def test_compound_sr_sdes_bye() -> None:
    sr = build_sender_report(7, ntp_timestamp(10.0), 160, 1, 160, RtcpReportBlock(ssrc=8, fraction_lost=12))
    # SDES with one chunk: SSRC 7, CNAME "ab", end of list, padded to a word.
    sdes = bytes.fromhex("81ca0003 00000007 01026162 00000000")
    bye = build_bye(7, "hangup")
    packets = parse_rtcp(sr + sdes + bye)
    assert [type(p) for p in packets] == [RtcpSrPacket, RtcpByePacket]
    assert packets[0].reports[0].fraction_lost == 12  # type: ignore[union-attr]
    assert packets[1] == RtcpByePacket([7], "hangup")


def test_bye_without_reason_and_several_sources() -> None:
    data = RtcpByePacket([1, 2]).serialize()
    assert data == bytes.fromhex("82cb0002 00000001 00000002")
    assert parse_rtcp(data) == [RtcpByePacket([1, 2], None)]


def test_rtcp_padding_is_honoured() -> None:
    rr = bytearray(build_receiver_report(5) + b"\x00\x00\x00\x04")
    rr[0] |= 0x20
    rr[3] += 1  # one more word
    assert parse_rtcp(bytes(rr)) == [RtcpRrPacket(5, [])]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",  # header cut
        bytes.fromhex("40c9000100000005"),  # version 1
        bytes.fromhex("80c9000200000005"),  # length runs past the datagram
        bytes.fromhex("81c9000100000005"),  # RC=1 but no block
        bytes.fromhex("80c8000100000005"),  # SR without sender info
        bytes.fromhex("82cb000100000001"),  # BYE count 2, one source
        bytes.fromhex("81cb0002 00000001 05616200"),  # BYE reason too long
        bytes.fromhex("a0c9000100000000"),  # padding count 0
    ],
)
def test_malformed_rtcp_raises_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)


# ---------------------------------------------------------------- receiver statistics


def _feed(
    stats: RtpReceiverStats,
    seqs: list[int],
    timestamps: list[int] | None = None,
    arrivals: list[int] | None = None,
) -> None:
    for i, seq in enumerate(seqs):
        ts = timestamps[i] if timestamps else 160 * i
        arrival = arrivals[i] if arrivals else 160 * i
        stats.add(RtpPacket(sequence_number=seq, timestamp=ts), arrival)


def test_jitter_matches_hand_computed_example() -> None:
    # Transit times 0, 10, -10, 20 -> D = 10, 20, 30.
    # J1 = 10/16 = 0.625; J2 = 0.625 + (20 - 0.625)/16 = 1.8359375;
    # J3 = 1.8359375 + (30 - 1.8359375)/16 = 3.59619140625.
    stats = RtpReceiverStats()
    _feed(stats, [1, 2, 3, 4], [0, 160, 320, 480], [1000, 1170, 1310, 1500])
    assert stats.jitter == pytest.approx(3.59619140625)
    assert stats.report_block(1).jitter == 3


def test_jitter_is_zero_for_perfect_pacing_across_timestamp_wrap() -> None:
    stats = RtpReceiverStats()
    start = 0xFFFFFFFF - 320
    _feed(
        stats,
        [1, 2, 3, 4, 5],
        [(start + 160 * i) & 0xFFFFFFFF for i in range(5)],
        [50 + 160 * i for i in range(5)],
    )
    assert stats.jitter == 0


def test_sequence_wraparound_counts_cycles() -> None:
    stats = RtpReceiverStats()
    _feed(stats, [65533, 65534, 65535, 0, 1, 2])
    assert stats.cycles == 65536
    assert stats.extended_max_seq == 65536 + 2
    assert stats.expected == 6
    assert stats.lost == 0
    assert stats.report_block(1).highest_sequence == 65538


def test_loss_and_fraction_lost_across_wrap() -> None:
    stats = RtpReceiverStats()
    _feed(stats, [65534, 65535, 1, 2])  # 0 is missing
    assert (stats.expected, stats.received, stats.lost) == (5, 4, 1)
    block = stats.report_block(0xABCD)
    assert block.ssrc == 0xABCD
    assert block.packets_lost == 1
    assert block.fraction_lost == 256 // 5  # 1 of 5 in this interval
    # The next interval has no loss: the fraction resets, the cumulative count stays.
    _feed(stats, [3, 4])
    block = stats.report_block(0xABCD)
    assert (block.fraction_lost, block.packets_lost) == (0, 1)


def test_reordering_and_duplicates() -> None:
    stats = RtpReceiverStats()
    _feed(stats, [10, 12, 11, 12])
    assert stats.max_seq == 12
    assert stats.cycles == 0
    # A.1 counts duplicates as received, so loss can go negative.
    assert (stats.expected, stats.received, stats.lost) == (3, 4, -1)
    assert stats.report_block(1).fraction_lost == 0


def test_huge_jump_is_believed_only_when_confirmed() -> None:
    stats = RtpReceiverStats()
    _feed(stats, [100, 101])
    assert stats.add(RtpPacket(sequence_number=40000), 0) is False
    assert stats.max_seq == 101
    assert stats.add(RtpPacket(sequence_number=40001), 0) is True  # the source restarted
    assert (stats.base_seq, stats.max_seq, stats.received) == (40001, 40001, 1)


def test_report_block_clamps_cumulative_loss() -> None:
    stats = RtpReceiverStats()
    stats.add(RtpPacket(sequence_number=0), 0)
    stats.cycles = 1 << 30  # pretend a very long, very lossy call
    assert stats.report_block(1).packets_lost == 0x7FFFFF
    block = stats.report_block(1)
    assert RtcpReportBlock.parse(block.serialize()) == block
