"""AI summaries (VoIPBIN's ``aisummaries`` and the ``ai_summary`` action): a model's summary of a
call's or a transcribe's transcript, made once the transcript is complete.

A summary of a live call transcribes it (starting a transcription if the call has none) and
waits for the call to end; one of a finished transcription is made at once. The work is claimed
with a lease on the row, so whichever node sees the transcription end first makes the summary,
and a summary whose node stopped halfway is taken up again once its lease runs out. When it is
done, the customer's ``on_end_flow_id`` runs without a call, with ``voipbin.ai_summary.*``.

VoIPBIN skips ``ai_summary`` inside call flows (it wants a reference that is not a call's
media); here a call flow is the usual place for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import or_, select, update

from voipbin.ai.llm import ChatModel, LlmError, LlmText
from voipbin.calls.service import CallError, CallStateError, SummaryRefused, SummaryRequest
from voipbin.conferences.service import ConferenceError
from voipbin.core.clock import Clock
from voipbin.core.ids import is_uuid, new_id
from voipbin.events.bus import EventBus, Subscription
from voipbin.flows.actions import NIL_ID
from voipbin.store.db import Store
from voipbin.store.models import AiSummary, Call, Conference, Flow, Transcribe, Transcript
from voipbin.views import announce

log = logging.getLogger(__name__)

REFERENCE_TYPES: Final = ("call", "conference", "transcribe")
LEASE: Final = timedelta(minutes=5)
SWEEP_S: Final = 30.0
"""How often progressing summaries are looked at even if no event said so (missed events, restarts)."""
CONCURRENT: Final = 2
MAX_TRANSCRIPT_CHARS: Final = 6000
"""What of a transcript goes to the model: its start and its end (most of it) when it is longer.
About 1,500 tokens, which the shipped model reads in seconds on one core."""
HEAD_CHARS: Final = 2000
SPEAKERS: Final = {"in": "Caller", "out": "Agent"}
# Events after which a summary may be ready: its transcription ended, or it was just created.
WAKING_EVENTS: Final = frozenset({"transcribe_done", "summary_created"})

# Starts the customer's flow without a call: (customer_id, flow_id, variables, (reference type, id)).
FlowStarter = Callable[[str, str, dict[str, str], tuple[str, str]], Awaitable[str]]
# Starts (or finds) the live call's or conference's transcription: (customer_id, id, language) -> transcribe id.
CallTranscriber = Callable[[str, str, str], Awaitable[str]]


@dataclass(frozen=True)
class SummaryContext:
    store: Store
    clock: Clock
    bus: EventBus
    model: Callable[[], Awaitable[ChatModel]]  # the model summaries are made with
    transcribe_call: CallTranscriber
    transcribe_conference: CallTranscriber
    start_flow: FlowStarter


def summary_messages(language: str, transcript: str) -> list[dict[str, str]]:
    """The request: the question after the transcript, which small models follow far better than a
    system prompt of rules (SmolLM2-135M answered one with condolences); the language only when it is
    not English, since naming it makes a small model talk about languages."""
    question = "In one or two sentences, what did the caller want and what was the answer?"
    if not language.lower().startswith("en"):
        question += f" Write in the language {language}."
    return [
        {"role": "system", "content": "You summarise phone calls."},
        {"role": "user", "content": f"Here is the transcript of a phone call.\n\n{transcript}\n\n{question}"},
    ]


def transcript_text(lines: Sequence[tuple[str, str, str]]) -> str:
    """The transcript as the model reads it, bounded to its start and end: ``Caller: ...`` and
    ``Agent: ...`` for a call, ``Participant 1: ...`` for a conference's (by ``conferencecall_id``,
    numbered as they first speak)."""
    participants: dict[str, int] = {}
    spoken = []
    for direction, message, conferencecall_id in lines:
        if not message.strip():
            continue
        if conferencecall_id:
            speaker = f"Participant {participants.setdefault(conferencecall_id, len(participants) + 1)}"
        else:
            speaker = SPEAKERS.get(direction, "Agent")
        spoken.append(f"{speaker}: {message.strip()}")
    text = "\n".join(spoken)
    if len(text) <= MAX_TRANSCRIPT_CHARS:
        return text
    tail = MAX_TRANSCRIPT_CHARS - HEAD_CHARS
    left_out = len(text) - MAX_TRANSCRIPT_CHARS
    return f"{text[:HEAD_CHARS]}\n[... {left_out} characters of the call left out ...]\n{text[-tail:]}"


def summary_variables(row: AiSummary) -> dict[str, str]:
    prefix = "voipbin.ai_summary."
    fields = ("id", "reference_type", "reference_id", "language", "status", "content")
    return {prefix + name: str(getattr(row, name)) for name in fields}


class SummaryService:
    def __init__(self, ctx: SummaryContext) -> None:
        self.ctx = ctx
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._loops: list[asyncio.Task[None]] = []

    async def create(self, request: SummaryRequest) -> AiSummary:
        """Record the summary (``progressing``); it is made once its transcript is complete."""
        if request.reference_type not in REFERENCE_TYPES:
            raise SummaryRefused(
                f"Summaries of a {request.reference_type or 'reference'} are not supported yet; "
                "summarise a call, a conference or a transcribe.",
                "NOT_SUPPORTED",
            )
        if not is_uuid(request.reference_id):
            raise SummaryRefused(f"reference_id must be the {request.reference_type}'s id (UUID).")
        language = request.language or "en-US"
        on_end_flow_id = "" if request.on_end_flow_id in ("", NIL_ID) else request.on_end_flow_id.lower()
        if on_end_flow_id:
            await self._check_flow(request.customer_id, on_end_flow_id)
        transcribe_id = await self._transcribe_of(request, language)
        row = AiSummary(
            id=new_id(), customer_id=request.customer_id, activeflow_id=request.activeflow_id,
            on_end_flow_id=on_end_flow_id, reference_type=request.reference_type,
            reference_id=request.reference_id.lower(), status="progressing", language=language,
            transcribe_id=transcribe_id, tm_create=self.ctx.clock.now(),
        )  # fmt: skip
        async with self.ctx.store.transaction() as tx:
            tx.session.add(row)
            announce(tx, row, "summary_created")
        return row

    # -- what is summarised ----------------------------------------------------------------------

    async def _check_flow(self, customer_id: str, flow_id: str) -> None:
        async with self.ctx.store.session() as session:
            found = await session.scalar(
                select(Flow.id).where(Flow.id == flow_id, Flow.customer_id == customer_id, Flow.tm_delete.is_(None))
            )
        if found is None:
            raise SummaryRefused(f"on_end_flow_id {flow_id} is not a flow of your account.", "FLOW_NOT_FOUND")

    async def _transcribe_of(self, request: SummaryRequest, language: str) -> str:
        reference_id = request.reference_id.lower()
        async with self.ctx.store.session() as session:
            if request.reference_type == "transcribe":
                found = await session.scalar(
                    select(Transcribe.id).where(
                        Transcribe.id == reference_id,
                        Transcribe.customer_id == request.customer_id,
                        Transcribe.tm_delete.is_(None),
                    )
                )
                if found is None:
                    raise SummaryRefused(f"Transcribe {reference_id} does not exist in your account.", "TRANSCRIBE_NOT_FOUND")
                return str(found)
            if request.reference_type == "conference":
                return await self._conference_transcribe(request, language)
            call = await session.scalar(
                select(Call).where(Call.id == reference_id, Call.customer_id == request.customer_id, Call.tm_delete.is_(None))
            )
            if call is None:
                raise SummaryRefused(f"Call {reference_id} does not exist in your account.", "CALL_NOT_FOUND")
            if call.status != "hangup":  # its row may lag behind: the call layer knows whether it is live
                try:
                    return await self.ctx.transcribe_call(request.customer_id, call.id, language)
                except CallStateError:
                    pass  # not in progress (yet, or any more): what it was transcribed with, if anything
                except CallError as error:
                    raise SummaryRefused(error.message, error.reason) from None
            latest = await session.scalar(
                select(Transcribe.id)
                .where(Transcribe.reference_id == call.id, Transcribe.customer_id == request.customer_id)
                .order_by(Transcribe.tm_create.desc())
            )
        if latest is None:
            raise SummaryRefused(
                f"Call {reference_id} is {call.status} and was not transcribed: a call is summarised from its "
                "transcript, so ask while it is in progress (or put ai_summary in its flow).",
                "CALL_NOT_TRANSCRIBED",
            )
        return str(latest)

    async def _conference_transcribe(self, request: SummaryRequest, language: str) -> str:
        """A conference in progress is transcribed (each participant) until it ends; one that has
        ended is summarised from its last transcription."""
        reference_id = request.reference_id.lower()
        async with self.ctx.store.session() as session:
            conference = await session.scalar(select(Conference).where(
                Conference.id == reference_id, Conference.customer_id == request.customer_id, Conference.tm_delete.is_(None)
            ))  # fmt: skip
            if conference is None:
                raise SummaryRefused(f"Conference {reference_id} does not exist in your account.", "CONFERENCE_NOT_FOUND")
            if conference.status == "progressing":
                try:
                    return await self.ctx.transcribe_conference(request.customer_id, conference.id, language)
                except ConferenceError as error:
                    raise SummaryRefused(error.message, error.reason) from None
            latest = await session.scalar(
                select(Transcribe.id)
                .where(Transcribe.reference_id == conference.id, Transcribe.customer_id == request.customer_id)
                .order_by(Transcribe.tm_create.desc())
            )
        if latest is None:
            raise SummaryRefused(
                f"Conference {reference_id} is {conference.status} and was not transcribed: ask while it is in progress.",
                "CONFERENCE_NOT_TRANSCRIBED",
            )
        return str(latest)

    # -- making summaries ------------------------------------------------------------------------

    async def start(self) -> None:
        subscription = self.ctx.bus.subscribe()
        self._loops = [asyncio.create_task(self._listen(subscription)), asyncio.create_task(self._sweep())]

    async def stop(self) -> None:
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        self._loops = []

    async def _listen(self, subscription: Subscription) -> None:
        try:
            async for event in subscription:
                if event.event_type in WAKING_EVENTS:
                    self._wake.set()
        finally:
            subscription.close()

    async def _sweep(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_S)
            self._wake.clear()
            try:
                await self.take_ready()
            except Exception:
                log.exception("looking for summaries to make failed")

    async def take_ready(self) -> None:
        """Claim each progressing summary whose transcription has ended, and make it."""
        now = self.ctx.clock.now()
        async with self.ctx.store.session() as session:
            ready = (await session.scalars(
                select(AiSummary.id)
                .join(Transcribe, Transcribe.id == AiSummary.transcribe_id)
                .where(AiSummary.status == "progressing", AiSummary.tm_delete.is_(None), Transcribe.status == "done",
                       or_(AiSummary.lease_until.is_(None), AiSummary.lease_until < now))
                .order_by(AiSummary.tm_create)
                .limit(CONCURRENT * 4)
            )).all()  # fmt: skip
        for summary_id in ready:
            if await self._claim(summary_id, now):
                task = asyncio.create_task(self._make(summary_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _claim(self, summary_id: str, now: datetime) -> bool:
        async with self.ctx.store.transaction() as tx:
            claimed = await tx.session.execute(
                update(AiSummary)
                .where(AiSummary.id == summary_id, AiSummary.status == "progressing",
                       or_(AiSummary.lease_until.is_(None), AiSummary.lease_until < now))
                .values(lease_until=now + LEASE)
            )  # fmt: skip
        return bool(claimed.rowcount)  # type: ignore[attr-defined]

    async def _make(self, summary_id: str) -> None:
        async with self._slots:
            try:
                row = await self._summarise(summary_id)
            except Exception:
                log.exception("summary %s failed", summary_id)
                return
        if row is not None and row.on_end_flow_id:
            await self._run_on_end_flow(row)

    async def _summarise(self, summary_id: str) -> AiSummary | None:
        async with self.ctx.store.session() as session:
            row = await session.get(AiSummary, summary_id)
            if row is None or row.tm_delete is not None:
                return None
            lines = (await session.execute(
                select(Transcript.direction, Transcript.message, Transcript.conferencecall_id)
                .where(Transcript.transcribe_id == row.transcribe_id)
                .order_by(Transcript.tm_transcript, Transcript.tm_create)
            )).all()  # fmt: skip
        text = transcript_text([(direction, message, speaker) for direction, message, speaker in lines])
        content = await self._ask(summary_id, row.language, text) if text else ""
        async with self.ctx.store.transaction() as tx:
            done = await tx.session.get(AiSummary, summary_id)
            if done is None:
                return None
            done.status, done.content, done.lease_until = "done", content, None
            done.tm_update = tx.clock.now()
            announce(tx, done, "summary_updated")
        return done

    async def _ask(self, summary_id: str, language: str, transcript: str) -> str:
        """The model's summary; empty (and the reason in the operator's log) if it cannot answer."""
        messages = summary_messages(language, transcript)
        try:
            model = await self.ctx.model()
        except Exception:
            log.exception("the summary model could not start; summary %s is left empty", summary_id)
            return ""
        try:
            parts = [delta.text async for delta in model.reply(messages) if isinstance(delta, LlmText)]
        except LlmError as error:
            log.warning("the summary model did not answer for summary %s: %s", summary_id, error)
            return ""
        finally:
            await model.close()
        return "".join(parts).strip()

    async def _run_on_end_flow(self, row: AiSummary) -> None:
        try:
            await self.ctx.start_flow(row.customer_id, row.on_end_flow_id, summary_variables(row), ("ai_summary", row.id))
        except CallError as error:
            log.info("on_end_flow_id of summary %s did not start: %s", row.id, error.message)
