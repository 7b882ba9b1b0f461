"""RFC 4733 telephone-events: payload format, sender packet train, detector."""

from __future__ import annotations

import random

import pytest

from voipbin.media.dtmf import (
    DTMF_DIGITS,
    DtmfDetector,
    DtmfError,
    DtmfPacket,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)
from voipbin.media.pacer import RtpStreamState
from voipbin.media.rtp import RtpPacket


def test_payload_known_bytes() -> None:
    event = TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.serialize() == bytes.fromhex("058a0320")
    assert TelephoneEvent.parse(bytes.fromhex("058a0320")) == event
    assert TelephoneEvent(11, False, 63, 0xFFFF).serialize() == bytes.fromhex("0b3fffff")


def test_parse_ignores_reserved_bit_and_trailing_events() -> None:
    parsed = TelephoneEvent.parse(bytes.fromhex("01ca00a00280ffff"))
    assert parsed == TelephoneEvent(1, True, 10, 160)
    assert parsed.digit == "1"


@pytest.mark.parametrize("data", [b"", b"\x01\x8a\x00"])
def test_parse_short_payload(data: bytes) -> None:
    with pytest.raises(DtmfError):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    "event", [TelephoneEvent(256), TelephoneEvent(1, volume=64), TelephoneEvent(1, duration=65536)]
)
def test_serialize_out_of_range(event: TelephoneEvent) -> None:
    with pytest.raises(DtmfError):
        event.serialize()


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in DTMF_DIGITS] == list(range(16))
    assert digit_to_event("a") == 12
    assert event_to_digit(10) == "*" and event_to_digit(11) == "#"
    assert event_to_digit(16) is None  # flash
    for bad in ["", "E", "12", " "]:
        with pytest.raises(DtmfError):
            digit_to_event(bad)


def test_sender_packet_train() -> None:
    packets = DtmfSender().packets("5", 100, timestamp=1000)
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {1000}
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(5, 10)}
    assert packets[-1] == packets[-2] == packets[-3]


def test_sender_short_digit_is_only_end_packets() -> None:
    packets = DtmfSender(volume=20).packets("#", 10, timestamp=0xFFFFFFFF)
    assert (
        packets
        == [DtmfPacket(bytes.fromhex("0b940050"), True, 0xFFFFFFFF)]
        + [DtmfPacket(bytes.fromhex("0b940050"), False, 0xFFFFFFFF)] * 2
    )


@pytest.mark.parametrize("duration_ms", [0, -5, 8192])
def test_sender_rejects_bad_durations(duration_ms: int) -> None:
    with pytest.raises(DtmfError):
        DtmfSender().packets("1", duration_ms, 0)


def test_detector_reports_each_event_once() -> None:
    detector = DtmfDetector()
    packets = DtmfSender().packets("9", 200, 5000)
    results = [detector.feed(p.payload, p.timestamp) for p in packets + packets]
    assert [r for r in results if r] == ["9"]
    assert results[0] == "9"


def test_detector_ignores_stale_events_and_malformed_payloads() -> None:
    detector = DtmfDetector()
    assert detector.feed(TelephoneEvent(1, True, 10, 800).serialize(), 8000) == "1"
    assert detector.feed(TelephoneEvent(2, True, 10, 800).serialize(), 16000) == "2"
    # A straggler of the earlier event arriving late is not a new press.
    assert detector.feed(TelephoneEvent(1, True, 10, 800).serialize(), 8000) is None
    assert detector.feed(b"\x01", 24000) is None
    assert detector.malformed == 1
    # Non-DTMF events are tracked but produce no digit.
    assert detector.feed(TelephoneEvent(16, False, 10, 160).serialize(), 24000) is None


def test_detector_same_digit_twice() -> None:
    detector = DtmfDetector()
    sender = DtmfSender()
    found = [detector.feed(p.payload, p.timestamp) for ts in (0, 1600) for p in sender.packets("7", 100, ts)]
    assert [d for d in found if d] == ["7", "7"]


def test_detector_starts_over_when_the_sender_restarts() -> None:
    detector = DtmfDetector(restart_after=5.0)
    assert detector.feed(TelephoneEvent(3).serialize(), 1_000_000) == "3"
    # 10 s "in the past" is not reordering, it is a new timestamp base.
    assert detector.feed(TelephoneEvent(4).serialize(), 1_000_000 - 80_000) == "4"
    detector.reset()
    assert detector.feed(TelephoneEvent(4).serialize(), 1_000_000 - 80_000) == "4"


def test_detector_long_press_segments_are_one_digit() -> None:
    detector = DtmfDetector()
    assert detector.feed(TelephoneEvent(0, False, 10, 0xFFFF).serialize(), 0) == "0"
    # RFC 4733 2.5.1.3: the press continues with a new timestamp.
    assert detector.feed(TelephoneEvent(0, False, 10, 160).serialize(), 0xFFFF) is None
    assert detector.feed(TelephoneEvent(0, True, 10, 800).serialize(), 0xFFFF) is None
    assert detector.feed(TelephoneEvent(0, True, 10, 160).serialize(), 0xFFFF + 1600) == "0"


def test_round_trip_over_rtp_with_loss_duplicates_and_reordering() -> None:
    digits = "123#*ABCD0557"  # a repeated digit must come out twice
    rng = random.Random(4733)
    sender = DtmfSender()
    stream = RtpStreamState(101, ssrc=1, sequence_number=65530, timestamp=0xFFFFF000, rng=rng)
    wire: list[tuple[int, bytes]] = []  # (position of the digit, datagram)
    for position, digit in enumerate(digits):
        start = stream.timestamp
        for p in sender.packets(digit, rng.choice([40, 100, 250]), start):
            wire.append(
                (position, stream.next_packet(p.payload, timestamp=p.timestamp, marker=p.marker).serialize())
            )
        stream.skip(5)  # inter-digit gap of 100 ms

    # Lose the marker packet of every third digit and all end packets of the next ones.
    received: list[bytes] = []
    for position, data in wire:
        packet = RtpPacket.parse(data)
        if packet.marker and position % 3 == 0:
            continue
        if TelephoneEvent.parse(packet.payload).end and position % 3 == 1:
            continue
        received.append(data)
        if rng.random() < 0.3:
            received.append(data)  # duplicate
    # Swap neighbours within each digit's packets (never across digits).
    for i in range(0, len(received) - 1, 2):
        a, b = RtpPacket.parse(received[i]), RtpPacket.parse(received[i + 1])
        if a.timestamp == b.timestamp and rng.random() < 0.5:
            received[i], received[i + 1] = received[i + 1], received[i]

    detector = DtmfDetector()
    detected = [d for data in received if (d := detector.feed_packet(RtpPacket.parse(data)))]
    assert "".join(detected) == digits
