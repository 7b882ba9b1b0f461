"""The receiving half of an endpoint, driven by datagrams and explicit times: no sockets, no clock."""

from __future__ import annotations

import numpy as np
import pytest

from voipbin.media.dtmf import DtmfSender
from voipbin.media.frames import SILENCE_FRAME
from voipbin.media.g711 import PCMU
from voipbin.media.receiver import Address, RtpReceiver
from voipbin.media.rtp import (
    RtcpReportBlock,
    RtpPacket,
    build_bye,
    build_receiver_report,
    build_sender_report,
    ntp_middle32,
)

SDP: Address = ("192.0.2.10", 4000)
SDP_RTCP: Address = ("192.0.2.10", 4001)
PHONE: Address = ("198.51.100.7", 31000)  # where the phone really sends from, behind its NAT
PHONE_RTCP: Address = ("198.51.100.7", 31001)
STRANGER: Address = ("203.0.113.5", 5000)
PEER_SSRC = 0xAAA


def pcm(value: int) -> bytes:
    return np.full(160, value, dtype="<i2").tobytes()


def heard(value: int) -> bytes:
    """What a PCMU frame of ``value`` decodes to."""
    return PCMU.decode(PCMU.encode(pcm(value)))


def audio(seq: int, *, ssrc: int = PEER_SSRC, value: int = 1000, payload_type: int = 0) -> bytes:
    return RtpPacket(payload_type, False, seq, 160 * seq, ssrc, PCMU.encode(pcm(value))).serialize()


def events(digit: str, first_seq: int, timestamp: int, ssrc: int = PEER_SSRC) -> list[bytes]:
    """The RFC 4733 packet train of one 100 ms key press."""
    return [
        RtpPacket(101, p.marker, first_seq + i, p.timestamp, ssrc, p.payload).serialize()
        for i, p in enumerate(DtmfSender().packets(digit, 100, timestamp))
    ]


def receiver(now: float = 0.0) -> RtpReceiver:
    r = RtpReceiver()
    r.configure(SDP, SDP_RTCP, PCMU, 101, now)
    return r


# ---------------------------------------------------------------- latching and sources


def test_nothing_is_accepted_before_negotiation() -> None:
    r = RtpReceiver()
    r.receive_rtp(audio(1), PHONE, 0.0)
    assert (r.unexpected, r.packets_received, r.latched, r.remote) == (1, 0, False, None)


def test_latches_onto_the_real_source_and_follows_only_its_stream() -> None:
    r = receiver()
    assert (r.remote, r.rtcp_remote, r.latched) == (SDP, SDP_RTCP, False)

    r.receive_rtp(audio(1, payload_type=18), PHONE, 0.01)  # not a negotiated payload type
    assert not r.latched and r.unexpected == 1

    r.receive_rtp(audio(2), PHONE, 0.02)
    assert r.latched and r.remote == PHONE and r.peer_ssrc == PEER_SSRC

    r.receive_rtp(audio(9, ssrc=0xDEF), STRANGER, 0.03)  # someone else's stream at our port
    assert r.remote == PHONE and r.unexpected == 2

    rebound = (PHONE[0], PHONE[1] + 2)
    r.receive_rtp(audio(3), rebound, 0.04)  # the same stream from a new port: its NAT rebound
    assert r.remote == rebound
    assert (r.packets_received, r.bytes_received) == (2, 320)


def test_renegotiation_keeps_the_latch_unless_the_address_changes() -> None:
    r = receiver()
    r.receive_rtp(audio(1), PHONE, 0.0)
    r.configure(SDP, SDP_RTCP, PCMU, 101, 1.0)  # a re-INVITE repeating the old SDP
    assert r.latched and r.remote == PHONE

    moved: Address = ("192.0.2.20", 6000)
    r.configure(moved, ("192.0.2.20", 6001), PCMU, 101, 2.0)
    assert not r.latched and r.remote == moved and r.rtcp_remote == ("192.0.2.20", 6001)


def test_a_new_ssrc_restarts_statistics_but_keeps_the_loss_so_far() -> None:
    r = receiver()
    for seq in (1, 2, 4):  # 3 lost
        r.receive_rtp(audio(seq), PHONE, 0.02 * seq)
    assert r.lost == 1

    # A PBX switches the stream it relays: new SSRC, new sequence space, same address.
    for seq in (500, 501, 504):  # 502 and 503 lost
        r.receive_rtp(audio(seq, ssrc=0xBBB), PHONE, 0.02 * seq)
    assert r.peer_ssrc == 0xBBB
    assert r.lost == 1 + 2  # a jump from 4 to 500 is a new source, not 495 lost packets
    block = r.report_block(20.0)
    assert block is not None and block.ssrc == 0xBBB and block.highest_sequence == 504


# ---------------------------------------------------------------- jitter buffer and loss


def test_playout_waits_for_the_jitter_delay_and_conceals_a_lost_packet() -> None:
    r = receiver()
    frames = []
    for k in range(14):
        now = 0.02 * k
        if k < 10 and k != 4:  # packet 4 never arrives
            r.receive_rtp(audio(k, value=100 * (k + 1)), PHONE, now - 0.005)
        frames.append(r.tick(now))

    # 60 ms of target delay, then the packets in order, silence where packet 4 belongs.
    expected = [SILENCE_FRAME] * 3 + [heard(100 * (k + 1)) if k != 4 else SILENCE_FRAME for k in range(10)]
    assert frames[:13] == expected
    assert frames[13] == SILENCE_FRAME  # nothing more arrived
    assert r.lost == 1 and r.playout.lost == 1


def test_taps_get_every_frame_silence_included() -> None:
    r = receiver()
    got: list[bytes] = []
    detach = r.taps.add(got.append)
    r.receive_rtp(audio(0, value=2000), PHONE, 0.0)
    for k in range(5):
        r.tick(0.02 * k)
    assert got == [SILENCE_FRAME] * 3 + [heard(2000), SILENCE_FRAME]
    detach()
    r.tick(0.2)
    assert len(got) == 5


def test_interarrival_jitter_from_arrival_times() -> None:
    r = receiver()
    for seq in range(5):
        r.receive_rtp(audio(seq), PHONE, 0.02 * seq)
    assert r.jitter_ms == pytest.approx(0.0, abs=1e-6)
    r.receive_rtp(audio(5), PHONE, 0.02 * 5 + 0.010)  # 10 ms late: D = 80 samples, J += D/16
    assert r.jitter_ms == pytest.approx(80 / 16 / 8, abs=1e-6)


def test_late_and_duplicate_packets_are_counted() -> None:
    r = receiver()
    for seq in (0, 1, 3):
        r.receive_rtp(audio(seq), PHONE, 0.02 * seq)
    r.receive_rtp(audio(1), PHONE, 0.065)  # a duplicate still in the buffer
    for k in range(3, 7):  # plays 0 and 1, conceals 2, plays 3
        r.tick(0.02 * k)
    r.receive_rtp(audio(2), PHONE, 0.13)  # its slot is gone: late
    r.receive_rtp(audio(3), PHONE, 0.13)  # played already: a duplicate
    assert (r.playout.duplicate, r.playout.late, r.playout.lost) == (2, 1, 1)


# ---------------------------------------------------------------- DTMF


def test_each_key_press_is_reported_once() -> None:
    r = receiver()
    digits: list[str] = []
    r.on_dtmf = digits.append
    for i, packet in enumerate(events("5", 10, 8000) + events("#", 30, 16000)):
        r.receive_rtp(packet, PHONE, 0.02 * i)
    assert digits == ["5", "#"]
    assert r.lost == 13  # 10..16 and 30..36 arrived, 17..29 never did


def test_event_timestamps_do_not_count_as_jitter() -> None:
    r = receiver()
    for seq in range(5):
        r.receive_rtp(audio(seq), PHONE, 0.02 * seq)
    # Every packet of the press repeats the timestamp 800 while the clock moves on.
    for i, packet in enumerate(events("1", 5, 800)):
        r.receive_rtp(packet, PHONE, 0.02 * (5 + i))
    assert r.jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert r.lost == 0


def test_a_new_source_may_repeat_the_last_event_timestamp() -> None:
    r = receiver()
    digits: list[str] = []
    r.on_dtmf = digits.append
    for packet in events("1", 1, 8000):
        r.receive_rtp(packet, PHONE, 0.1)
    for packet in events("2", 1, 8000, ssrc=0xBBB):
        r.receive_rtp(packet, PHONE, 0.2)
    assert digits == ["1", "2"]


def test_a_failing_dtmf_callback_does_not_stop_reception() -> None:
    r = receiver()

    def broken(digit: str) -> None:
        raise RuntimeError("consumer bug")

    r.on_dtmf = broken
    for packet in events("7", 1, 8000):
        r.receive_rtp(packet, PHONE, 0.1)
    r.receive_rtp(audio(9), PHONE, 0.2)
    assert r.packets_received == 8


# ---------------------------------------------------------------- RTCP


def peer_sr(ntp: int, report: RtcpReportBlock | None = None) -> bytes:
    return build_sender_report(PEER_SSRC, ntp, 1600, 10, 1600, report)


def test_malformed_rtcp_is_counted() -> None:
    r = receiver()
    assert r.receive_rtcp(b"\x81\xc8\x00\x40" + bytes(8), PHONE_RTCP, 0.0, latch=True) == []
    assert (r.malformed, r.rtcp_received) == (1, 0)


def test_rtcp_from_the_peer_latches_its_rtcp_address_and_returns_report_blocks() -> None:
    r = receiver()
    about_us = RtcpReportBlock(ssrc=0x1234, lsr=77, dlsr=5)
    # Before its RTP we do not know the peer's SSRC: counted, but trusted with nothing.
    assert r.receive_rtcp(peer_sr(1 << 40, about_us), PHONE_RTCP, 0.0, latch=True) == [about_us]
    assert r.rtcp_received == 1 and r.rtcp_remote == SDP_RTCP

    r.receive_rtp(audio(1), PHONE, 0.1)
    r.receive_rtcp(peer_sr(1 << 40), STRANGER, 0.2, latch=False)  # muxed on the RTP port
    assert r.rtcp_remote == SDP_RTCP
    r.receive_rtcp(peer_sr(1 << 40), PHONE_RTCP, 0.3, latch=True)
    assert r.rtcp_remote == PHONE_RTCP
    r.receive_rtcp(build_bye(PEER_SSRC), ("192.0.2.99", 9), 0.4, latch=True)  # BYE moves nothing
    assert r.rtcp_remote == PHONE_RTCP and r.rtcp_received == 4


def test_report_block_echoes_the_peers_last_sr() -> None:
    r = receiver()
    assert r.report_block(0.0) is None  # nothing received yet: nothing to report on
    for seq in (1, 2, 3, 5):
        r.receive_rtp(audio(seq), PHONE, 0.02 * seq)
    first = r.report_block(1.0)
    assert first is not None
    assert (first.ssrc, first.lsr, first.dlsr, first.packets_lost) == (PEER_SSRC, 0, 0, 1)
    assert first.fraction_lost == 256 // 5

    ntp = (3_900_000_000 << 32) | (1 << 31)
    r.receive_rtcp(peer_sr(ntp), PHONE_RTCP, 2.0, latch=True)
    second = r.report_block(2.5)
    assert second is not None
    assert second.lsr == ntp_middle32(ntp)
    assert second.dlsr == 65536 // 2  # half a second since that SR, in 1/65536 s
    assert second.fraction_lost == 0  # no new loss in this interval


# ---------------------------------------------------------------- liveness


def test_silent_for_counts_from_the_peers_last_packet() -> None:
    r = RtpReceiver()
    assert r.silent_for(50.0) == 0.0  # not negotiated: nothing to expect yet
    r.configure(SDP, SDP_RTCP, PCMU, 101, 100.0)
    assert r.silent_for(103.0) == 3.0
    assert r.silent_for(99.0) == 0.0

    r.receive_rtp(audio(1), PHONE, 104.0)
    assert r.silent_for(104.5) == 0.5
    r.receive_rtp(audio(1, ssrc=0xDEF), STRANGER, 106.0)  # a stranger is no sign of life
    r.receive_rtp(b"\x80", PHONE, 106.0)
    r.receive_rtcp(build_receiver_report(0xDEF), PHONE_RTCP, 106.0, latch=True)
    assert r.silent_for(107.0) == 3.0

    r.receive_rtcp(build_receiver_report(PEER_SSRC), PHONE_RTCP, 107.0, latch=True)  # RTCP alone keeps it alive
    assert r.silent_for(108.0) == 1.0
    r.configure(SDP, SDP_RTCP, PCMU, 101, 120.0)  # renegotiated: a fresh chance to be heard
    assert r.silent_for(121.0) == 1.0
