"""ElevenLabs text-to-speech over its HTTP streaming endpoint, as 8 kHz 16-bit mono PCM.

ElevenLabs streams raw 16 kHz PCM while it synthesises; each piece is resampled as it
arrives, so a call hears the first words before the rest of the answer is on the wire.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import httpx
import numpy as np
import soxr

from voipbin.speech.tts import CLOUD_PROVIDERS, RATE, TtsConfigError, TtsEngine, TtsError

API_KEY_SETTING = CLOUD_PROVIDERS["elevenlabs"]
BASE_URL_SETTING = "VOIPBIN_ELEVENLABS_BASE_URL"
DEFAULT_BASE_URL = "https://api.elevenlabs.io"
# The lowest-latency ElevenLabs model, multilingual: the language follows the text.
DEFAULT_MODEL = "eleven_flash_v2_5"

# Premade voices every ElevenLabs account has.
RACHEL = "21m00Tcm4TlvDzCDLuZ4"
ADAM = "pNInz6obpgDQGcFmaJgB"
_GENDER_VOICES: Mapping[str, str] = {"": RACHEL, "neutral": RACHEL, "female": RACHEL, "male": ADAM}

_SOURCE_RATE = 16000
_OUTPUT_FORMAT = f"pcm_{_SOURCE_RATE}"
# A voice id goes into the URL path: nothing but its alphabet may pass.
_VOICE_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_DETAIL_CHARS = 200


class ElevenLabsTts(TtsEngine):
    """One HTTP request per text; the key is sent to ``base_url`` and nowhere else."""

    name = "elevenlabs"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        timeout: float = 30.0,
    ) -> None:
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._timeout = timeout

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ElevenLabsTts:
        return cls(environ[API_KEY_SETTING], base_url=environ.get(BASE_URL_SETTING) or DEFAULT_BASE_URL)

    def __repr__(self) -> str:  # never the key
        return f"ElevenLabsTts(base_url={self.base_url!r}, model={self.model!r})"

    async def resolve_voice(self, language: str = "en-US", voice: str = "", gender: str = "") -> str:
        try:
            default = _GENDER_VOICES[gender.strip().lower()]
        except KeyError:
            raise TtsConfigError(f"gender must be male, female or neutral, not {gender!r}") from None
        if not voice:
            return default
        if not _VOICE_ID.fullmatch(voice):
            raise TtsConfigError(f"{voice!r} is not an ElevenLabs voice id (one looks like {RACHEL!r})")
        return voice

    async def render(self, text: str, voice: str) -> bytes:
        return b"".join([pcm async for pcm in self._speak(text, voice)])

    async def stream(
        self, text: str, language: str = "en-US", voice: str = "", gender: str = ""
    ) -> AsyncGenerator[bytes, None]:
        # One request for the whole text: ElevenLabs streams it, so splitting into sentences gains nothing.
        resolved = await self.resolve_voice(language, voice, gender)
        if text.strip():
            async for pcm in self._speak(text, resolved):
                yield pcm

    async def _speak(self, text: str, voice: str) -> AsyncGenerator[bytes, None]:
        """8 kHz PCM of ``text``, piece by piece as ElevenLabs sends it."""
        url = f"{self.base_url}/v1/text-to-speech/{voice}/stream"
        try:
            # A client per request: TtsService makes engines per request and holds none open.
            async with httpx.AsyncClient(timeout=self._timeout) as client, client.stream(
                "POST",
                url,
                params={"output_format": _OUTPUT_FORMAT},
                headers={"xi-api-key": self._key},
                json={"text": text, "model_id": self.model},
            ) as response:
                if response.status_code != httpx.codes.OK:
                    raise self._refusal(response.status_code, await response.aread())
                async for pcm in _resampled(response.aiter_bytes()):
                    yield pcm
        except httpx.HTTPError as exc:
            raise TtsError(self._redact(f"ElevenLabs at {self.base_url} failed: {type(exc).__name__}: {exc}")) from None

    def _refusal(self, status: int, body: bytes) -> TtsError:
        if status == httpx.codes.UNAUTHORIZED:
            advice = f"ElevenLabs refused the API key (HTTP 401): check {API_KEY_SETTING}"
        elif status == httpx.codes.TOO_MANY_REQUESTS:
            advice = "ElevenLabs is rate limiting this account (HTTP 429): too many requests at once for its plan"
        else:
            advice = f"ElevenLabs answered HTTP {status}"
        detail = _detail(body)
        return TtsError(self._redact(f"{advice}: {detail}" if detail else advice))

    def _redact(self, message: str) -> str:
        return message.replace(self._key, "<key>") if self._key else message


def _detail(body: bytes) -> str:
    """ElevenLabs' own explanation (``{"detail": {"message": …}}``), else the start of the body."""
    try:
        detail = json.loads(body).get("detail", "")
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:_DETAIL_CHARS]
    if isinstance(detail, dict):
        detail = detail.get("message", "")
    return str(detail)[:_DETAIL_CHARS]


async def _resampled(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """16 kHz PCM pieces, of any byte length, as 8 kHz PCM with no gap or click at the seams."""
    resampler = soxr.ResampleStream(_SOURCE_RATE, RATE, 1, dtype="int16")
    odd = b""  # a sample split between two pieces
    async for chunk in chunks:
        data = odd + chunk
        odd = data[len(data) // 2 * 2 :]
        out = resampler.resample_chunk(np.frombuffer(data[: len(data) - len(odd)], dtype="<i2"))
        if out.size:
            yield out.astype("<i2").tobytes()
    tail = resampler.resample_chunk(np.empty(0, dtype="<i2"), last=True)
    if tail.size:
        yield tail.astype("<i2").tobytes()
