"""G.711: both implementations byte-identical, known values, quantization bounds."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import pytest

from voipbin.media import g711
from voipbin.media.g711 import (
    AUDIOOP_G711,
    CODECS_BY_PT,
    DEFAULT_G711,
    NUMPY_G711,
    PCMA,
    PCMU,
    G711Implementation,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
ALL_PCM = ALL_SAMPLES.astype("<i2").tobytes()
ALL_CODES = bytes(range(256))

IMPLEMENTATIONS = [NUMPY_G711] + ([AUDIOOP_G711] if AUDIOOP_G711 is not None else [])
needs_audioop = pytest.mark.skipif(AUDIOOP_G711 is None, reason="audioop is not available")


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> npt.NDArray[np.int32]:
    return np.frombuffer(data, dtype="<i2").astype(np.int32)


@needs_audioop
@pytest.mark.parametrize("name", ["encode_ulaw", "encode_alaw"])
def test_numpy_encoder_matches_audioop_for_every_sample(name: str) -> None:
    assert AUDIOOP_G711 is not None
    assert getattr(NUMPY_G711, name)(ALL_PCM) == getattr(AUDIOOP_G711, name)(ALL_PCM)


@needs_audioop
@pytest.mark.parametrize("name", ["decode_ulaw", "decode_alaw"])
def test_numpy_decoder_matches_audioop_for_every_code(name: str) -> None:
    assert AUDIOOP_G711 is not None
    assert getattr(NUMPY_G711, name)(ALL_CODES) == getattr(AUDIOOP_G711, name)(ALL_CODES)


def test_default_prefers_audioop() -> None:
    assert DEFAULT_G711 is (AUDIOOP_G711 or NUMPY_G711)
    assert g711.encode_ulaw(ALL_PCM) == NUMPY_G711.encode_ulaw(ALL_PCM)
    assert g711.decode_alaw(ALL_CODES) == NUMPY_G711.decode_alaw(ALL_CODES)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_known_values(impl: G711Implementation) -> None:
    # Silence, the extremes, and the asymmetry of arithmetic shifts for -1.
    assert impl.encode_ulaw(pcm(0, 32767, -32768, -1)) == bytes([0xFF, 0x80, 0x00, 0x7E])
    assert impl.encode_alaw(pcm(0, 32767, -32768, -1)) == bytes([0xD5, 0xAA, 0x2A, 0x55])
    assert impl.decode_ulaw(bytes([0xFF, 0x7F, 0x80, 0x00])) == pcm(0, 0, 32124, -32124)
    assert impl.decode_alaw(bytes([0xD5, 0x55, 0xAA, 0x2A])) == pcm(8, -8, 32256, -32256)
    assert impl.encode_ulaw(b"") == b"" and impl.decode_alaw(b"") == b""


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_ulaw_round_trip_within_quantization_step(impl: G711Implementation) -> None:
    codes = np.frombuffer(impl.encode_ulaw(ALL_PCM), dtype=np.uint8).astype(np.int32)
    error = np.abs(ALL_SAMPLES - samples(impl.decode_ulaw(impl.encode_ulaw(ALL_PCM))))
    step = 8 << ((~codes >> 4) & 7)  # 16-bit step size of the chosen segment
    # Half a step, plus up to 4 for the 14-bit truncation of negative samples,
    # plus whatever lies beyond the largest code (32124) for clipped input.
    bound = np.maximum(step // 2 + 4, np.abs(ALL_SAMPLES) - 32124)
    assert np.all(error <= bound)
    assert error.max() <= 644


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_alaw_round_trip_within_half_a_step(impl: G711Implementation) -> None:
    codes = np.frombuffer(impl.encode_alaw(ALL_PCM), dtype=np.uint8).astype(np.int32)
    error = np.abs(ALL_SAMPLES - samples(impl.decode_alaw(impl.encode_alaw(ALL_PCM))))
    seg = ((codes ^ 0x55) >> 4) & 7
    step = np.where(seg == 0, 16, 16 << np.maximum(seg - 1, 0))
    assert np.all(error <= step // 2)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_decoded_values_re_encode_to_the_same_code(impl: G711Implementation) -> None:
    assert impl.encode_alaw(impl.decode_alaw(ALL_CODES)) == ALL_CODES
    again = impl.encode_ulaw(impl.decode_ulaw(ALL_CODES))
    # 0x7F is μ-law's "negative zero"; it decodes to 0, which encodes as 0xFF.
    assert again == ALL_CODES.replace(b"\x7f", b"\xff")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda i: i.name)
def test_encoders_reject_odd_length(impl: G711Implementation) -> None:
    with pytest.raises(ValueError):
        impl.encode_ulaw(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        impl.encode_alaw(b"\x00")


def test_accepts_bytearray_and_memoryview() -> None:
    data = bytearray(pcm(100, -100))
    for impl in IMPLEMENTATIONS:
        assert impl.encode_ulaw(data) == impl.encode_ulaw(memoryview(data)) == bytes([0xF2, 0x72])  # type: ignore[arg-type]


def test_codec_descriptors() -> None:
    assert CODECS_BY_PT == {0: PCMU, 8: PCMA}
    assert (PCMU.name, PCMU.payload_type, PCMU.clock_rate) == ("PCMU", 0, 8000)
    assert (PCMA.name, PCMA.payload_type, PCMA.clock_rate) == ("PCMA", 8, 8000)
    assert PCMU.samples_per_frame() == 160
    assert PCMU.samples_per_frame(0.030) == 240
    assert PCMU.silence() == b"\xff" * 160
    assert PCMA.silence(80) == b"\xd5" * 80
    frame = pcm(*range(-800, 800, 10))
    assert PCMA.decode(PCMA.encode(frame)) == g711.decode_alaw(g711.encode_alaw(frame))


def test_numpy_fallback_when_audioop_is_missing() -> None:
    # In a fresh interpreter, so the module under test here keeps its audioop.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['audioop'] = None\n"
        "from voipbin.media import g711\n"
        "assert g711.AUDIOOP_G711 is None and g711.DEFAULT_G711 is g711.NUMPY_G711\n"
        "print(g711.encode_ulaw(b'\\x00\\x00\\xff\\x7f').hex(), g711.PCMA.silence(2).hex())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["ff80", "d5d5"]
