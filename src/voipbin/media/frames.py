"""The unit the media runtime moves: one 20 ms frame of 8 kHz 16-bit signed little-endian mono PCM.

Receiver, sender and endpoint all speak in these frames, and :class:`Taps` is how
other code (recording, transcription, bridges) observes them as they pass.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Final, TypeAlias

logger = logging.getLogger(__name__)

SAMPLE_RATE_8K: Final = 8000
FRAME_SAMPLES: Final = 160
FRAME_BYTES: Final = 2 * FRAME_SAMPLES
FRAME_INTERVAL: Final = 0.020
SILENCE_FRAME: Final = bytes(FRAME_BYTES)

PcmCallback: TypeAlias = Callable[[bytes], None]


class Taps:
    """Callbacks that each get every frame, in the order they were added.

    A callback that raises is detached, so one broken consumer cannot log 50 times
    a second nor keep the others from their frames.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[PcmCallback] = []

    def add(self, callback: PcmCallback) -> Callable[[], None]:
        """Attach ``callback``; returns a function that detaches it (idempotent)."""
        self._callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return remove

    def emit(self, frame: bytes) -> None:
        # A copy: a callback may detach itself, or another, while we iterate.
        for callback in tuple(self._callbacks):
            try:
                callback(frame)
            except Exception:
                logger.exception("%s media tap failed; detaching it", self.name)
                with contextlib.suppress(ValueError):
                    self._callbacks.remove(callback)
