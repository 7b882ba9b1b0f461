"""The sending half of an endpoint, ticked by hand: every datagram it would send, exactly."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voipbin.media.dtmf import DtmfError, TelephoneEvent
from voipbin.media.frames import FRAME_BYTES, SILENCE_FRAME
from voipbin.media.g711 import PCMU
from voipbin.media.rtp import (
    RtcpByePacket,
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
    seq_diff,
    ts_diff,
)
from voipbin.media.sender import DTMF_GAP_FRAMES, RtpSender

WALL = 1_800_000_000.0  # a Unix time for NTP stamps


def pcm(value: int, frames: int = 1) -> bytes:
    return np.full(160 * frames, value, dtype="<i2").tobytes()


def sender(telephone_event_pt: int | None = 101, *, interval: float = 5.0) -> RtpSender:
    s = RtpSender(rtcp_interval=interval, rng=random.Random(7))
    s.configure(PCMU, telephone_event_pt, 0.0)
    return s


def ticks(s: RtpSender, count: int, *, transmit: bool = True) -> list[RtpPacket | None]:
    out = []
    for _ in range(count):
        datagram = s.tick(transmit=transmit)
        out.append(None if datagram is None else RtpPacket.parse(datagram))
    return out


def sent(s: RtpSender, count: int) -> list[RtpPacket]:
    packets = [p for p in ticks(s, count) if p is not None]
    assert len(packets) == count
    return packets


# ---------------------------------------------------------------- the stream


async def test_nothing_goes_out_before_negotiation() -> None:
    s = RtpSender(rng=random.Random(7))
    assert s.tick(transmit=True) is None
    assert s.packets_sent == 0 and not s.report_due(100.0)


async def test_comfort_silence_is_one_continuous_stream() -> None:
    s = sender()
    packets = sent(s, 4)
    assert [p.payload for p in packets] == [PCMU.silence()] * 4
    assert [p.marker for p in packets] == [True, False, False, False]
    assert {p.ssrc for p in packets} == {s.ssrc} and {p.payload_type for p in packets} == {0}
    for previous, packet in itertools.pairwise(packets):
        assert seq_diff(packet.sequence_number, previous.sequence_number) == 1
        assert ts_diff(packet.timestamp, previous.timestamp) == 160
    assert (s.packets_sent, s.octets_sent) == (4, 640)


async def test_a_seeded_sender_is_reproducible() -> None:
    assert sent(sender(), 3) == sent(sender(), 3)


async def test_prompts_play_back_to_back_then_silence() -> None:
    s = sender()
    heard: list[bytes] = []
    s.taps.add(heard.append)
    tail = pcm(1000)[:100]  # 50 samples: the last frame is padded with silence
    padded = tail.ljust(FRAME_BYTES, b"\0")
    first, second = s.play(pcm(4000, 2)), s.play(pcm(-4000) + tail)
    assert s.playing
    packets = sent(s, 5)
    one, two = PCMU.encode(pcm(4000)), PCMU.encode(pcm(-4000))
    assert [p.payload for p in packets] == [one, one, two, PCMU.encode(padded), PCMU.silence()]
    assert [p.marker for p in packets] == [True, False, True, False, False]  # each prompt starts a talkspurt
    assert (first.done.result(), second.done.result()) == ("finished", "finished")
    assert (first.frames_sent, second.frames_sent) == (2, 2)
    assert heard == [pcm(4000), pcm(4000), pcm(-4000), padded, SILENCE_FRAME]
    assert not s.playing
    with pytest.raises(ValueError):
        s.play(b"\x00")


async def test_cancel_takes_out_one_playback_only() -> None:
    s = sender()
    current, queued, last = s.play(pcm(1, 2)), s.play(pcm(2)), s.play(pcm(3))
    ticks(s, 1)
    s.cancel(queued)
    s.cancel(queued)  # not ours any more: nothing happens
    assert queued.done.result() == "stopped" and queued.frames_sent == 0
    assert [p.payload for p in sent(s, 2)] == [PCMU.encode(pcm(1)), PCMU.encode(pcm(3))]
    assert (current.done.result(), last.done.result()) == ("finished", "finished")

    playing = s.play(pcm(5, 10))
    ticks(s, 1)
    s.cancel(playing)  # the current one: the next tick is silence
    assert playing.done.result() == "stopped"
    assert sent(s, 1)[0].payload == PCMU.silence()


async def test_flush_keeps_the_current_playback_and_stop_ends_it() -> None:
    s = sender()
    current, queued = s.play(pcm(1, 10)), s.play(pcm(2, 10))
    ticks(s, 2)
    s.flush()
    assert queued.done.result() == "flushed" and queued.frames_sent == 0
    assert not current.done.done() and s.playing
    ticks(s, 1)
    s.stop()
    assert current.done.result() == "stopped" and current.frames_sent == 3
    assert not s.playing
    assert sent(s, 1)[0].payload == PCMU.silence()


async def test_a_streamed_playback_waits_for_its_source_without_ending() -> None:
    s = sender()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    closed = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        try:
            while (chunk := await chunks.get()) is not None:
                yield chunk
        finally:
            closed.set()

    playback = s.play_stream(source())
    chunks.put_nowait(pcm(7)[:201])  # less than a frame, split mid-sample
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sent(s, 1)[0].payload == PCMU.silence() and playback.frames_sent == 0
    chunks.put_nowait(pcm(7)[201:] + pcm(7))
    chunks.put_nowait(None)
    await asyncio.wait_for(closed.wait(), 1)
    assert [p.payload for p in sent(s, 3)] == [PCMU.encode(pcm(7))] * 2 + [PCMU.silence()]
    assert playback.done.result() == "finished" and playback.frames_sent == 2


async def test_a_failing_source_plays_what_it_gave_then_fails() -> None:
    s = sender()

    async def source() -> AsyncIterator[bytes]:
        yield pcm(9)
        raise ConnectionError("TTS went away")

    playback = s.play_stream(source())
    for _ in range(3):
        await asyncio.sleep(0)
    assert [p.payload for p in sent(s, 2)] == [PCMU.encode(pcm(9)), PCMU.silence()]
    assert playback.done.result() == "failed" and isinstance(playback.error, ConnectionError)


async def test_hold_keeps_time_and_playbacks_moving() -> None:
    s = sender()
    before = sent(s, 1)[0]
    prompt = s.play(pcm(100, 3))
    assert ticks(s, 3, transmit=False) == [None] * 3
    assert prompt.done.result() == "finished"  # it played out to nobody, in real time
    after = sent(s, 1)[0]
    assert seq_diff(after.sequence_number, before.sequence_number) == 1  # nothing was sent in between
    assert ts_diff(after.timestamp, before.timestamp) == 4 * 160  # but the clock ran on
    assert after.marker  # the stream resumes with a new talkspurt
    assert s.packets_sent == 2


async def test_a_stall_skips_timestamps() -> None:
    s = sender()
    before = sent(s, 1)[0]
    s.skip(5)
    after = sent(s, 1)[0]
    assert ts_diff(after.timestamp, before.timestamp) == 6 * 160 and after.marker


async def test_bridged_audio_plays_unless_a_prompt_talks_over_it() -> None:
    s = sender()
    s.bridged = deque([pcm(11), pcm(12)], maxlen=3)
    assert [p.payload for p in sent(s, 1)] == [PCMU.encode(pcm(11))]
    s.play(pcm(13))
    s.bridged.append(pcm(14))
    assert [p.payload for p in sent(s, 2)] == [PCMU.encode(pcm(13)), PCMU.silence()]
    assert not s.bridged  # dropped, not delayed behind the prompt


# ---------------------------------------------------------------- DTMF


async def test_dtmf_needs_telephone_event() -> None:
    s = sender(telephone_event_pt=None)
    with pytest.raises(DtmfError):
        s.send_dtmf("1")


async def test_dtmf_is_validated_when_queued() -> None:
    s = sender()
    with pytest.raises(DtmfError):
        s.send_dtmf("12X")
    with pytest.raises(DtmfError):
        s.send_dtmf("1", duration_ms=10_000)
    assert [p.payload_type for p in sent(s, 2)] == [0, 0]  # nothing of "12X" was queued


async def test_dtmf_events_replace_audio_with_gaps_between_digits() -> None:
    s = sender()
    heard: list[bytes] = []
    s.taps.add(heard.append)
    s.play(pcm(500, 20))
    start = sent(s, 1)[0]
    s.send_dtmf("4#", duration_ms=60)
    # 60 ms: two updates and three ends per digit, then the gap, then the next digit.
    packets = sent(s, 5 + DTMF_GAP_FRAMES + 5 + 1)
    first, gap, second, audio = packets[:5], packets[5:8], packets[8:13], packets[13]

    for train, digit in ((first, "4"), (second, "#")):
        assert {p.payload_type for p in train} == {101}
        assert len({p.timestamp for p in train}) == 1  # every packet repeats the event's start
        assert [p.marker for p in train] == [True, False, False, False, False]
        decoded = [TelephoneEvent.parse(p.payload) for p in train]
        assert {e.digit for e in decoded} == {digit}
        assert [(e.end, e.duration) for e in decoded] == [(False, 160), (False, 320)] + [(True, 480)] * 3
    assert ts_diff(first[0].timestamp, start.timestamp) == 160  # the event starts at its own slot
    assert ts_diff(second[0].timestamp, first[0].timestamp) == 8 * 160
    assert [p.payload_type for p in gap] == [0] * DTMF_GAP_FRAMES and gap[0].marker
    assert audio.payload_type == 0 and audio.marker
    for previous, packet in itertools.pairwise(packets):
        assert seq_diff(packet.sequence_number, previous.sequence_number) == 1
    assert heard[1:6] == [SILENCE_FRAME] * 5  # the peer hears tones, not the prompt, meanwhile
    assert heard[6] == pcm(500)


# ---------------------------------------------------------------- RTCP


async def test_reports_come_at_randomised_intervals() -> None:
    s = sender(interval=5.0)
    times: list[float] = []
    now = 0.0
    while len(times) < 20:
        now = round(now + 0.02, 2)
        if s.report_due(now):
            times.append(now)
            s.report(now, WALL + now, None)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(2.5 - 0.02 <= gap <= 7.5 + 0.02 for gap in gaps)
    assert max(gaps) - min(gaps) > 1.0  # not in step with other streams


async def test_receiver_report_until_we_send_then_sender_reports() -> None:
    s = sender()
    block = RtcpReportBlock(ssrc=0xAAA, fraction_lost=12, packets_lost=3, highest_sequence=99)
    (rr,) = parse_rtcp(s.report(1.0, WALL, block))
    assert isinstance(rr, RtcpRrPacket) and rr.ssrc == s.ssrc and rr.reports == [block]

    packets = sent(s, 10)
    (sr,) = parse_rtcp(s.report(6.0, WALL, None))
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == s.ssrc and sr.reports == []
    info = sr.sender_info
    assert (info.packet_count, info.octet_count) == (10, 1600)
    assert info.rtp_timestamp == packets[-1].timestamp  # the frame sent at the instant of the NTP stamp
    assert info.ntp_timestamp == ntp_timestamp(WALL)


async def test_round_trip_time_from_the_peers_report() -> None:
    s = sender()
    assert s.rtt is None
    lsr = ntp_middle32(ntp_timestamp(WALL))
    s.receive_report(RtcpReportBlock(ssrc=s.ssrc ^ 1, lsr=lsr), WALL + 1.0)  # about someone else
    s.receive_report(RtcpReportBlock(ssrc=s.ssrc, lsr=0), WALL + 1.0)  # it has no SR of ours yet
    assert s.rtt is None
    # It held our SR for 250 ms before answering; the answer came 400 ms after we sent.
    s.receive_report(RtcpReportBlock(ssrc=s.ssrc, lsr=lsr, dlsr=65536 // 4), WALL + 0.4)
    assert s.rtt == pytest.approx(0.150, abs=1e-4)
    s.receive_report(RtcpReportBlock(ssrc=s.ssrc, lsr=lsr, dlsr=65536), WALL + 0.4)  # impossible: ignored
    assert s.rtt == pytest.approx(0.150, abs=1e-4)


async def test_bye_names_our_ssrc() -> None:
    s = sender()
    (bye,) = parse_rtcp(s.bye())
    assert isinstance(bye, RtcpByePacket) and bye.sources == [s.ssrc]


# ---------------------------------------------------------------- closing


async def test_close_stops_everything_and_refuses_more() -> None:
    s = sender()
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                await asyncio.sleep(0.01)
                yield pcm(1)
        finally:
            closed.set()

    current, queued, streamed = s.play(pcm(1, 50)), s.play(pcm(2)), s.play_stream(endless())
    s.send_dtmf("1")
    await asyncio.sleep(0.03)  # the source is being read
    ticks(s, 1)
    await s.close()
    assert [p.done.result() for p in (current, queued, streamed)] == ["stopped"] * 3
    assert closed.is_set()  # the source was closed, not left running
    assert s.play(pcm(3)).done.result() == "stopped"
    assert s.play_stream(endless()).done.result() == "stopped"
    assert {p.payload_type for p in sent(s, 3)} == {0}  # the digit was dropped with the rest
