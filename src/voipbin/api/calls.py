"""``/v1.0/calls`` and ``/v1.0/groupcalls``: placing calls, watching them, hanging them up."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import bad_request
from voipbin.calls.service import RecordingOptions
from voipbin.core.ids import is_uuid
from voipbin.flows.actions import Action, FlowError, parse_actions
from voipbin.runtime import Platform
from voipbin.speech.service import SpeechService
from voipbin.speech.stt import SttError
from voipbin.store.models import Call, Groupcall
from voipbin.views import AddressModel, CallOut, GroupcallOut, Page, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["calls"])


class CallIn(Strict):
    source: AddressModel
    destinations: Annotated[list[AddressModel], Field(max_length=100)]
    actions: Annotated[list[dict[str, Any]], Field(max_length=1000, default_factory=list)]
    flow_id: Annotated[str, Field(max_length=36)] = ""
    anonymous: str = ""
    variables: dict[str, str] = Field(default_factory=dict)


RecordingSeconds = Annotated[int, Field(ge=0, le=86400, strict=True, description="Seconds; 0 for no limit.")]


class RecordingStartIn(Strict):
    format: Literal["wav"] = "wav"
    end_of_silence: RecordingSeconds = 0
    end_of_key: Literal["", "none", "any", "*", "#"] = ""
    duration: RecordingSeconds = 0
    on_end_flow_id: Annotated[str, Field(max_length=36, description="Kept with the recording; not run here.")] = ""


class CallsCreated(BaseModel):
    calls: list[CallOut]
    groupcalls: list[GroupcallOut]


def parsed_actions(raw: list[dict[str, Any]], speech: SpeechService) -> tuple[Action, ...]:
    """The actions as the flow engine will run them (ids filled in); 400 naming what is wrong.

    A transcription in a language no recogniser here understands is refused now, not
    silently skipped when the call reaches it.
    """
    try:
        actions = parse_actions(raw)
    except FlowError as error:
        raise bad_request(error.message, "INVALID_ACTION") from None
    for action in actions:
        language = str(action.value("language")) if action.type == "transcribe_start" else ""
        if language and "${" not in language:
            try:
                speech.check_transcription(language, str(action.value("provider")))
            except SttError as error:
                raise bad_request(str(error), "UNSUPPORTED_LANGUAGE") from None
    return actions


def checked_actions(raw: list[dict[str, Any]], speech: SpeechService) -> list[dict[str, Any]]:
    """The actions as a flow stores them: parsed, ids filled in."""
    return [action.to_dict() for action in parsed_actions(raw, speech)]


@router.post("/calls", response_model=CallsCreated, summary="Place calls; an extension destination makes a groupcall")
async def create(body: CallIn, platform: PlatformDep, who: StaffDep, request: Request) -> CallsCreated | Response:
    if (answer := await forwarding.to_media_node(request, platform)) is not None:
        return answer
    if not body.actions and not body.flow_id:
        raise bad_request("Give the call something to do: 'actions' or a 'flow_id'.", "MISSING_REQUEST_PARAMETER")
    if body.flow_id and not is_uuid(body.flow_id):
        raise bad_request("flow_id must be a flow's id (UUID).")
    actions = parsed_actions(body.actions, platform.speech) if not body.flow_id else ()
    placed = await platform.calls.place(
        who.customer_id, body.source.model_dump(), [d.model_dump() for d in body.destinations], actions, body.flow_id
    )
    return CallsCreated(
        calls=[CallOut.model_validate(c) for c in placed.calls],
        groupcalls=[GroupcallOut.model_validate(g) for g in placed.groupcalls],
    )


@router.get("/calls", response_model=Page[CallOut])
async def list_calls(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[CallOut]:
    return await list_view(platform, Call, CallOut, who.customer_id, paging)


@router.get("/calls/{call_id}", response_model=CallOut)
async def get_call(call_id: str, platform: PlatformDep, who: StaffDep) -> CallOut:
    async with platform.store.session() as session:
        return CallOut.model_validate(await get_owned(session, Call, call_id, who.customer_id, "call"))


async def _hangup(platform: Platform, call_id: str, customer_id: str) -> Call:
    call = await _call(platform, call_id, customer_id)
    if call.status != "hangup":
        await platform.calls.hangup(call.id)
    async with platform.store.session() as session:
        return await get_owned(session, Call, call_id, customer_id, "call")


@router.post("/calls/{call_id}/hangup", response_model=CallOut, summary="Hang up a call")
async def hangup_call(call_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> CallOut | Response:
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, call_id)) is not None:
        return answer
    return CallOut.model_validate(await _hangup(platform, call_id, who.customer_id))


@router.delete("/calls/{call_id}", response_model=CallOut, summary="Hang up (if live) and delete a call")
async def delete_call(call_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> CallOut | Response:
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, call_id)) is not None:
        return answer
    await _hangup(platform, call_id, who.customer_id)
    async with platform.store.transaction() as tx:
        call = await get_owned(tx.session, Call, call_id, who.customer_id, "call")
        soft_delete(call, tx)
        announce(tx, call, "call_deleted")
    return CallOut.model_validate(call)


async def _call(platform: Platform, call_id: str, customer_id: str) -> Call:
    async with platform.store.session() as session:
        return await get_owned(session, Call, call_id, customer_id, "call")


async def _call_view(platform: Platform, call_id: str, customer_id: str) -> CallOut:
    async with platform.store.session() as session:
        return CallOut.model_validate(await get_owned(session, Call, call_id, customer_id, "call"))


@router.post("/calls/{call_id}/recording_start", response_model=CallOut, summary="Start recording a call in progress")
async def recording_start(
    call_id: str, platform: PlatformDep, who: StaffDep, request: Request, body: RecordingStartIn | None = None
) -> CallOut | Response:
    """Records both directions to a stereo WAV (``GET /v1.0/recordings``); the call's ``recording_id`` names it."""
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, call_id)) is not None:
        return answer
    options = body or RecordingStartIn()
    if options.on_end_flow_id and not is_uuid(options.on_end_flow_id):
        raise bad_request("on_end_flow_id must be a flow's id (UUID).")
    call = await _call(platform, call_id, who.customer_id)
    await platform.calls.start_recording(call, RecordingOptions(**options.model_dump()))
    return await _call_view(platform, call_id, who.customer_id)


@router.post("/calls/{call_id}/recording_stop", response_model=CallOut, summary="Stop recording a call")
async def recording_stop(call_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> CallOut | Response:
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, call_id)) is not None:
        return answer
    await platform.calls.stop_call_recording(await _call(platform, call_id, who.customer_id))
    return await _call_view(platform, call_id, who.customer_id)


@router.get("/groupcalls", response_model=Page[GroupcallOut])
async def list_groupcalls(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[GroupcallOut]:
    return await list_view(platform, Groupcall, GroupcallOut, who.customer_id, paging)


@router.get("/groupcalls/{groupcall_id}", response_model=GroupcallOut)
async def get_groupcall(groupcall_id: str, platform: PlatformDep, who: StaffDep) -> GroupcallOut:
    async with platform.store.session() as session:
        return GroupcallOut.model_validate(await get_owned(session, Groupcall, groupcall_id, who.customer_id, "groupcall"))


@router.post("/groupcalls/{groupcall_id}/hangup", response_model=GroupcallOut, summary="Hang up every call of a groupcall")
async def hangup_groupcall(groupcall_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> GroupcallOut | Response:
    async with platform.store.session() as session:
        group = await get_owned(session, Groupcall, groupcall_id, who.customer_id, "groupcall")
    if (answer := await forwarding.to_node(request, platform, group)) is not None:
        return answer
    for call_id in group.call_ids:
        await platform.calls.hangup(call_id)
    async with platform.store.session() as session:
        return GroupcallOut.model_validate(await get_owned(session, Groupcall, groupcall_id, who.customer_id, "groupcall"))

