"""Send pacing on absolute deadlines, lateness statistics, RTP stream continuity."""

from __future__ import annotations

import random

import pytest

from voipbin.media.pacer import LatenessStats, Pacer, RtpStreamState


def test_deadlines_sit_on_an_absolute_grid() -> None:
    pacer = Pacer(start=100.0)
    for i in range(3000):
        assert pacer.next_deadline() == pytest.approx(100.0 + i * 0.020, abs=1e-9)
        # Always a little late: a sleep-based loop would drift by 3000 * 1 ms.
        assert pacer.advance(pacer.next_deadline() + 0.001) == 0
    assert pacer.next_deadline() == pytest.approx(160.0, abs=1e-9)
    assert pacer.skipped == 0
    assert pacer.lateness.max == pytest.approx(0.001)


def test_small_lateness_is_caught_up_by_sending_back_to_back() -> None:
    pacer = Pacer(start=0.0, max_catchup=2)
    assert pacer.advance(0.045) == 0  # frames 1 and 2 are now due: within the catch-up allowance
    sent_at_once = 0
    while pacer.next_deadline() <= 0.045:
        sent_at_once += 1
        assert pacer.advance(0.045) == 0
    assert sent_at_once == 2
    assert pacer.next_deadline() == pytest.approx(0.060)


def test_stall_skips_ahead_instead_of_bursting() -> None:
    pacer = Pacer(start=0.0, interval=0.020, max_catchup=2)
    pacer.advance(0.0)  # frame 0 on time
    # The loop stalls for half a second, then sends frame 1.
    now = 0.530
    skipped = pacer.advance(now)
    assert skipped == 23  # frames 2..26 are due; keep the last 2 of them
    burst = 0
    while pacer.next_deadline() <= now:
        burst += 1
        assert pacer.advance(now) == 0
    assert burst == 2
    assert pacer.skipped == 23
    assert pacer.next_deadline() > now
    assert pacer.lateness.max == pytest.approx(0.510)


def test_no_catchup_at_all() -> None:
    pacer = Pacer(start=0.0, max_catchup=0)
    assert pacer.advance(0.070) == 3  # frames 1, 2, 3 are all in the past
    assert pacer.next_deadline() == pytest.approx(0.080)


def test_pacer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Pacer(0.0, interval=0)
    with pytest.raises(ValueError):
        Pacer(0.0, max_catchup=-1)


def test_lateness_percentiles() -> None:
    stats = LatenessStats()
    assert (stats.p50, stats.p99, stats.max, stats.count) == (0.0, 0.0, 0.0, 0)
    for ms in range(1, 101):  # 1..100 ms, shuffled
        stats.record(((ms * 37) % 100 + 1) / 1000)
    assert stats.count == 100
    assert stats.p50 == pytest.approx(0.050)
    assert stats.p99 == pytest.approx(0.099)
    assert stats.max == pytest.approx(0.100)
    assert stats.percentile(0) == pytest.approx(0.001)
    assert stats.percentile(100) == pytest.approx(0.100)


def test_lateness_window_is_bounded_but_max_is_not() -> None:
    stats = LatenessStats(window=10)
    stats.record(5.0)
    for _ in range(10):
        stats.record(0.001)
    assert stats.p99 == pytest.approx(0.001)
    assert stats.max == 5.0
    assert stats.count == 11


def test_stream_is_continuous_across_prompts_and_wraps() -> None:
    stream = RtpStreamState(0, ssrc=0x1234, sequence_number=65534, timestamp=0xFFFFFF00)
    first_prompt = [stream.next_packet(b"\xff" * 160) for _ in range(2)]
    second_prompt = [stream.next_packet(b"\x7f" * 160) for _ in range(2)]
    packets = first_prompt + second_prompt
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFF00, 0xFFFFFFA0 + 0, 0x40, 0xE0]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert {(p.ssrc, p.payload_type) for p in packets} == {(0x1234, 0)}
    assert (stream.packets_sent, stream.octets_sent) == (4, 640)


def test_silence_gap_advances_timestamp_and_marks_next_packet() -> None:
    stream = RtpStreamState(8, ssrc=1, sequence_number=10, timestamp=1000)
    stream.next_packet(b"a" * 160)
    stream.skip(50)  # one second with nothing to send
    after = stream.next_packet(b"b" * 160)
    assert (after.sequence_number, after.timestamp, after.marker) == (11, 1000 + 160 * 51, True)
    assert stream.next_packet(b"c" * 160).marker is False
    stream.skip(0)
    assert stream.next_packet(b"d" * 160).marker is False
    stream.mark()
    assert stream.next_packet(b"e" * 160).marker is True


def test_overrides_for_telephone_events() -> None:
    stream = RtpStreamState(0, ssrc=1, sequence_number=0, timestamp=800)
    stream.next_packet(b"x")
    event = [stream.next_packet(b"evt", payload_type=101, timestamp=960, marker=i == 0) for i in range(3)]
    assert [(p.payload_type, p.timestamp, p.marker, p.sequence_number) for p in event] == [
        (101, 960, True, 1),
        (101, 960, False, 2),
        (101, 960, False, 3),
    ]
    # The stream clock kept running underneath the event.
    assert stream.timestamp == 800 + 4 * 160
    assert stream.next_packet(b"y", samples=240).timestamp == 1440
    assert stream.timestamp == 1680


def test_random_initial_values_are_injectable() -> None:
    a = RtpStreamState(0, rng=random.Random(7))
    b = RtpStreamState(0, rng=random.Random(7))
    assert (a.ssrc, a.sequence_number, a.timestamp) == (b.ssrc, b.sequence_number, b.timestamp)
    assert 0 <= a.sequence_number <= 0xFFFF and 0 <= a.ssrc <= 0xFFFFFFFF
    c = RtpStreamState(0)
    d = RtpStreamState(0)
    assert (c.ssrc, c.timestamp) != (d.ssrc, d.timestamp)


def test_pacer_skips_feed_the_stream_clock() -> None:
    pacer = Pacer(start=0.0, max_catchup=1)
    stream = RtpStreamState(0, ssrc=1, sequence_number=0, timestamp=0)
    sent = []
    for now in [0.0, 0.021, 0.205, 0.205, 0.225]:
        if pacer.next_deadline() > now:
            continue
        sent.append(stream.next_packet(b"\xff" * 160))
        stream.skip(pacer.advance(now))
    # Frame 2 went out 165 ms late; slots 3..9 were skipped, 10 and 11 follow.
    assert [(p.sequence_number, p.timestamp, p.marker) for p in sent] == [
        (0, 0, True),
        (1, 160, False),
        (2, 320, False),
        (3, 160 * 10, True),
        (4, 160 * 11, False),
    ]
