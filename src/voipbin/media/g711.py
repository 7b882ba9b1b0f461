"""G.711 μ-law (PCMU, PT 0) and A-law (PCMA, PT 8) for 16-bit signed little-endian PCM.

Two interchangeable implementations: the C ``audioop`` module where Python still
ships it (deprecated in 3.11, gone in 3.13), and numpy lookup tables computed from
the G.711 segment algorithm itself. The tables follow the same reference code
(Sun's g711.c) that ``audioop`` uses, so both give identical bytes and switching
Python versions never changes what goes on the wire.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Final

import numpy as np
import numpy.typing as npt

_audioop: ModuleType | None
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as _audioop
except ImportError:  # Python 3.13+ without the audioop-lts backport
    _audioop = None

# audioop works in native byte order; our PCM is little-endian by contract.
if sys.byteorder != "little":
    _audioop = None

# Segment end points, in the 14-bit (μ-law) and 13-bit (A-law) domains the
# reference coder works in after dropping the low bits of a 16-bit sample.
_SEG_UEND: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_AEND: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes")


# --------------------------------------------------------------------------- tables


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    sample = np.arange(-32768, 32768, dtype=np.int32)
    value = sample >> 2  # 14-bit, arithmetic shift like the C code
    negative = value < 0
    magnitude = np.minimum(np.where(negative, -value, value), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, magnitude, side="left")
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F))
    # μ-law transmits every bit inverted; the sign bit is set for positive samples.
    code ^= np.where(negative, 0x7F, 0xFF)
    table = np.empty(65536, dtype=np.uint8)
    table[sample & 0xFFFF] = code
    return table


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    sample = np.arange(-32768, 32768, dtype=np.int32)
    value = sample >> 3  # 13-bit
    negative = value < 0
    # One's-complement magnitude for negatives keeps the code symmetric around 0.
    magnitude = np.where(negative, -value - 1, value)
    seg = np.searchsorted(_SEG_AEND, magnitude, side="left")
    shift = np.where(seg < 2, 1, seg)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> shift) & 0x0F))
    # A-law inverts the even bits (0x55) and sets the sign bit for positive samples.
    code ^= np.where(negative, 0x55, 0xD5)
    table = np.empty(65536, dtype=np.uint8)
    table[sample & 0xFFFF] = code
    return table


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    # Rebuild the segment midpoint: mantissa, half-step bias, then scale by segment.
    t = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code & 0x70) >> 4
    t = (code & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(code & 0x80, t, -t).astype(np.int16)


@functools.cache
def _tables() -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8], npt.NDArray[np.int16]
]:
    """Built on first use (a few ms) so a process that has audioop never pays for them."""
    return _ulaw_encode_table(), _ulaw_decode_table(), _alaw_encode_table(), _alaw_decode_table()


def _np_encode(pcm: bytes, table: npt.NDArray[np.uint8]) -> bytes:
    _check_pcm(pcm)
    # Reading the samples as unsigned indexes the 65536-entry table directly.
    return bytes(table[np.frombuffer(pcm, dtype="<u2")].tobytes())


def _np_decode(data: bytes, table: npt.NDArray[np.int16]) -> bytes:
    return table[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def _np_encode_ulaw(pcm: bytes) -> bytes:
    return _np_encode(pcm, _tables()[0])


def _np_decode_ulaw(data: bytes) -> bytes:
    return _np_decode(data, _tables()[1])


def _np_encode_alaw(pcm: bytes) -> bytes:
    return _np_encode(pcm, _tables()[2])


def _np_decode_alaw(data: bytes) -> bytes:
    return _np_decode(data, _tables()[3])


# --------------------------------------------------------------------------- implementations


@dataclass(frozen=True)
class G711Implementation:
    """One complete set of G.711 coders; PCM in and out is 16-bit signed little-endian."""

    name: str
    encode_ulaw: Callable[[bytes], bytes]
    decode_ulaw: Callable[[bytes], bytes]
    encode_alaw: Callable[[bytes], bytes]
    decode_alaw: Callable[[bytes], bytes]


NUMPY_G711: Final = G711Implementation(
    "numpy", _np_encode_ulaw, _np_decode_ulaw, _np_encode_alaw, _np_decode_alaw
)


def _audioop_implementation(module: ModuleType) -> G711Implementation:
    # Check the length ourselves so odd input raises ValueError, not audioop.error.
    def encode_ulaw(pcm: bytes) -> bytes:
        _check_pcm(pcm)
        return bytes(module.lin2ulaw(pcm, 2))

    def decode_ulaw(data: bytes) -> bytes:
        return bytes(module.ulaw2lin(data, 2))

    def encode_alaw(pcm: bytes) -> bytes:
        _check_pcm(pcm)
        return bytes(module.lin2alaw(pcm, 2))

    def decode_alaw(data: bytes) -> bytes:
        return bytes(module.alaw2lin(data, 2))

    return G711Implementation("audioop", encode_ulaw, decode_ulaw, encode_alaw, decode_alaw)


AUDIOOP_G711: Final[G711Implementation | None] = (
    _audioop_implementation(_audioop) if _audioop is not None else None
)
DEFAULT_G711: Final = AUDIOOP_G711 or NUMPY_G711


def encode_ulaw(pcm: bytes) -> bytes:
    """16-bit PCM to μ-law, one byte per sample."""
    return DEFAULT_G711.encode_ulaw(pcm)


def decode_ulaw(data: bytes) -> bytes:
    """μ-law to 16-bit PCM."""
    return DEFAULT_G711.decode_ulaw(data)


def encode_alaw(pcm: bytes) -> bytes:
    """16-bit PCM to A-law, one byte per sample."""
    return DEFAULT_G711.encode_alaw(pcm)


def decode_alaw(data: bytes) -> bytes:
    """A-law to 16-bit PCM."""
    return DEFAULT_G711.decode_alaw(data)


# --------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class Codec:
    """An RTP audio codec as SDP names it, with its PCM coders."""

    name: str
    payload_type: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]
    clock_rate: int = 8000
    channels: int = 1

    def samples_per_frame(self, ptime: float = 0.020) -> int:
        return round(self.clock_rate * ptime)

    def silence(self, samples: int = 160) -> bytes:
        """Encoded digital silence: what to send when there is nothing to say."""
        return self.encode(bytes(2 * samples))


PCMU: Final = Codec("PCMU", 0, encode_ulaw, decode_ulaw)
PCMA: Final = Codec("PCMA", 8, encode_alaw, decode_alaw)
CODECS_BY_PT: Final[dict[int, Codec]] = {PCMU.payload_type: PCMU, PCMA.payload_type: PCMA}
CODECS_BY_NAME: Final[dict[str, Codec]] = {PCMU.name: PCMU, PCMA.name: PCMA}
