"""``/v1.0/speakings``: real-time TTS into a live call; ``/v1.0/transcribes`` and ``/transcripts``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import bad_request
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
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
    row = await platform.calls.open_speaking(
        who.customer_id, body.reference_id, body.language, body.provider, body.voice_id, body.direction or "out"
    )
    return JSONResponse(SpeakingOut.model_validate(row).public(), status_code=201)


@router.get("/speakings", response_model=Page[SpeakingOut])
async def list_speakings(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[SpeakingOut]:
    return await list_view(platform, Speaking, SpeakingOut, who.customer_id, paging)


async def _speaking(platform: Platform, speaking_id: str, customer_id: str) -> Speaking:
    async with platform.store.session() as session:
        return await get_owned(session, Speaking, speaking_id, customer_id, "speaking")


@router.get("/speakings/{speaking_id}", response_model=SpeakingOut)
async def get_speaking(speaking_id: str, platform: PlatformDep, who: StaffDep) -> SpeakingOut:
    return SpeakingOut.model_validate(await _speaking(platform, speaking_id, who.customer_id))


async def _on_its_node(request: Request, platform: Platform, row: Speaking) -> Response | None:
    """The answer of the node running the speaking's call, when that is another node."""
    return await forwarding.to_call_node(request, platform, row.customer_id, row.reference_id)


@router.post("/speakings/{speaking_id}/say", response_model=SpeakingOut, summary="Queue text to speak")
async def say(speaking_id: str, body: SayIn, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    return SpeakingOut.model_validate(platform.calls.say(row, body.text))


@router.post("/speakings/{speaking_id}/flush", response_model=SpeakingOut, summary="Drop queued text")
async def flush(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    return SpeakingOut.model_validate(platform.calls.flush_speaking(row))


@router.post("/speakings/{speaking_id}/stop", response_model=SpeakingOut, summary="Stop the current speech now")
async def stop(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    return SpeakingOut.model_validate(platform.calls.interrupt_speaking(row))


@router.delete("/speakings/{speaking_id}", response_model=SpeakingOut)
async def delete(speaking_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> SpeakingOut | Response:
    row = await _speaking(platform, speaking_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    await platform.calls.close_speaking(row)
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
