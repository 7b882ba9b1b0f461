"""Send-side timing: absolute frame deadlines and a continuous RTP sequence/timestamp.

Sleeping 20 ms after each send drifts (every wake-up is a little late and the
error accumulates), so frames are due at ``start + n * interval`` instead. The
caller sleeps until :meth:`Pacer.next_deadline`, sends, and calls
:meth:`Pacer.advance` with the time it actually sent.
"""

from __future__ import annotations

import math
import random
from collections import deque

from voipbin.media.rtp import RtpPacket


class LatenessStats:
    """How late sends were against their deadlines, in seconds.

    Percentiles cover the most recent ``window`` samples (the last minute at 50
    frames a second by default) so memory stays bounded on long calls; ``max``
    and ``count`` cover everything.
    """

    def __init__(self, window: int = 3000) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max = 0.0

    def record(self, lateness: float) -> None:
        self._samples.append(lateness)
        self.count += 1
        self.max = max(self.max, lateness)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, ``q`` in [0, 100]; 0.0 when nothing was recorded."""
        if not self._samples:
            return 0.0
        ordered = sorted(self._samples)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


class Pacer:
    """Frame deadlines on an absolute grid, skipping ahead after a stall.

    After the event loop stalls, sending every missed frame back to back would hit
    the far end's jitter buffer as a burst it must drop anyway; so at most
    ``max_catchup`` overdue frames are kept and the rest are skipped. ``advance``
    returns how many slots were skipped so the stream timestamp can move past them.
    """

    def __init__(self, start: float, interval: float = 0.020, max_catchup: int = 2) -> None:
        if interval <= 0 or max_catchup < 0:
            raise ValueError("interval must be positive and max_catchup non-negative")
        self.start = start
        self.interval = interval
        self.max_catchup = max_catchup
        self.index = 0
        self.skipped = 0
        self.lateness = LatenessStats()

    def next_deadline(self) -> float:
        """When the current frame is due."""
        # Multiplying rather than summing keeps float error from accumulating.
        return self.start + self.index * self.interval

    def advance(self, now: float) -> int:
        """Mark the current frame sent at ``now``; returns how many frame slots to skip."""
        self.lateness.record(now - self.next_deadline())
        self.index += 1
        overdue = math.floor((now - self.next_deadline()) / self.interval) + 1
        skip = max(0, overdue - self.max_catchup)
        self.index += skip
        self.skipped += skip
        return skip


class RtpStreamState:
    """Sequence number, timestamp and SSRC of one outgoing RTP stream.

    Prompts, TTS, bridged audio and DTMF all go out through one state, so the far
    end sees a single continuous stream: the timestamp keeps counting through
    silence and the marker bit flags the first packet after a gap. Initial values
    are random as RFC 3550 asks; pass them (or ``rng``) to make tests exact.
    """

    def __init__(
        self,
        payload_type: int,
        *,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.SystemRandom()
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.ssrc = rng.getrandbits(32) if ssrc is None else ssrc
        self.sequence_number = rng.getrandbits(16) if sequence_number is None else sequence_number
        self.timestamp = rng.getrandbits(32) if timestamp is None else timestamp
        self.packets_sent = 0
        self.octets_sent = 0
        self._mark_next = True  # the first packet starts a talkspurt

    def next_packet(
        self,
        payload: bytes,
        *,
        payload_type: int | None = None,
        samples: int | None = None,
        timestamp: int | None = None,
        marker: bool | None = None,
    ) -> RtpPacket:
        """The packet for this frame slot; the stream clock moves on by ``samples``.

        ``timestamp`` and ``marker`` override what goes in the packet without
        touching the stream clock: RFC 4733 events repeat their start timestamp
        while time carries on underneath.
        """
        packet = RtpPacket(
            payload_type=self.payload_type if payload_type is None else payload_type,
            marker=self._mark_next if marker is None else marker,
            sequence_number=self.sequence_number,
            timestamp=self.timestamp if timestamp is None else timestamp & 0xFFFF_FFFF,
            ssrc=self.ssrc,
            payload=payload,
        )
        self._mark_next = False
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (self.timestamp + (self.frame_samples if samples is None else samples)) & 0xFFFF_FFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet

    def skip(self, frames: int = 1) -> None:
        """Let ``frames`` slots pass unsent (silence, pacer skip); next packet is marked."""
        if frames <= 0:
            return
        self.timestamp = (self.timestamp + frames * self.frame_samples) & 0xFFFF_FFFF
        self._mark_next = True

    def mark(self) -> None:
        """Flag the next packet as the start of a talkspurt."""
        self._mark_next = True
