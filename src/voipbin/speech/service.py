"""The speech subsystem of one platform: TTS engines, the TTS cache and the STT worker pool."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voipbin.speech.stt import SttWorkerPool, Transcriber, check_engine
from voipbin.speech.tts import TtsCache, TtsService


class SpeechService:
    """Owns every speech worker process.

    Nothing starts until it is needed (the platform and API tests start fast):
    piper on the first English synthesis, the STT engine (``stt_engine``: Whisper,
    or pocketsphinx) when the first ``Transcriber`` is made. ``stop`` kills
    whatever was started.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        cache_bytes: int = 32 << 20,
        stt_processes: int = 1,
        stt_engine: str = "whisper",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.tts = TtsService.offline(cache=TtsCache(cache_bytes, cache_dir), environ=environ)
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

    def transcriber(self, **options: Any) -> Transcriber:
        """A ``Transcriber`` on the shared pool (options as ``Transcriber``'s)."""
        self.stt.warm()
        return Transcriber(self.stt, **options)

    async def stop(self) -> None:
        await self.tts.close()
        if self._stt is not None:
            await self._stt.stop()
