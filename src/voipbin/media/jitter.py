"""A fixed-delay jitter buffer for 20 ms G.711 frames, driven by the caller's clock.

``push`` files packets as they arrive; ``pop`` is called once per frame tick by the
playout clock and answers the frame for that tick, or ``None`` meaning "play
concealment or silence". Frames are scheduled by RTP timestamp rather than by
sequence number, so a sender that stops sending during silence (timestamp jumps,
sequence numbers do not) is played with its pauses intact instead of being judged
late forever after.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voipbin.media.rtp import MAX_DROPOUT, RtpPacket, seq_diff, ts_diff


@dataclass
class JitterStats:
    """Counters since creation.

    ``lost`` counts sequence numbers skipped at playout (they never arrived in
    time); one that turns up later is counted again as ``late``. ``concealed``
    counts ticks answered with ``None`` while playing, losses and silences alike.
    """

    received: int = 0
    played: int = 0
    late: int = 0
    duplicate: int = 0
    lost: int = 0
    concealed: int = 0
    overflow: int = 0
    resyncs: int = 0


class JitterBuffer:
    def __init__(
        self,
        target_delay: float = 0.060,
        frame_duration: float = 0.020,
        clock_rate: int = 8000,
        capacity: int = 25,
        resync_after: float = 2.0,
    ) -> None:
        """``capacity`` bounds the buffer in frames (25 x 20 ms = 500 ms); a packet
        whose timestamp is more than ``resync_after`` seconds off the playout point
        means the source jumped (restart, new stream), so the buffer starts over.
        """
        if target_delay < 0 or frame_duration <= 0 or capacity < 1:
            raise ValueError("target_delay >= 0, frame_duration > 0 and capacity >= 1 required")
        self.target_delay = target_delay
        self.capacity = capacity
        self.stats = JitterStats()
        self._frame_samples = round(frame_duration * clock_rate)
        self._resync_samples = round(resync_after * clock_rate)
        self._reset()

    def _reset(self) -> None:
        # Keyed by extended (unwrapped) sequence number.
        self._frames: dict[int, RtpPacket] = {}
        self._highest: int | None = None
        self._last_played: int | None = None
        # Recently played sequence numbers, to tell a duplicate from a late packet.
        self._recent: deque[int] = deque(maxlen=2 * self.capacity)
        self._playing = False
        self._first_arrival: float | None = None
        self._playout_ts = 0

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def depth(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        return self._highest + seq_diff(seq, self._highest & 0xFFFF)

    def push(self, packet: RtpPacket, now: float) -> bool:
        """File one arriving packet; False when it was dropped (late, duplicate)."""
        self.stats.received += 1
        ext = self._extend(packet.sequence_number)
        jumped = self._highest is not None and abs(ext - self._highest) >= MAX_DROPOUT
        if self._playing and abs(ts_diff(packet.timestamp, self._playout_ts)) > self._resync_samples:
            jumped = True
        if jumped:
            self._reset()
            self.stats.resyncs += 1
            ext = packet.sequence_number

        if self._last_played is not None and ext <= self._last_played:
            if ext in self._recent:
                self.stats.duplicate += 1
            else:
                self.stats.late += 1
            return False
        if ext in self._frames:
            self.stats.duplicate += 1
            return False
        if self._playing and packet.marker and not self._frames:
            # A new talkspurt into an empty buffer: rebuild the target delay, which
            # also absorbs whatever clock drift piled up during the last one.
            self._playing = False
            self._first_arrival = now
        if self._playing and ts_diff(packet.timestamp, self._playout_ts) < 0:
            self.stats.late += 1
            return False

        self._frames[ext] = packet
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if self._first_arrival is None:
            self._first_arrival = now
        while len(self._frames) > self.capacity:
            self._drop_oldest()
        return True

    def _drop_oldest(self) -> None:
        oldest = min(self._frames)
        dropped = self._frames.pop(oldest)
        self.stats.overflow += 1
        # Move playout past the dropped frame so the buffer actually gets shorter.
        self._last_played = oldest if self._last_played is None else max(self._last_played, oldest)
        end = (dropped.timestamp + self._frame_samples) & 0xFFFF_FFFF
        if self._playing and ts_diff(end, self._playout_ts) > 0:
            self._playout_ts = end

    def pop(self, now: float) -> RtpPacket | None:
        """The packet to play for this frame tick, or None for concealment/silence."""
        if not self._playing:
            if (
                not self._frames
                or self._first_arrival is None
                or now < self._first_arrival + self.target_delay
            ):
                return None
            self._playing = True
            self._playout_ts = self._frames[min(self._frames)].timestamp

        while self._frames:
            head_seq = min(self._frames)
            head = self._frames[head_seq]
            offset = ts_diff(head.timestamp, self._playout_ts)
            if offset >= self._frame_samples:
                break  # its slot is still ahead: conceal this one
            del self._frames[head_seq]
            if offset <= -self._frame_samples:
                self.stats.late += 1  # timestamps ran backwards; its slot is gone
                continue
            if self._last_played is not None and head_seq > self._last_played + 1:
                self.stats.lost += head_seq - self._last_played - 1
            self._last_played = head_seq
            self._recent.append(head_seq)
            # Re-anchor on the packet so senders not aligned to 160 samples stay in step.
            self._playout_ts = (head.timestamp + self._frame_samples) & 0xFFFF_FFFF
            self.stats.played += 1
            return head

        self._playout_ts = (self._playout_ts + self._frame_samples) & 0xFFFF_FFFF
        self.stats.concealed += 1
        return None
