"""The speech subsystem of one platform: TTS engines, the TTS cache and the STT worker pool."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from voipbin.speech.cloud import deepgram
from voipbin.speech.stt import SttError, SttWorkerPool, Transcriber, TranscriberEvent, check_engine, check_language
from voipbin.speech.tts import TtsCache, TtsService

STT_PROVIDER_SETTING = "VOIPBIN_STT_PROVIDER"


class LiveTranscriber(Protocol):
    """What a call's transcription uses: ``Transcriber`` and the cloud ones alike."""

    def feed(self, pcm8k: bytes) -> None: ...

    def results(self) -> AsyncIterator[TranscriberEvent]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class SpeechService:
    """Owns every speech worker process.

    Nothing starts until it is needed (the platform and API tests start fast):
    piper on the first English synthesis, the STT engine (``stt_engine``: Whisper,
    or pocketsphinx; ``stt_processes`` workers, one per core by default) when the
    first ``Transcriber`` is made. ``stop`` kills
    whatever was started.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        cache_bytes: int = 32 << 20,
        stt_processes: int | None = None,
        stt_engine: str = "whisper",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self.tts = TtsService.offline(cache=TtsCache(cache_bytes, cache_dir), environ=environ)
        if stt_processes is not None and stt_processes < 1:
            raise SttError(f"the STT pool needs at least one worker, not {stt_processes}")
        self._stt_processes = stt_processes
        self._stt_engine = check_engine(stt_engine)  # a typo in the setting fails at startup, not mid-call
        self._stt: SttWorkerPool | None = None

    @property
    def stt(self) -> SttWorkerPool:
        if self._stt is None:
            self._stt = SttWorkerPool(self._stt_processes, engine=self._stt_engine)
        return self._stt

    async def start(self, *, preload: bool = False) -> None:
        """With ``preload``, start the workers now so the first call doesn't wait for model loads."""
        if preload:
            starts = [self.stt.start()]
            if self.tts.piper is not None:
                starts.append(self.tts.piper.start())
            await asyncio.gather(*starts)

    def transcriber(self, *, provider: str = "", **options: Any) -> LiveTranscriber:
        """A recogniser for one direction of a call (options as ``Transcriber``'s).

        Deepgram when ``provider`` (or, without one, ``VOIPBIN_STT_PROVIDER``) says
        "deepgram" and its key is set; otherwise a ``Transcriber`` on the shared pool.
        """
        if self._cloud_stt(provider):
            return deepgram.DeepgramTranscriber.from_environ(self._environ, **options)
        self.stt.warm()
        return Transcriber(self.stt, **options)

    def check_transcription(self, language: str, provider: str = "") -> None:
        """Raise ``SttError`` (naming what is supported) if a transcription in ``language`` would be refused."""
        if not self._cloud_stt(provider):
            check_language(language or "en-US")

    def _cloud_stt(self, provider: str) -> bool:
        chosen = provider or self._environ.get(STT_PROVIDER_SETTING, "")
        return chosen.strip().lower() == "deepgram" and bool(self._environ.get(deepgram.API_KEY_SETTING))

    async def stop(self) -> None:
        await self.tts.close()
        if self._stt is not None:
            await self._stt.stop()
