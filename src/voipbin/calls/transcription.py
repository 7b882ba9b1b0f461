"""Live transcription of a call: each direction through its own recogniser, as transcripts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from voipbin.calls import records
from voipbin.calls.context import CallContext
from voipbin.core.ids import new_id
from voipbin.speech.stt import Transcriber
from voipbin.store.models import Transcribe, Transcript

if TYPE_CHECKING:
    from voipbin.calls.live import LiveCall

log = logging.getLogger(__name__)

# "in": what the phone (the caller's side) says; "out": what the platform plays to it.
DIRECTIONS = {"in": ("in",), "out": ("out",), "both": ("in", "out")}
DRAIN_S = 30  # how long a stopped transcription waits for the utterances already cut


class TranscribeSession:
    def __init__(
        self, ctx: CallContext, live: LiveCall, language: str, direction: str, provider: str, activeflow_id: str
    ) -> None:
        self.ctx = ctx
        self.live = live
        self.row = Transcribe(
            id=new_id(),
            customer_id=live.customer_id,
            activeflow_id=activeflow_id,
            reference_type="call",
            reference_id=live.id,
            status="progressing",
            language=language or "en-US",
            direction=direction if direction in DIRECTIONS else "both",
            provider=provider,
            tm_create=ctx.clock.now(),
        )
        self._untaps: list[Callable[[], None]] = []
        self._transcribers: list[Transcriber] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Raises SttError (e.g. an unsupported language) before anything is recorded."""
        endpoint = self.live.endpoint
        transcribers = [(d, self.ctx.transcriber(language=self.row.language)) for d in DIRECTIONS[self.row.direction]]
        await records.add(self.ctx.store, self.row, "transcribe_created")
        for direction, transcriber in transcribers:
            self._transcribers.append(transcriber)
            if endpoint is not None:
                self._untaps.append(endpoint.add_tap(direction, transcriber.feed))  # type: ignore[arg-type]
            self._readers.append(asyncio.create_task(self._publish(direction, transcriber)))

    async def _publish(self, direction: str, transcriber: Transcriber) -> None:
        async for utterance in transcriber.results():
            now = self.ctx.clock.now()
            transcript = Transcript(
                id=new_id(),
                customer_id=self.row.customer_id,
                transcribe_id=self.row.id,
                direction=direction,
                message=utterance.text,
                tm_transcript=now,
                tm_create=now,
            )
            try:
                await records.add(self.ctx.store, transcript, "transcript_created")
            except Exception:
                log.exception("storing a transcript of call %s failed", self.live.id)

    async def stop(self) -> None:
        """Stop listening, let the utterances already cut finish decoding, then mark it done."""
        for untap in self._untaps:
            untap()
        self._untaps.clear()
        for transcriber in self._transcribers:
            transcriber.close()
        if self._readers:
            _done, late = await asyncio.wait(self._readers, timeout=DRAIN_S)
            if late:
                log.warning("transcription of call %s: %d utterance(s) not decoded within %d s were dropped",
                            self.live.id, len(late), DRAIN_S)
            for reader in late:
                reader.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)  # collect every outcome
        await records.change(self.ctx.store, Transcribe, self.row.id, "transcribe_done", status="done")
