"""N-party mixing on the media ticker: each leg hears the sum of the others, never itself.

A :class:`Mixer` is ticked by the :class:`~voipbin.media.endpoint.MediaEngine` after every
endpoint has received its frame for the tick (from its jitter buffer, silence where nothing
arrived), so all legs are read at the same instant and none drifts from another. It adds the
frames in 32-bit linear PCM once, and gives each leg the total minus its own frame: work per tick
is a few array operations over ``legs x 160`` samples, whatever is said. A sum louder than 16 bits
is scaled down for that frame (a limiter) rather than clipped into distortion. What a leg is sent
waits behind anything played to it, as with a bridge: music on hold plays over the mix.

Talk detection follows each leg's level with hysteresis (a few loud frames start it, half a
second of quiet ends it) and reports changes through ``on_talking``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final

import numpy as np

from voipbin.media.endpoint import BRIDGE_DEPTH, RtpEndpoint
from voipbin.media.frames import FRAME_SAMPLES, PcmCallback

logger = logging.getLogger(__name__)

MAX_SAMPLE: Final = 32767
TALK_LEVEL: Final = 400.0
"""Mean |sample| of a frame of speech; silence and comfort noise are far below."""
QUIET_LEVEL: Final = 200.0
TALK_START_FRAMES: Final = 3  # 60 ms of voice
TALK_STOP_FRAMES: Final = 25  # 500 ms of quiet

TalkingCallback = Callable[["MixLeg", bool], None]


class MixLeg:
    """One endpoint in a mix. ``muted``: the others do not hear it; ``deaf``: it hears nobody."""

    def __init__(self, mixer: Mixer, endpoint: RtpEndpoint, key: str, *, muted: bool, deaf: bool) -> None:
        self.key = key
        self.endpoint = endpoint
        self.muted = muted
        self.deaf = deaf
        self.talking = False
        self._mixer = mixer
        self._frame: bytes | None = None
        self._loud = 0
        self._quiet = 0
        self.outgoing: deque[bytes] = deque(maxlen=BRIDGE_DEPTH)
        endpoint.attach_feed(self, self.outgoing)
        self._untap = endpoint.add_tap("in", self._heard)

    def _heard(self, pcm: bytes) -> None:
        self._frame = pcm

    def take_frame(self) -> bytes | None:
        frame, self._frame = self._frame, None
        return frame

    def follow_level(self, level: float) -> bool:
        """Update talk detection with this frame's level; whether ``talking`` changed."""
        if level >= TALK_LEVEL:
            self._loud, self._quiet = self._loud + 1, 0
        elif level < QUIET_LEVEL:
            self._loud, self._quiet = 0, self._quiet + 1
        else:
            self._loud = 0
        if not self.talking and self._loud >= TALK_START_FRAMES:
            self.talking = True
            return True
        if self.talking and self._quiet >= TALK_STOP_FRAMES:
            self.talking = False
            return True
        return False

    def close(self) -> None:
        """Leave the mix (also when the endpoint closes); idempotent."""
        self._untap()
        self.endpoint.detach_feed(self)
        self._mixer.forget(self)


class Mixer:
    def __init__(self, *, on_mix: PcmCallback | None = None, on_talking: TalkingCallback | None = None) -> None:
        self.legs: list[MixLeg] = []
        self.on_mix = on_mix  # the whole mix, every tick (a recording of the conference)
        self.on_talking = on_talking

    def add(self, endpoint: RtpEndpoint, key: str = "", *, muted: bool = False, deaf: bool = False) -> MixLeg:
        """Put the endpoint in the mix; RuntimeError if it is already bridged or closed."""
        leg = MixLeg(self, endpoint, key, muted=muted, deaf=deaf)
        self.legs.append(leg)
        return leg

    def forget(self, leg: MixLeg) -> None:
        if leg in self.legs:
            self.legs.remove(leg)

    def close(self) -> None:
        for leg in list(self.legs):
            leg.close()

    def mix(self) -> None:
        legs = tuple(self.legs)
        if not legs and self.on_mix is None:
            return
        heard = np.zeros((len(legs), FRAME_SAMPLES), dtype=np.int32)
        for row, leg in enumerate(legs):
            frame = leg.take_frame()
            samples = np.frombuffer(frame, dtype="<i2") if frame is not None and len(frame) == FRAME_SAMPLES * 2 else None
            level = float(np.abs(samples.astype(np.int32)).mean()) if samples is not None else 0.0
            if leg.follow_level(level) and self.on_talking is not None:
                self._report_talking(leg)
            if samples is not None and not leg.muted:
                heard[row] = samples
        total = heard.sum(axis=0)
        if self.on_mix is not None:
            self.on_mix(_limited(total[np.newaxis, :])[0].tobytes())
        if not legs:
            return
        minus_own = _limited(total[np.newaxis, :] - heard)
        for row, leg in enumerate(legs):
            if not leg.deaf:
                leg.outgoing.append(minus_own[row].tobytes())

    def _report_talking(self, leg: MixLeg) -> None:
        assert self.on_talking is not None
        try:
            self.on_talking(leg, leg.talking)
        except Exception:
            logger.exception("a talk detection callback failed")


def _limited(frames: np.ndarray) -> np.ndarray:
    """16-bit frames from 32-bit sums: a frame whose peak is past 16 bits is scaled down whole."""
    peaks = np.abs(frames).max(axis=1, keepdims=True)
    gain = np.minimum(1.0, MAX_SAMPLE / np.maximum(peaks, 1))
    limited: np.ndarray = (frames * gain).astype("<i2")
    return limited
