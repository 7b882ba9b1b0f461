"""Live transcription of a call: each direction through its own recogniser, as transcripts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from voipbin.calls import records
from voipbin.calls.context import CallContext
from voipbin.core.clock import format_timestamp
from voipbin.core.ids import new_id
from voipbin.events.topics import customer_topic
from voipbin.speech.service import LiveTranscriber
from voipbin.speech.stt import SpeechBoundary, SpeechDropped, TranscriberEvent, Utterance
from voipbin.store.models import Transcribe, Transcript

if TYPE_CHECKING:
    from voipbin.calls.live import LiveCall

log = logging.getLogger(__name__)

# "in": what the phone (the caller's side) says; "out": what the platform plays to it.
DIRECTIONS = {"in": ("in",), "out": ("out",), "both": ("in", "out")}
DRAIN_S = 30  # how long a stopped transcription waits for the utterances already cut
DROPPED_MESSAGE = "speech not transcribed: the recognisers are overloaded"


class TranscribeSession:
    def __init__(
        self,
        ctx: CallContext,
        live: LiveCall,
        language: str,
        direction: str,
        provider: str,
        activeflow_id: str,
        interim: bool = False,
    ) -> None:
        self.ctx = ctx
        self.live = live
        self.interim = interim
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
        self._transcribers: list[LiveTranscriber] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Raises SttError (e.g. an unsupported language) before anything is recorded."""
        endpoint = self.live.endpoint
        transcribers = [
            (d, self.ctx.transcriber(language=self.row.language, provider=self.row.provider, interim=self.interim))
            for d in DIRECTIONS[self.row.direction]
        ]
        await records.add(self.ctx.store, self.row, "transcribe_created")
        for direction, transcriber in transcribers:
            self._transcribers.append(transcriber)
            if endpoint is not None:
                self._untaps.append(endpoint.add_tap(direction, transcriber.feed))  # type: ignore[arg-type]
            self._readers.append(asyncio.create_task(self._publish(direction, transcriber)))

    async def _publish(self, direction: str, transcriber: LiveTranscriber) -> None:
        streaming_id = new_id()  # VoIPBIN's name for one direction's recognition stream
        async for event in transcriber.results():
            try:
                await self._announce(direction, streaming_id, event)
            except Exception:
                log.exception("publishing a transcription event of call %s failed", self.live.id)

    async def _announce(self, direction: str, streaming_id: str, event: TranscriberEvent) -> None:
        match event:
            case Utterance(final=True):
                if self.interim:
                    await self._speech_event("transcribe_speech_ended", direction, streaming_id, event.text)
                await self._store_transcript(direction, event.text)
            case Utterance():
                await self._speech_event("transcribe_speech_interim", direction, streaming_id, event.text)
            case SpeechBoundary(kind="started"):
                await self._speech_event("transcribe_speech_started", direction, streaming_id, "")
            case SpeechBoundary():
                pass  # transcribe_speech_ended goes out with the final text, just before its transcript
            case SpeechDropped():
                log.warning(
                    "transcription of call %s dropped %.1f s of speech: STT overloaded",
                    self.live.id,
                    event.end_time - event.start_time,
                )
                await self._speech_event("transcribe_speech_dropped", direction, streaming_id, DROPPED_MESSAGE)

    async def _store_transcript(self, direction: str, message: str) -> None:
        now = self.ctx.clock.now()
        transcript = Transcript(
            id=new_id(),
            customer_id=self.row.customer_id,
            transcribe_id=self.row.id,
            direction=direction,
            message=message,
            tm_transcript=now,
            tm_create=now,
        )
        await records.add(self.ctx.store, transcript, "transcript_created")

    async def _speech_event(self, event_type: str, direction: str, streaming_id: str, message: str) -> None:
        """A speech event (VoIPBIN's shape): published under the transcribe's topic, not stored as a row."""
        now = format_timestamp(self.ctx.clock.now())
        customer_id = self.row.customer_id
        data = {
            "id": new_id(),
            "customer_id": customer_id,
            "streaming_id": streaming_id,
            "transcribe_id": self.row.id,
            "direction": direction,
            "message": message,
            "tm_event": now,
            "tm_create": now,
        }
        async with self.ctx.store.transaction() as tx:
            tx.emit(customer_id, event_type, data, [customer_topic(customer_id, "transcribe", self.row.id)])

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
                log.warning(
                    "transcription of call %s: %d utterance(s) not decoded within %d s were dropped",
                    self.live.id,
                    len(late),
                    DRAIN_S,
                )
            for reader in late:
                reader.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)  # collect every outcome
        await records.change(self.ctx.store, Transcribe, self.row.id, "transcribe_done", status="done")
