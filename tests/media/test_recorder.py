"""WAV recording from endpoint taps."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.media.conftest import dominant_hz, tone, wait_until
from voipbin.media.endpoint import FRAME_BYTES, RtpEndpoint
from voipbin.media.recorder import WavRecorder


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 8000
        assert wav.getsampwidth() == 2
        channels = wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return channels, samples.reshape(-1, channels)


def frame(value: int, frames: int = 1) -> bytes:
    return np.full(160 * frames, value, dtype="<i2").tobytes()


async def test_stereo_recording_of_a_call(pair: tuple[RtpEndpoint, RtpEndpoint], tmp_path: Path) -> None:
    a, b = pair
    path = tmp_path / "call.wav"
    recorder = WavRecorder(path)
    recorder.attach(a)
    # The far end talks first, then we answer: each channel must hold only its side.
    await asyncio.wait_for(b.play(tone(1000, 0.4)).done, 2)
    await asyncio.sleep(0.15)  # until it has come through the jitter buffer
    await asyncio.wait_for(a.play(tone(440, 0.4)).done, 2)
    await asyncio.sleep(0.1)
    recorder.close()
    recorder.close()

    channels, samples = read_wav(path)
    assert channels == 2
    left, right = samples[:, 0], samples[:, 1]
    loud_left = np.flatnonzero(np.abs(left) > 1000)
    loud_right = np.flatnonzero(np.abs(right) > 1000)
    assert dominant_hz(left[loud_left[0] : loud_left[-1]].tobytes()) == pytest.approx(1000, abs=10)
    assert dominant_hz(right[loud_right[0] : loud_right[-1]].tobytes()) == pytest.approx(440, abs=10)
    # Each tone sits where it happened: what we heard, then what we said.
    assert loud_left[0] < 0.2 * 8000
    assert loud_left[-1] < loud_right[0] < loud_left[-1] + 0.3 * 8000
    assert len(samples) >= 0.8 * 8000

    # Detached on close: the file no longer grows.
    size = path.stat().st_size
    await asyncio.sleep(0.1)
    assert path.stat().st_size == size


def test_channels_stay_aligned_when_one_side_is_late(tmp_path: Path) -> None:
    path = tmp_path / "aligned.wav"
    recorder = WavRecorder(path)
    for value in (100, 200, 300):
        recorder.feed_in(frame(value))
    for value in (-100, -200, -300):
        recorder.feed_out(frame(value))
    recorder.close()
    _, samples = read_wav(path)
    assert samples.shape == (480, 2)
    assert list(samples[::160, 0]) == [100, 200, 300]
    assert list(samples[::160, 1]) == [-100, -200, -300]


def test_a_side_that_stops_delivering_is_padded_with_silence(tmp_path: Path) -> None:
    path = tmp_path / "one_sided.wav"
    recorder = WavRecorder(path, max_skew_ms=100)
    for _ in range(10):  # 200 ms of one side only
        recorder.feed_in(frame(1000))
    recorder._wav._file.flush()  # type: ignore[attr-defined]
    assert path.stat().st_size >= 44 + 4 * 6 * 160  # written already, not held back forever
    recorder.close()
    _, samples = read_wav(path)
    assert len(samples) == 10 * 160
    assert (samples[:, 0] == 1000).all()
    assert (samples[:, 1] == 0).all()


def test_mixed_mode_sums_with_clipping(tmp_path: Path) -> None:
    path = tmp_path / "mixed.wav"
    recorder = WavRecorder(path, mode="mixed")
    recorder.feed_in(frame(30000) + frame(-30000) + frame(100))
    recorder.feed_out(frame(30000) + frame(-30000) + frame(23))
    recorder.close()
    recorder.feed_in(frame(1))  # after close: ignored
    channels, samples = read_wav(path)
    assert channels == 1
    assert list(samples[::160, 0]) == [32767, -32768, 123]


def test_odd_tail_and_bad_mode(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "odd.wav")
    recorder.feed_in(b"\x01")
    recorder.close()
    assert read_wav(tmp_path / "odd.wav")[1].shape == (1, 2)
    with pytest.raises(ValueError):
        WavRecorder(tmp_path / "x.wav", mode="surround")  # type: ignore[arg-type]


async def test_recorder_frames_match_tap_frames(
    pair: tuple[RtpEndpoint, RtpEndpoint], tmp_path: Path
) -> None:
    a, _ = pair
    out: list[bytes] = []
    recorder = WavRecorder(tmp_path / "r.wav")
    recorder.attach(a)
    a.add_tap("out", out.append)
    await wait_until(lambda: len(out) >= 10)
    recorder.close()
    _, samples = read_wav(tmp_path / "r.wav")
    assert len(samples) * 2 >= len(out) * FRAME_BYTES - FRAME_BYTES
