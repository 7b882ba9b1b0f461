"""``/v1.0/conferences`` and ``/v1.0/conferencecalls``: conferences, their participants and controls."""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, field_validator
from sqlalchemy import select

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import ApiError, bad_request, conflict, not_found
from voipbin.calls.service import ConferenceRefused
from voipbin.conferences.service import MAX_TIMEOUT_S, ConferenceError
from voipbin.core.ids import is_uuid, new_id
from voipbin.flows.actions import NIL_ID
from voipbin.runtime import Platform
from voipbin.store.models import Conference, Conferencecall, Flow
from voipbin.views import ConferencecallOut, ConferenceOut, LongText, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["conferences"])

MAX_DATA_CHARS = 16_384
Timeout = Annotated[int, Field(ge=0, le=MAX_TIMEOUT_S, description="Seconds until it ends by itself; 0: never.")]
FlowId = Annotated[str, Field(max_length=36)]


def _bounded_data(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value)) > MAX_DATA_CHARS:
        raise ValueError(f"data must be at most {MAX_DATA_CHARS} characters of JSON")
    return value


class ConferenceIn(Strict):
    id: Annotated[str, Field(max_length=36, description="An id of your choosing (UUID); made up if left out.")] = ""
    type: Literal["conference", "connect"] = "conference"
    name: ShortText = ""
    detail: LongText = ""
    data: dict[str, Any] = Field(default_factory=dict)
    timeout: Timeout = 0
    pre_flow_id: FlowId = ""
    post_flow_id: FlowId = ""

    _data = field_validator("data")(_bounded_data)


class ConferenceUpdate(Strict):
    """Fields left out keep their values."""

    name: ShortText | None = None
    detail: LongText | None = None
    data: dict[str, Any] | None = None
    timeout: Timeout | None = None
    pre_flow_id: FlowId | None = None
    post_flow_id: FlowId | None = None

    _data = field_validator("data")(_bounded_data)


class ConferencecallControls(Strict):
    """A participant's controls (ours): left out, each keeps its value."""

    muted: bool | None = Field(None, description="The others stop hearing it.")
    deaf: bool | None = Field(None, description="It stops hearing the others.")
    hold: bool | None = Field(None, description="Out of the mix, hearing music.")


async def _checked_flow(platform: Platform, customer_id: str, name: str, flow_id: str) -> str:
    """The flow id as stored ("" for none); 400 unless it is a flow of the customer's."""
    if flow_id in ("", NIL_ID):
        return ""
    if is_uuid(flow_id):
        async with platform.store.session() as session:
            found = await session.scalar(select(Flow.id).where(
                Flow.id == flow_id.lower(), Flow.customer_id == customer_id, Flow.tm_delete.is_(None)
            ))  # fmt: skip
        if found is not None:
            return str(found)
    raise bad_request(f"{name} {flow_id} is not a flow of your account.", "FLOW_NOT_FOUND")


@router.post("/conferences", response_model=ConferenceOut, summary="Create a conference")
async def create(body: ConferenceIn, platform: PlatformDep, who: StaffDep) -> ConferenceOut:
    if body.id and not is_uuid(body.id):
        raise bad_request("id must be a UUID, or left out.")
    row = Conference(
        id=body.id.lower() or new_id(), customer_id=who.customer_id, type=body.type, status="progressing",
        name=body.name, detail=body.detail, data=body.data, timeout=body.timeout,
        pre_flow_id=await _checked_flow(platform, who.customer_id, "pre_flow_id", body.pre_flow_id),
        post_flow_id=await _checked_flow(platform, who.customer_id, "post_flow_id", body.post_flow_id),
        tm_create=platform.clock.now(),
    )  # fmt: skip
    async with platform.store.transaction() as tx:
        if await tx.session.get(Conference, row.id) is not None:
            raise conflict(f"A conference with id {row.id} exists already.")
        tx.session.add(row)
        created = announce(tx, row, "conference_created", ConferenceOut)
    platform.conferences.arm_timeout(row)
    return created


@router.get("/conferences", response_model=Page[ConferenceOut])
async def list_conferences(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[ConferenceOut]:
    return await list_view(platform, Conference, ConferenceOut, who.customer_id, paging)


@router.get("/conferences/{conference_id}", response_model=ConferenceOut)
async def get_conference(conference_id: str, platform: PlatformDep, who: StaffDep) -> ConferenceOut:
    async with platform.store.session() as session:
        return ConferenceOut.model_validate(await get_owned(session, Conference, conference_id, who.customer_id, "conference"))


@router.put("/conferences/{conference_id}", response_model=ConferenceOut)
async def update(conference_id: str, body: ConferenceUpdate, platform: PlatformDep, who: StaffDep) -> ConferenceOut:
    changes = body.model_dump(exclude_none=True)
    for name in ("pre_flow_id", "post_flow_id"):
        if name in changes:
            changes[name] = await _checked_flow(platform, who.customer_id, name, changes[name])
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, Conference, conference_id, who.customer_id, "conference")
        for name, value in changes.items():
            setattr(row, name, value)
        row.tm_update = tx.clock.now()
        changed = announce(tx, row, "conference_updated", ConferenceOut)
    if "timeout" in changes:
        platform.conferences.arm_timeout(row)
    return changed


@router.delete("/conferences/{conference_id}", response_model=ConferenceOut, summary="End (every participant leaves) and delete")
async def delete(conference_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> ConferenceOut | Response:
    async with platform.store.session() as session:
        row = await get_owned(session, Conference, conference_id, who.customer_id, "conference")
    if (answer := await forwarding.to_conference_node(request, platform, row)) is not None:
        return answer
    ended = await platform.conferences.end(row.id, delete=True)
    return ConferenceOut.model_validate(ended or row)


class ConferenceRecordingIn(Strict):
    format: Literal["wav"] = "wav"
    duration: Annotated[int, Field(ge=0, le=MAX_TIMEOUT_S, description="Seconds until it stops by itself; 0: never.")] = 0


async def _on_its_node(request: Request, platform: Platform, conference_id: str, customer_id: str) -> Conference | Response:
    async with platform.store.session() as session:
        row = await get_owned(session, Conference, conference_id, customer_id, "conference")
    return await forwarding.to_conference_node(request, platform, row) or row


@router.post("/conferences/{conference_id}/recording_start", response_model=ConferenceOut, summary="Record the mix")
async def recording_start(
    conference_id: str, platform: PlatformDep, who: StaffDep, request: Request, body: ConferenceRecordingIn | None = None
) -> ConferenceOut | Response:
    """One recording at a time, of what the participants hear together, to a mono WAV (``/v1.0/recordings``)."""
    row = await _on_its_node(request, platform, conference_id, who.customer_id)
    if isinstance(row, Response):
        return row
    await _conference_call(platform.conferences.start_recording(row, (body or ConferenceRecordingIn()).duration))
    return await get_conference(conference_id, platform, who)


@router.post("/conferences/{conference_id}/recording_stop", response_model=ConferenceOut, summary="Stop recording")
async def recording_stop(conference_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> ConferenceOut | Response:
    row = await _on_its_node(request, platform, conference_id, who.customer_id)
    if isinstance(row, Response):
        return row
    await _conference_call(platform.conferences.stop_recording(row))
    return await get_conference(conference_id, platform, who)


async def _conference_call(operation: Coroutine[Any, Any, None]) -> None:
    try:
        await operation
    except ConferenceError as error:
        raise ApiError(error.status, error.reason, error.message) from None


class ConferenceTranscribeIn(Strict):
    language: Annotated[str, Field(max_length=35, description="BCP47, en-US by default.")] = ""


@router.post("/conferences/{conference_id}/transcribe_start", response_model=ConferenceOut,
             summary="Transcribe each participant")
async def transcribe_start(
    conference_id: str, platform: PlatformDep, who: StaffDep, request: Request, body: ConferenceTranscribeIn | None = None
) -> ConferenceOut | Response:
    """One transcribe (``reference_type`` conference); each transcript names its speaker's ``conferencecall_id``."""
    row = await _on_its_node(request, platform, conference_id, who.customer_id)
    if isinstance(row, Response):
        return row
    await _conference_call(platform.conferences.start_transcription(row, (body or ConferenceTranscribeIn()).language))
    return await get_conference(conference_id, platform, who)


@router.post("/conferences/{conference_id}/transcribe_stop", response_model=ConferenceOut, summary="Stop transcribing")
async def transcribe_stop(conference_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> ConferenceOut | Response:
    row = await _on_its_node(request, platform, conference_id, who.customer_id)
    if isinstance(row, Response):
        return row
    await _conference_call(platform.conferences.stop_transcription(row))
    return await get_conference(conference_id, platform, who)


@router.get("/conferencecalls", response_model=Page[ConferencecallOut])
async def list_conferencecalls(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    conference_id: Annotated[str, Query(max_length=36, description="Only those of this conference.")] = "",
    status: Annotated[Literal["joining", "joined", "leaving", "leaved"] | None, Query()] = None,
) -> Page[ConferencecallOut]:
    filters = [Conferencecall.conference_id == conference_id.lower()] if conference_id else []
    if status:
        filters.append(Conferencecall.status == status)
    return await list_view(platform, Conferencecall, ConferencecallOut, who.customer_id, paging, *filters)


async def _conferencecall(platform: Platform, row_id: str, customer_id: str) -> tuple[Conferencecall, Conference]:
    async with platform.store.session() as session:
        row = await get_owned(session, Conferencecall, row_id, customer_id, "conferencecall")
        conference = await session.get(Conference, row.conference_id)
    if conference is None:
        raise not_found("conferencecall")
    return row, conference


@router.get("/conferencecalls/{conferencecall_id}", response_model=ConferencecallOut)
async def get_conferencecall(conferencecall_id: str, platform: PlatformDep, who: StaffDep) -> ConferencecallOut:
    return ConferencecallOut.model_validate((await _conferencecall(platform, conferencecall_id, who.customer_id))[0])


@router.delete("/conferencecalls/{conferencecall_id}", response_model=ConferencecallOut, summary="Kick a participant")
async def kick(conferencecall_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> ConferencecallOut | Response:
    """It leaves the conference; its call's flow goes on after conference_join (and ends the call if nothing follows)."""
    row, conference = await _conferencecall(platform, conferencecall_id, who.customer_id)
    if (answer := await forwarding.to_conference_node(request, platform, conference)) is not None:
        return answer
    if row.status in ("leaving", "leaved") or not platform.conferences.kick(row.id):
        raise conflict(f"Conferencecall {row.id} is {row.status}; only a participant still in the conference can be kicked.",
                       "CONFERENCECALL_NOT_JOINED")
    return ConferencecallOut.model_validate(row)


@router.put("/conferencecalls/{conferencecall_id}", response_model=ConferencecallOut, summary="Mute, deafen or hold")
async def control(
    conferencecall_id: str, body: ConferencecallControls, platform: PlatformDep, who: StaffDep, request: Request
) -> ConferencecallOut | Response:
    row, conference = await _conferencecall(platform, conferencecall_id, who.customer_id)
    if (answer := await forwarding.to_conference_node(request, platform, conference)) is not None:
        return answer
    try:
        changed = await platform.conferences.control(row, body.model_dump(exclude_none=True))
    except ConferenceRefused as refusal:
        raise ApiError(409, "CONFERENCECALL_NOT_JOINED", str(refusal)) from None
    return ConferencecallOut.model_validate(changed)
