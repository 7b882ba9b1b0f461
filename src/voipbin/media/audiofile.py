"""Audio files (WAV, MP3, Ogg, FLAC, M4A, ...) as 8 kHz mono 16-bit PCM for playback into a call.

Decoding is CPU work in FFmpeg (through PyAV): callers on the event loop run
``decode_to_pcm8k`` in a thread so the media ticker never waits for it.
"""

from __future__ import annotations

import io

import av
import numpy as np

RATE = 8000
MAX_BYTES = 20 << 20
MAX_SECONDS = 600.0

# Only audio containers: demuxers such as HLS or concat open further URLs named in the file.
_DEMUXERS = "wav,w64,mp3,ogg,flac,mov,matroska,aac,aiff,au,caf,amr"


def decode_to_pcm8k(data: bytes, *, max_bytes: int = MAX_BYTES, max_seconds: float = MAX_SECONDS) -> bytes:
    """The first audio stream of ``data``, mixed to mono and resampled to 8 kHz 16-bit little-endian PCM.

    Raises ``ValueError`` for input over ``max_bytes``, audio over ``max_seconds``, and
    anything that is not a decodable audio file.
    """
    if len(data) > max_bytes:
        raise ValueError(f"the audio file is larger than {max_bytes / (1 << 20):g} MiB")
    try:
        with av.open(io.BytesIO(data), "r", options={"format_whitelist": _DEMUXERS}) as container:
            if not container.streams.audio:
                raise ValueError("the file has no audio stream")
            pcm = _decode(container, max_seconds)
    except av.FFmpegError as error:
        raise ValueError(f"not a playable audio file (WAV, MP3, Ogg, FLAC, M4A): {error.strerror}") from None
    if not pcm:
        raise ValueError("the audio file holds no samples")
    return pcm


def _decode(container: av.container.InputContainer, max_seconds: float) -> bytes:
    max_samples = int(max_seconds * RATE)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks: list[np.ndarray] = []
    samples = 0
    for frame in container.decode(container.streams.audio[0]):
        for converted in resampler.resample(frame):
            chunks.append(converted.to_ndarray().reshape(-1))
            samples += converted.samples
        if samples > max_samples:
            raise ValueError(f"the audio is longer than {max_seconds:g} s")
    chunks.extend(converted.to_ndarray().reshape(-1) for converted in resampler.resample(None))
    return np.concatenate(chunks).astype("<i2").tobytes() if chunks else b""
