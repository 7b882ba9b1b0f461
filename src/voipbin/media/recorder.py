"""Call recording to WAV (8 kHz, 16-bit) from an endpoint's "in" and "out" taps."""

from __future__ import annotations

import os
import wave
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from voipbin.media.endpoint import RtpEndpoint

SAMPLE_RATE_8K: Final = 8000
RecordingMode: TypeAlias = Literal["stereo", "mixed"]


class WavRecorder:
    """Writes what the peer sent and what it heard, sample-aligned, to a WAV file.

    ``stereo`` puts the received audio ("in") on the left channel and the sent
    audio ("out") on the right; ``mixed`` sums them into one channel, clipped to
    16 bits. Samples are only written once both sides have them, so the channels
    cannot drift apart; if one side stops delivering for longer than
    ``max_skew_ms`` it is taken to be silent and padded. The endpoint's taps fire
    once per 20 ms tick, so writes are small; Python's file buffering absorbs them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: RecordingMode = "stereo",
        *,
        max_skew_ms: int = 200,
    ) -> None:
        if mode not in ("stereo", "mixed"):
            raise ValueError(f"recording mode must be 'stereo' or 'mixed', not {mode!r}")
        self.path = os.fspath(path)
        self.mode = mode
        self._max_skew = 2 * SAMPLE_RATE_8K * max_skew_ms // 1000
        self._in = bytearray()
        self._out = bytearray()
        self._detach: list[Callable[[], None]] = []
        # Open for the recorder's whole life, not one block: close() closes it.
        self._wav = wave.open(self.path, "wb")  # noqa: SIM115
        self._wav.setnchannels(2 if mode == "stereo" else 1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE_8K)
        self.closed = False

    def attach(self, endpoint: RtpEndpoint) -> None:
        """Record this endpoint until :meth:`close`."""
        self._detach.append(endpoint.add_tap("in", self.feed_in))
        self._detach.append(endpoint.add_tap("out", self.feed_out))

    def feed_in(self, pcm: bytes) -> None:
        """Audio received from the peer: 8 kHz 16-bit mono PCM."""
        if not self.closed:
            self._in += pcm
            self._write()

    def feed_out(self, pcm: bytes) -> None:
        """Audio sent to the peer: 8 kHz 16-bit mono PCM."""
        if not self.closed:
            self._out += pcm
            self._write()

    def _write(self, final: bool = False) -> None:
        if final or abs(len(self._in) - len(self._out)) > self._max_skew:
            longest = max(len(self._in), len(self._out))
            longest += longest % 2
            self._in = self._in.ljust(longest, b"\0")
            self._out = self._out.ljust(longest, b"\0")
        count = min(len(self._in), len(self._out)) // 2 * 2
        if not count:
            return
        left = np.frombuffer(bytes(self._in[:count]), dtype="<i2")
        right = np.frombuffer(bytes(self._out[:count]), dtype="<i2")
        del self._in[:count]
        del self._out[:count]
        if self.mode == "stereo":
            samples = np.empty(2 * len(left), dtype="<i2")
            samples[0::2] = left
            samples[1::2] = right
        else:
            mixed = left.astype(np.int32) + right.astype(np.int32)
            samples = np.clip(mixed, -32768, 32767).astype("<i2")
        # writeframesraw leaves the header to close(), instead of seeking back on every frame.
        self._wav.writeframesraw(samples.tobytes())

    def close(self) -> None:
        """Detach from the endpoint, write what is pending and finalize the header; idempotent."""
        if self.closed:
            return
        for detach in self._detach:
            detach()
        self._write(final=True)
        self.closed = True
        self._wav.close()


class MonoWavWriter:
    """One stream of 8 kHz 16-bit mono PCM frames to a WAV file (a conference's mix)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Open for the writer's whole life, not one block: close() closes it.
        self._wav = wave.open(self.path, "wb")  # noqa: SIM115
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE_8K)
        self.closed = False

    def feed(self, pcm: bytes) -> None:
        if not self.closed:
            self._wav.writeframesraw(pcm)  # the header is finalised by close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wav.close()
