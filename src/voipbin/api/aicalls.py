"""``/v1.0/aicalls`` and ``/v1.0/aimessages``: AI sessions on calls, and their conversations."""

from __future__ import annotations

from typing import Annotated, Literal, NoReturn

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, field_validator

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import bad_request
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
from voipbin.store.models import AiCall, AiMessage
from voipbin.views import AiCallOut, AiMessageOut, Page, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["ai"])

MAX_MESSAGE_CHARS = 8192
Status = Literal["initiating", "progressing", "pausing", "resuming", "terminating", "terminated"]
# A tool message answers one of the AI's tool calls by its id, which VoIPBIN's body has no field for.
INJECTABLE_ROLES = ("system", "user", "assistant", "notification")


class AiMessageIn(Strict):
    aicall_id: Annotated[str, Field(max_length=36)]
    role: Annotated[str, Field(max_length=16, description="system, user, assistant or notification.")]
    content: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]

    @field_validator("role")
    @classmethod
    def _injectable(cls, role: str) -> str:
        if role == "tool":
            raise ValueError("a tool message answers a tool call and needs its tool_call_id, which this request "
                             f"cannot carry; send one of {', '.join(INJECTABLE_ROLES)}")
        if role not in INJECTABLE_ROLES:
            raise ValueError(f"role must be one of {', '.join(INJECTABLE_ROLES)}")
        return role


@router.post("/aicalls", response_model=AiCallOut, summary="Start an AI on a call (not supported yet)")
async def create() -> NoReturn:
    raise bad_request(
        "Starting an AI with POST /v1.0/aicalls is not supported yet: put an ai_talk action "
        '({"type": "ai_talk", "option": {"assistance_type": "ai", "assistance_id": "<ai id>"}}) in the call\'s flow.',
        "NOT_SUPPORTED",
    )


@router.get("/aicalls", response_model=Page[AiCallOut])
async def list_aicalls(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    reference_id: Annotated[str, Query(max_length=36, description="Only those on this call.")] = "",
    assistance_id: Annotated[str, Query(max_length=36, description="Only those of this AI.")] = "",
    status: Annotated[Status | None, Query(description="Only those in this status, e.g. progressing.")] = None,
) -> Page[AiCallOut]:
    filters = [AiCall.reference_id == reference_id] if reference_id else []
    if assistance_id:
        filters.append(AiCall.assistance_id == assistance_id.lower())
    if status:
        filters.append(AiCall.status == status)
    return await list_view(platform, AiCall, AiCallOut, who.customer_id, paging, *filters)


async def _aicall(platform: Platform, aicall_id: str, customer_id: str) -> AiCall:
    async with platform.store.session() as session:
        return await get_owned(session, AiCall, aicall_id, customer_id, "aicall")


async def _on_its_node(request: Request, platform: Platform, row: AiCall) -> Response | None:
    """The answer of the node running the aicall's call (its session runs there), when that is another node."""
    if row.reference_type != "call":
        return None
    return await forwarding.to_call_node(request, platform, row.customer_id, row.reference_id)


async def _terminated(platform: Platform, row: AiCall) -> AiCall:
    """The aicall once its session has ended (on this node: a call elsewhere was forwarded)."""
    if (session := platform.ai.live(row.id)) is not None:
        await session.terminate()
    elif row.status != "terminated":
        # No session runs it (its node stopped mid-session): record the end the session never did.
        async with platform.store.transaction() as tx:
            row = await get_owned(tx.session, AiCall, row.id, row.customer_id, "aicall")
            row.status = "terminated"
            row.tm_end = row.tm_update = tx.clock.now()
            announce(tx, row, "aicall_status_terminated")
        return row
    return await _aicall(platform, row.id, row.customer_id)


@router.get("/aicalls/{aicall_id}", response_model=AiCallOut)
async def get_aicall(aicall_id: str, platform: PlatformDep, who: StaffDep) -> AiCallOut:
    return AiCallOut.model_validate(await _aicall(platform, aicall_id, who.customer_id))


@router.post("/aicalls/{aicall_id}/terminate", response_model=AiCallOut, summary="End an AI session")
async def terminate(aicall_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> AiCallOut | Response:
    row = await _aicall(platform, aicall_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    return AiCallOut.model_validate(await _terminated(platform, row))


@router.delete("/aicalls/{aicall_id}", response_model=AiCallOut, summary="End (if live) and delete an AI session")
async def delete_aicall(aicall_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> AiCallOut | Response:
    row = await _aicall(platform, aicall_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    await _terminated(platform, row)
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, AiCall, aicall_id, who.customer_id, "aicall")
        soft_delete(row, tx)
        return announce(tx, row, "aicall_deleted", AiCallOut)


@router.get("/aimessages", response_model=Page[AiMessageOut], summary="An aicall's messages, oldest first")
async def list_aimessages(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    aicall_id: Annotated[str, Query(max_length=36, description="The aicall.")],
) -> Page[AiMessageOut]:
    if not is_uuid(aicall_id):
        raise bad_request("aicall_id must be an aicall's id (UUID).")
    # Oldest first, as the conversation reads (VoIPBIN's lists, this one included, go newest first).
    return await list_view(platform, AiMessage, AiMessageOut, who.customer_id, paging, AiMessage.aicall_id == aicall_id,
                           oldest_first=True)


@router.post("/aimessages", response_model=AiMessageOut, summary="Send a message into a live AI session")
async def send(body: AiMessageIn, platform: PlatformDep, who: StaffDep, request: Request) -> AiMessageOut | Response:
    row = await _aicall(platform, body.aicall_id, who.customer_id)
    if (answer := await _on_its_node(request, platform, row)) is not None:
        return answer
    if (session := platform.ai.live(row.id)) is None:
        raise bad_request(f"The aicall is not live (its status is {row.status}): messages go only to a running AI "
                          "session.", "AICALL_NOT_LIVE")
    return AiMessageOut.model_validate(await session.inject(body.role, body.content))


@router.get("/aimessages/{aimessage_id}", response_model=AiMessageOut)
async def get_aimessage(aimessage_id: str, platform: PlatformDep, who: StaffDep) -> AiMessageOut:
    async with platform.store.session() as session:
        return AiMessageOut.model_validate(await get_owned(session, AiMessage, aimessage_id, who.customer_id, "aimessage"))


@router.delete("/aimessages/{aimessage_id}", response_model=AiMessageOut)
async def delete_aimessage(aimessage_id: str, platform: PlatformDep, who: StaffDep) -> AiMessageOut:
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, AiMessage, aimessage_id, who.customer_id, "aimessage")
        soft_delete(row, tx)
        return announce(tx, row, "aimessage_deleted", AiMessageOut)
