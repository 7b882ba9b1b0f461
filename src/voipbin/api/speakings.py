"""``/v1.0/speakings``: real-time TTS into a live call; ``/v1.0/transcribes`` and ``/transcripts``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import ApiError, bad_request
from voipbin.calls.speaking import SpeakingSession
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
from voipbin.speech.tts import TtsError
from voipbin.store.models import Speaking, Transcribe, Transcript
from voipbin.views import Page, SpeakingOut, Strict, TranscribeOut, TranscriptOut, announce

router = APIRouter(prefix="/v1.0", tags=["speech"])

MAX_SAY_CHARS = 5000


class SpeakingIn(Strict):
    reference_type: Literal["call"]
    reference_id: Annotated[str, Field(max_length=36)]
    language: Annotated[str, Field(max_length=16)] = "en-US"
    provider: Annotated[str, Field(max_length=32)] = ""
    voice_id: Annotated[str, Field(max_length=64)] = ""
    direction: Literal["", "in", "out", "both"] = "out"


class SayIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=MAX_SAY_CHARS)]


@router.post("/speakings", status_code=201, response_model=SpeakingOut, summary="Open a TTS stream on a live call")
async def create(body: SpeakingIn, platform: PlatformDep, who: StaffDep, request: Request) -> Response:
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, body.reference_id)) is not None:
        return answer
    live = platform.calls.live.get(body.reference_id) if is_uuid(body.reference_id) else None
    if live is None or live.customer_id != who.customer_id or live.status.value != "progressing":
        raise bad_request(
            f"Call {body.reference_id} is not in progress; a speaking needs an answered call (status progressing).",
            "CALL_STATE_INVALID",
        )
    session = SpeakingSession(live, body.language, body.provider, body.voice_id, body.direction or "out")
    try:
        await session.start()
    except TtsError as error:
        raise bad_request(str(error), "TTS_PROVIDER_UNAVAILABLE") from None
    platform.calls.speakings[session.row.id] = session
    live.speakings.append(session)
    return JSONResponse(SpeakingOut.model_validate(session.row).public(), status_code=201)


@router.get("/speakings", response_model=Page[SpeakingOut])
async def list_speakings(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[SpeakingOut]:
    return await list_view(platform, Speaking, SpeakingOut, who.customer_id, paging)


async def _speaking(platform: Platform, speaking_id: str, customer_id: str) -> Speaking:
    async with platform.store.session() as session:
        return await get_owned(session, Speaking, speaking_id, customer_id, "speaking")


@router.get("/speakings/{speaking_id}", response_model=SpeakingOut)
async def get_speaking(speaking_id: str, platform: PlatformDep, who: StaffDep) -> SpeakingOut:
    return SpeakingOut.model_validate(await _speaking(platform, speaking_id, who.customer_id))


def _active_session(platform: Platform, row: Speaking) -> SpeakingSession:
    session = platform.calls.speakings.get(row.id)
    if session is None or not session.active:
        raise bad_request(f"Speaking {row.id} is {row.status}; open a new one on a call in progress.", "SPEAKING_STOPPED")
    return session


async def _on_its_node(request: Request, platform: Platform, row: Speaking) -> Response | None:
    """The answer of the node running the speaking's call, when that is another node."""
    return await forwarding.to_call_node(request, platform, row.customer_id, row.reference_id)


@router.post("/speakings/{speaking_id}/say", response_model=SpeakingOut, summary="Queue text to speak")
async def say(speaking_id: str, body: SayIn, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    session = _active_session(platform, row)
    try:
        session.say(body.text)
    except asyncio.QueueFull:
        raise ApiError(429, "SPEAKING_QUEUE_FULL", "Too much text is waiting; flush or wait before saying more.") from None
    return SpeakingOut.model_validate(session.row)


@router.post("/speakings/{speaking_id}/flush", response_model=SpeakingOut, summary="Drop queued text")
async def flush(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    session = _active_session(platform, row)
    session.flush()
    return SpeakingOut.model_validate(session.row)


@router.post("/speakings/{speaking_id}/stop", response_model=SpeakingOut, summary="Stop the current speech now")
async def stop(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    session = _active_session(platform, row)
    session.interrupt()
    return SpeakingOut.model_validate(session.row)


@router.delete("/speakings/{speaking_id}", response_model=SpeakingOut)
async def delete(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    session = platform.calls.speakings.pop(speaking_id, None)
    if session is not None:
        await session.stop()
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, Speaking, speaking_id, who.customer_id, "speaking")
        soft_delete(row, tx)
        announce(tx, row, "speaking_deleted")
    return SpeakingOut.model_validate(row)


@router.get("/transcribes", response_model=Page[TranscribeOut])
async def list_transcribes(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    reference_type: Annotated[str, Query(max_length=16, description="Only these, e.g. call.")] = "",
    reference_id: Annotated[str, Query(max_length=36, description="Only those of this call.")] = "",
) -> Page[TranscribeOut]:
    filters = [Transcribe.reference_type == reference_type] if reference_type else []
    if reference_id:
        filters.append(Transcribe.reference_id == reference_id)
    return await list_view(platform, Transcribe, TranscribeOut, who.customer_id, paging, *filters)


@router.get("/transcribes/{transcribe_id}", response_model=TranscribeOut)
async def get_transcribe(transcribe_id: str, platform: PlatformDep, who: StaffDep) -> TranscribeOut:
    async with platform.store.session() as session:
        return TranscribeOut.model_validate(await get_owned(session, Transcribe, transcribe_id, who.customer_id, "transcribe"))


@router.get("/transcripts", response_model=Page[TranscriptOut])
async def list_transcripts(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    transcribe_id: Annotated[str, Query(max_length=36, description="The transcribe session.")],
) -> Page[TranscriptOut]:
    if not is_uuid(transcribe_id):
        raise bad_request("transcribe_id must be a transcribe's id (UUID).")
    return await list_view(platform, Transcript, TranscriptOut, who.customer_id, paging, Transcript.transcribe_id == transcribe_id)
