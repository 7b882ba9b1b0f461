"""Audio files for the play action: WAV and MP3 of a known tone, decoded to 8 kHz mono PCM."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from voipbin.media.audiofile import MAX_BYTES, RATE, decode_to_pcm8k


def encode_tone(
    container: str, codec: str, *, seconds: float = 1.0, rate: int = 44100, frequency: float = 440.0
) -> bytes:
    """A stereo sine tone encoded by FFmpeg, as a file's bytes."""
    output = io.BytesIO()
    samples = int(seconds * rate)
    tone = (0.5 * np.sin(2 * np.pi * frequency * np.arange(samples) / rate)).astype(np.float32)
    stereo = np.stack([tone, tone])
    with av.open(output, "w", format=container) as file:
        stream = file.add_stream(codec, rate=rate, layout="stereo")
        step = stream.codec_context.frame_size or 1024
        for start in range(0, samples, step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start : start + step]), "fltp", "stereo")
            frame.sample_rate, frame.pts = rate, start
            file.mux(stream.encode(frame))
        file.mux(stream.encode(None))
    return output.getvalue()


def dominant_frequency(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum[1:])) + 1])


@pytest.mark.parametrize(("container", "codec"), [("wav", "pcm_s16le"), ("wav", "pcm_s24le"), ("mp3", "libmp3lame")])
def test_a_tone_survives_decoding_to_8k_mono(container: str, codec: str) -> None:
    pcm = decode_to_pcm8k(encode_tone(container, codec))
    assert len(pcm) // 2 == pytest.approx(RATE, abs=200)
    assert dominant_frequency(pcm) == pytest.approx(440.0, abs=3.0)
    level = np.sqrt(np.mean(np.frombuffer(pcm, dtype="<i2").astype(np.float64) ** 2))
    assert level == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.1)  # both channels mixed, not summed


@pytest.mark.parametrize("data", [b"", b"<html><body>404 Not Found</body></html>", bytes(range(256)) * 40])
def test_what_is_not_audio_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a playable audio file"):
        decode_to_pcm8k(data)


def test_a_playlist_is_not_followed() -> None:
    playlist = b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    with pytest.raises(ValueError, match="not a playable audio file"):
        decode_to_pcm8k(playlist)


def test_oversized_input_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than 20 MiB"):
        decode_to_pcm8k(bytes(MAX_BYTES + 1))


def test_overlong_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 2 s"):
        decode_to_pcm8k(encode_tone("mp3", "libmp3lame", seconds=3.0), max_seconds=2.0)
