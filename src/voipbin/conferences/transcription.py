"""A conference's transcription: each participant through its own recogniser, so every transcript
says who spoke (``conferencecall_id``), under one Transcribe row (``reference_type`` conference).

VoIPBIN transcribes a conference's mix, where voices that overlap blur into one another and no
transcript can say whose words it holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from voipbin.core.clock import Clock
from voipbin.core.ids import new_id
from voipbin.media.endpoint import RtpEndpoint
from voipbin.speech.service import LiveTranscriber
from voipbin.speech.stt import Utterance
from voipbin.store.db import Store
from voipbin.store.models import Conference, Transcribe, Transcript
from voipbin.views import announce

log = logging.getLogger(__name__)

DRAIN_S: Final = 30.0  # how long a participant who left may take to finish its last utterance


@dataclass
class _Listener:
    untap: Callable[[], None]
    transcriber: LiveTranscriber
    reader: asyncio.Task[None]


class ConferenceTranscription:
    def __init__(
        self, store: Store, clock: Clock, transcriber: Callable[..., LiveTranscriber], conference: Conference, language: str
    ) -> None:
        self._store = store
        self._clock = clock
        self._make_transcriber = transcriber
        self.row = Transcribe(
            id=new_id(), customer_id=conference.customer_id, reference_type="conference", reference_id=conference.id,
            status="progressing", language=language or "en-US", direction="in", provider="", tm_create=clock.now(),
        )  # fmt: skip
        self._listeners: dict[str, _Listener] = {}

    async def start(self) -> None:
        async with self._store.transaction() as tx:
            tx.session.add(self.row)
            announce(tx, self.row, "transcribe_created")
            conference = await tx.session.get(Conference, self.row.reference_id, with_for_update=True)
            if conference is not None:
                conference.transcribe_id = self.row.id
                conference.transcribe_ids = [*conference.transcribe_ids, self.row.id]
                conference.tm_update = tx.clock.now()
                announce(tx, conference, "conference_updated")

    def listen(self, conferencecall_id: str, endpoint: RtpEndpoint) -> None:
        """Transcribe what this participant says from now on."""
        transcriber = self._make_transcriber(language=self.row.language, provider="")
        untap = endpoint.add_tap("in", transcriber.feed)
        reader = asyncio.create_task(self._publish(conferencecall_id, transcriber))
        self._listeners[conferencecall_id] = _Listener(untap, transcriber, reader)

    async def unlisten(self, conferencecall_id: str) -> None:
        """Stop listening to the participant; what it already said is still transcribed."""
        listener = self._listeners.pop(conferencecall_id, None)
        if listener is None:
            return
        listener.untap()
        listener.transcriber.close()
        _done, late = await asyncio.wait([listener.reader], timeout=DRAIN_S)
        for reader in late:
            log.warning("conference transcription %s: speech not decoded within %.0f s was dropped", self.row.id, DRAIN_S)
            reader.cancel()

    async def stop(self) -> None:
        await asyncio.gather(*(self.unlisten(row_id) for row_id in list(self._listeners)))
        async with self._store.transaction() as tx:
            row = await tx.session.get(Transcribe, self.row.id)
            if row is not None and row.status != "done":
                row.status, row.tm_update = "done", tx.clock.now()
                announce(tx, row, "transcribe_done")
            conference = await tx.session.get(Conference, self.row.reference_id, with_for_update=True)
            if conference is not None and conference.transcribe_id == self.row.id:
                conference.transcribe_id = ""  # transcribe_ids keeps it
                conference.tm_update = tx.clock.now()
                announce(tx, conference, "conference_updated")

    async def _publish(self, conferencecall_id: str, transcriber: LiveTranscriber) -> None:
        async for event in transcriber.results():
            if not isinstance(event, Utterance) or not event.final or not event.text.strip():
                continue
            try:
                await self._store_transcript(conferencecall_id, event.text)
            except Exception:
                log.exception("storing a transcript of conference transcription %s failed", self.row.id)

    async def _store_transcript(self, conferencecall_id: str, message: str) -> None:
        now = self._clock.now()
        transcript = Transcript(
            id=new_id(), customer_id=self.row.customer_id, transcribe_id=self.row.id, direction="in",
            conferencecall_id=conferencecall_id, message=message, tm_transcript=now, tm_create=now,
        )  # fmt: skip
        async with self._store.transaction() as tx:
            tx.session.add(transcript)
            announce(tx, transcript, "transcript_created")
