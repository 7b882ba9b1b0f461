"""RFC 4733 telephone-events: DTMF digits carried as RTP payload instead of audio.

One key press is one *event*: every packet of it carries the timestamp of its
start and a growing duration, the first has the marker bit, and the end packet is
repeated because the network may lose it. The detector therefore keys on the
event's timestamp, which makes duplicates, resent ends and reordering harmless.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from voipbin.media.rtp import RtpPacket, ts_diff

DTMF_DIGITS: Final = "0123456789*#ABCD"
"""Event codes 0-15 of RFC 4733 section 3.2, in order."""

MAX_DURATION: Final = 0xFFFF


class DtmfError(ValueError):
    """A telephone-event payload or a DTMF request that cannot be encoded."""


def digit_to_event(digit: str) -> int:
    index = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise DtmfError(f"{digit!r} is not a DTMF digit")
    return index


def event_to_digit(event: int) -> str | None:
    """The digit for an event code, or None for the non-DTMF events (flash, tones...)."""
    return DTMF_DIGITS[event] if 0 <= event < len(DTMF_DIGITS) else None


class TelephoneEvent(NamedTuple):
    """The 4-byte payload of RFC 4733 section 2.3.

    ``volume`` is the power level in -dBm0 (0-63); ``duration`` is in timestamp units
    since the event's timestamp.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        # Several events may be stacked (RFC 4733 2.5.1.5); the first is the current one.
        if len(data) < 4:
            raise DtmfError("telephone-event payload shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration <= MAX_DURATION):
            raise DtmfError(f"telephone-event field out of range: {self}")
        # The R bit (0x40) is reserved: sent as zero.
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @property
    def digit(self) -> str | None:
        return event_to_digit(self.event)


class DtmfPacket(NamedTuple):
    """What to send in one packet slot; the caller assigns sequence number and SSRC."""

    payload: bytes
    marker: bool
    timestamp: int


class DtmfSender:
    """Turns one key press into the RFC 4733 packet train (section 2.5.1).

    Packets are meant to go out one per ``packet_samples`` of stream time (20 ms by
    default), so a 100 ms digit gives 4 updates and then the end packet 3 times.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        packet_samples: int = 160,
        volume: int = 10,
        end_repeats: int = 3,
    ) -> None:
        if packet_samples <= 0 or end_repeats < 1:
            raise ValueError("packet_samples and end_repeats must be positive")
        self.clock_rate = clock_rate
        self.packet_samples = packet_samples
        self.volume = volume
        self.end_repeats = end_repeats

    def packets(self, digit: str, duration_ms: int, timestamp: int) -> list[DtmfPacket]:
        """All packets for ``digit`` held ``duration_ms``, starting at RTP ``timestamp``."""
        event = digit_to_event(digit)
        duration = duration_ms * self.clock_rate // 1000
        if not 0 < duration <= MAX_DURATION:
            # Longer events need segmenting (RFC 4733 2.5.1.3), which we never send.
            raise DtmfError(f"DTMF duration {duration_ms} ms is out of range")
        timestamp &= 0xFFFF_FFFF
        packets: list[DtmfPacket] = []
        elapsed = self.packet_samples
        while elapsed < duration:
            payload = TelephoneEvent(event, False, self.volume, elapsed).serialize()
            packets.append(DtmfPacket(payload, not packets, timestamp))
            elapsed += self.packet_samples
        end = TelephoneEvent(event, True, self.volume, duration).serialize()
        for _ in range(self.end_repeats):
            packets.append(DtmfPacket(end, not packets, timestamp))
        return packets


class DtmfDetector:
    """Reports each received digit exactly once, as soon as any packet of it arrives.

    Reporting on the first packet (rather than on the end) keeps latency low and
    still works when the marker packet or all end packets are lost. Packets of an
    event older than the newest one seen are stale reorderings and are ignored; a
    timestamp far in the past means the sender restarted, so it starts afresh.
    """

    def __init__(self, clock_rate: int = 8000, restart_after: float = 5.0) -> None:
        self._restart_window = int(restart_after * clock_rate)
        # How close to the 16-bit duration limit a press must be to continue in a new segment.
        self._segment_slack = clock_rate // 25
        self._timestamp: int | None = None
        self._event = -1
        self._duration = 0
        self._ended = False
        self.malformed = 0

    def reset(self) -> None:
        self._timestamp = None

    def feed_packet(self, packet: RtpPacket) -> str | None:
        return self.feed(packet.payload, packet.timestamp)

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        """Consume one telephone-event payload; the digit when it starts a new event."""
        try:
            event = TelephoneEvent.parse(payload)
        except DtmfError:
            self.malformed += 1
            return None
        if self._timestamp is not None:
            delta = ts_diff(timestamp, self._timestamp)
            if delta == 0:
                self._duration = max(self._duration, event.duration)
                self._ended = self._ended or event.end
                return None
            if -self._restart_window < delta < 0:
                return None
            if (
                0 < delta <= MAX_DURATION
                and event.event == self._event
                and not self._ended
                and self._duration >= MAX_DURATION - self._segment_slack
            ):
                # Next segment of one long press (RFC 4733 2.5.1.3), not a new press.
                self._timestamp, self._duration, self._ended = timestamp, event.duration, event.end
                return None
        self._timestamp = timestamp
        self._event = event.event
        self._duration = event.duration
        self._ended = event.end
        return event.digit
