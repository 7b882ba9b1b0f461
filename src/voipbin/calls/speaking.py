"""Speakings: text-to-speech injected into a live call on demand, queued, sentence by sentence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from voipbin.calls import records
from voipbin.calls.context import CallContext
from voipbin.core.ids import new_id
from voipbin.media.endpoint import Playback
from voipbin.speech.tts import TtsError
from voipbin.store.models import Speaking

if TYPE_CHECKING:
    from voipbin.calls.live import LiveCall

log = logging.getLogger(__name__)

MAX_QUEUED_TEXTS = 100


class SpeakingSession:
    """One speaking stream on one call: ``say`` queues text; a worker speaks it in order."""

    def __init__(self, ctx: CallContext, live: LiveCall, language: str, provider: str, voice_id: str, direction: str) -> None:
        self.ctx = ctx
        self.live = live
        self.row = Speaking(
            id=new_id(),
            customer_id=live.customer_id,
            reference_type="call",
            reference_id=live.id,
            language=language,
            provider=provider,
            voice_id=voice_id,
            direction=direction,
            status="initiating",
            tm_create=ctx.clock.now(),
        )
        self._texts: asyncio.Queue[str] = asyncio.Queue(MAX_QUEUED_TEXTS)
        self._current: Playback | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.row.status == "active"

    async def start(self) -> None:
        """Create it (status initiating), check the engine, then go active."""
        tts = self.ctx.tts
        engine = tts.engine_for(self.row.provider, self.row.language or "en-US")  # TtsError before anything exists
        if self.row.provider and engine.name != self.row.provider.strip().lower():
            log.info("speaking on call %s: provider %r is not available here; %s speaks",
                     self.live.id, self.row.provider, engine.name)
        self.row.provider = engine.name  # which engine speaks, as the speaking's view shows
        store = self.ctx.store
        await records.add(store, self.row, "speaking_created")
        self._worker = asyncio.create_task(self._speak())
        self.row = await records.change(store, Speaking, self.row.id, "speaking_started", status="active")

    def say(self, text: str) -> None:
        """Queue text; raises asyncio.QueueFull when far too much is already waiting."""
        self._texts.put_nowait(text)

    def flush(self) -> None:
        """Drop text not yet started; what is being spoken finishes."""
        while not self._texts.empty():
            self._texts.get_nowait()

    def interrupt(self) -> None:
        """Cut off the current speech now, and drop the queue."""
        self.flush()
        endpoint = self.live.endpoint
        if self._current is not None and endpoint is not None:
            endpoint.cancel(self._current)

    async def stop(self) -> None:
        """End the stream for good (stopped), e.g. on DELETE or when the call hangs up."""
        if self.row.status == "stopped":
            return
        self.interrupt()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        stopped = await records.change(self.ctx.store, Speaking, self.row.id, "speaking_stopped", status="stopped")
        self.row = stopped or self.row
        self.row.status = "stopped"

    async def _speak(self) -> None:
        tts = self.ctx.tts
        while True:
            text = await self._texts.get()
            endpoint = self.live.endpoint
            if endpoint is None:
                continue
            chunks = tts.stream(text, self.row.language or "en-US", self.row.voice_id, provider=self.row.provider)
            self._current = endpoint.play_stream(_logged(chunks, self.row.id))
            await self._current.done
            self._current = None


async def _logged(chunks, speaking_id: str):  # type: ignore[no-untyped-def]
    try:
        async for pcm in chunks:
            yield pcm
    except TtsError as error:
        log.warning("speaking %s: synthesis failed: %s", speaking_id, error)
