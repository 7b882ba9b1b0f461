"""Jitter buffer: playout delay, reordering, loss, duplicates, wraparound, overflow."""

from __future__ import annotations

import pytest

from voipbin.media.jitter import JitterBuffer
from voipbin.media.rtp import RtpPacket

FRAME = 0.020


def pkt(seq: int, ts: int | None = None, marker: bool = False) -> RtpPacket:
    seq &= 0xFFFF
    return RtpPacket(
        payload_type=0,
        marker=marker,
        sequence_number=seq,
        timestamp=(160 * seq if ts is None else ts) & 0xFFFFFFFF,
        ssrc=1,
        payload=seq.to_bytes(2, "big"),
    )


def run(buffer: JitterBuffer, arrivals: dict[int, list[RtpPacket]], ticks: int) -> list[int | None]:
    """Tick k happens at k * 20 ms: first arrivals due by then are pushed, then one pop."""
    played: list[int | None] = []
    for k in range(ticks):
        now = k * FRAME
        for packet in arrivals.get(k, []):
            buffer.push(packet, now)
        frame = buffer.pop(now)
        played.append(None if frame is None else frame.sequence_number)
    return played


def test_waits_for_target_delay_then_plays_in_order() -> None:
    buffer = JitterBuffer(target_delay=0.060)
    played = run(buffer, {k: [pkt(100 + k)] for k in range(10)}, 13)
    assert played == [None, None, None, *range(100, 110)]
    assert buffer.stats.played == 10
    assert buffer.stats.concealed == 0  # the waiting ticks were buffering, not concealment
    assert buffer.stats.lost == 0
    assert buffer.playing


def test_reorders_within_the_delay() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    arrivals = {0: [pkt(1)], 1: [pkt(3)], 2: [pkt(2), pkt(5)], 3: [pkt(4)], 4: [pkt(6)]}
    assert run(buffer, arrivals, 8) == [None, None, 1, 2, 3, 4, 5, 6]
    assert buffer.stats.late == 0


def test_packet_reordered_before_the_first_one_still_plays() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    assert run(buffer, {0: [pkt(2)], 1: [pkt(1)], 2: [pkt(3)]}, 5) == [None, None, 1, 2, 3]


def test_duplicates_are_dropped_and_counted() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    arrivals = {0: [pkt(1), pkt(1)], 1: [pkt(2)], 2: [pkt(3)], 4: [pkt(1), pkt(4)]}
    assert run(buffer, arrivals, 6) == [None, None, 1, 2, 3, 4]
    assert buffer.stats.duplicate == 2  # one while buffered, one after it was played
    assert buffer.stats.received == 6
    assert buffer.stats.late == 0


def test_loss_is_concealed_and_a_late_straggler_dropped() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    arrivals = {k: [pkt(k)] for k in range(8) if k != 3}
    arrivals[7] = [pkt(3), pkt(7)]  # 3 turns up long after its slot
    assert run(buffer, arrivals, 10) == [None, None, 0, 1, 2, None, 4, 5, 6, 7]
    assert buffer.stats.lost == 1
    assert buffer.stats.concealed == 1
    assert buffer.stats.late == 1


def test_packet_after_its_slot_but_before_next_frame_is_late() -> None:
    buffer = JitterBuffer(target_delay=0.020)
    arrivals = {0: [pkt(0)], 1: [pkt(1)], 3: [pkt(3)], 4: [pkt(2), pkt(4)]}
    # Slot of 2 is tick 3; it arrives at tick 4 while 3 is still waiting in the buffer.
    assert run(buffer, arrivals, 6) == [None, 0, 1, None, 3, 4]
    assert buffer.stats.late == 1


def test_sequence_wraparound() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    seqs = [65533, 65535, 65534, 0, 2, 1, 3]
    arrivals = {k: [pkt(s, 160 * ((s - 65533) & 0xFFFF))] for k, s in enumerate(seqs)}
    assert run(buffer, arrivals, 9) == [None, None, 65533, 65534, 65535, 0, 1, 2, 3]
    assert buffer.stats.lost == buffer.stats.late == 0


def test_timestamp_wraparound() -> None:
    buffer = JitterBuffer(target_delay=0.020)
    base = 0xFFFFFFFF - 400
    arrivals = {k: [pkt(k, base + 160 * k)] for k in range(6)}
    assert run(buffer, arrivals, 7) == [None, 0, 1, 2, 3, 4, 5]


def test_silence_gap_keeps_timing_without_counting_loss() -> None:
    # A sender that stops during silence: sequence numbers continue, the timestamp jumps.
    buffer = JitterBuffer(target_delay=0.040)
    arrivals = {k: [pkt(k, 160 * k)] for k in range(3)}
    arrivals.update({k: [pkt(k - 5, 160 * k)] for k in range(8, 11)})
    played = run(buffer, arrivals, 13)
    assert played == [None, None, 0, 1, 2, None, None, None, None, None, 3, 4, 5]
    assert buffer.stats.lost == 0 and buffer.stats.late == 0
    assert buffer.stats.concealed == 5


def test_marker_into_empty_buffer_rebuilds_the_delay() -> None:
    buffer = JitterBuffer(target_delay=0.040)
    arrivals = {k: [pkt(k)] for k in range(3)}
    # Next talkspurt arrives "early" relative to the old playout clock.
    arrivals.update({6: [pkt(3, 160 * 12, marker=True)], 7: [pkt(4, 160 * 13)], 8: [pkt(5, 160 * 14)]})
    played = run(buffer, arrivals, 11)
    assert played == [None, None, 0, 1, 2, None, None, None, 3, 4, 5]


def test_overflow_drops_oldest() -> None:
    buffer = JitterBuffer(target_delay=0.0, capacity=5)
    for seq in range(10):
        assert buffer.push(pkt(seq), 0.0)
    assert buffer.depth == 5
    assert buffer.stats.overflow == 5
    assert [buffer.pop(0.0).sequence_number for _ in range(5)] == [5, 6, 7, 8, 9]  # type: ignore[union-attr]
    assert buffer.pop(0.0) is None
    # A straggler of the dropped range is now late.
    assert not buffer.push(pkt(3), 0.0)
    assert buffer.stats.late == 1
    assert buffer.stats.lost == 0


def test_overflow_while_playing_shortens_the_delay() -> None:
    buffer = JitterBuffer(target_delay=0.020, capacity=3)
    arrivals = {0: [pkt(0)], 1: [pkt(1)], 2: [pkt(seq) for seq in range(2, 8)]}
    played = run(buffer, arrivals, 6)
    # 1..7 overflow a 3-frame buffer: 1-4 go, and playout jumps ahead to 5.
    assert played == [None, 0, 5, 6, 7, None]
    assert buffer.stats.overflow == 4
    assert buffer.stats.lost == 0


def test_large_jump_resyncs() -> None:
    buffer = JitterBuffer(target_delay=0.020, resync_after=1.0)
    arrivals = {k: [pkt(k)] for k in range(3)}
    # The far end restarted: new sequence and timestamp bases.
    arrivals.update({k: [pkt(40000 + k, 5_000_000 + 160 * k)] for k in range(3, 7)})
    played = run(buffer, arrivals, 8)
    assert played == [None, 0, 1, None, 40003, 40004, 40005, 40006]
    assert buffer.stats.resyncs == 1


def test_timestamp_jump_alone_resyncs() -> None:
    buffer = JitterBuffer(target_delay=0.020, resync_after=1.0)
    arrivals = {0: [pkt(0)], 1: [pkt(1)], 2: [pkt(2, 160 * 2 + 80_000)], 3: [pkt(3, 160 * 3 + 80_000)]}
    assert run(buffer, arrivals, 5) == [None, 0, None, 2, 3]
    assert buffer.stats.resyncs == 1


@pytest.mark.parametrize("kwargs", [{"target_delay": -1}, {"capacity": 0}, {"frame_duration": 0}])
def test_rejects_bad_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(**kwargs)  # type: ignore[arg-type]
