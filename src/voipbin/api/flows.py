"""``/v1.0/flows`` (saved action lists) and ``/v1.0/activeflows`` (running ones)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from voipbin.api import forwarding
from voipbin.api.calls import checked_actions
from voipbin.api.crud import apply_update, get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import conflict
from voipbin.core.ids import new_id, token_hex
from voipbin.store.models import Activeflow, Flow
from voipbin.views import ActiveflowOut, FlowOut, LongText, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["flows"])

Actions = Annotated[list[dict[str, Any]], Field(max_length=1000)]


class FlowIn(Strict):
    name: ShortText = ""
    detail: LongText = ""
    actions: Actions
    on_complete_flow_id: Annotated[str, Field(max_length=36)] = ""


class FlowUpdate(Strict):
    name: ShortText | None = None
    detail: LongText | None = None
    actions: Actions | None = None


@router.post("/flows", response_model=FlowOut)
async def create(body: FlowIn, platform: PlatformDep, who: StaffDep) -> FlowOut:
    actions = checked_actions(body.actions, platform.speech)
    async with platform.store.transaction() as tx:
        flow = Flow(
            id=new_id(),
            customer_id=who.customer_id,
            type="flow",
            name=body.name,
            detail=body.detail,
            actions=actions,
            direct_hash=token_hex(6),
            on_complete_flow_id=body.on_complete_flow_id,
            tm_create=tx.clock.now(),
        )
        tx.session.add(flow)
        return announce(tx, flow, "flow_created", FlowOut)


@router.get("/flows", response_model=Page[FlowOut])
async def list_flows(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[FlowOut]:
    return await list_view(platform, Flow, FlowOut, who.customer_id, paging)


@router.get("/flows/{flow_id}", response_model=FlowOut)
async def get_flow(flow_id: str, platform: PlatformDep, who: StaffDep) -> FlowOut:
    async with platform.store.session() as session:
        return FlowOut.model_validate(await get_owned(session, Flow, flow_id, who.customer_id, "flow"))


@router.put("/flows/{flow_id}", response_model=FlowOut)
async def update(flow_id: str, body: FlowUpdate, platform: PlatformDep, who: StaffDep) -> FlowOut:
    if body.actions is not None:
        body = body.model_copy(update={"actions": checked_actions(body.actions, platform.speech)})
    async with platform.store.transaction() as tx:
        flow = await get_owned(tx.session, Flow, flow_id, who.customer_id, "flow")
        apply_update(flow, body, tx)
        return announce(tx, flow, "flow_updated", FlowOut)


@router.delete("/flows/{flow_id}", response_model=FlowOut)
async def delete(flow_id: str, platform: PlatformDep, who: StaffDep) -> FlowOut:
    async with platform.store.transaction() as tx:
        flow = await get_owned(tx.session, Flow, flow_id, who.customer_id, "flow")
        soft_delete(flow, tx)
        return announce(tx, flow, "flow_deleted", FlowOut)


@router.get("/activeflows", response_model=Page[ActiveflowOut], tags=["activeflows"])
async def list_activeflows(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[ActiveflowOut]:
    return await list_view(platform, Activeflow, ActiveflowOut, who.customer_id, paging)


@router.get("/activeflows/{activeflow_id}", response_model=ActiveflowOut, tags=["activeflows"])
async def get_activeflow(activeflow_id: str, platform: PlatformDep, who: StaffDep) -> ActiveflowOut:
    async with platform.store.session() as session:
        return ActiveflowOut.model_validate(await get_owned(session, Activeflow, activeflow_id, who.customer_id, "activeflow"))


@router.post(
    "/activeflows/{activeflow_id}/stop", response_model=ActiveflowOut, tags=["activeflows"], summary="Stop a running flow"
)
async def stop_activeflow(activeflow_id: str, platform: PlatformDep, who: StaffDep, request: Request) -> ActiveflowOut | Response:
    """Ends the flow at once (what it is playing is cut off); its call stays up, for the API to drive or hang up."""
    async with platform.store.session() as session:
        activeflow = await get_owned(session, Activeflow, activeflow_id, who.customer_id, "activeflow")
    if (answer := await forwarding.to_call_node(request, platform, who.customer_id, activeflow.reference_id)) is not None:
        return answer
    if activeflow.status == "ended":
        raise conflict(f"Activeflow {activeflow.id} has already ended.", "ACTIVEFLOW_ALREADY_STOPPED")
    await platform.calls.stop_activeflow(activeflow)
    async with platform.store.session() as session:
        return ActiveflowOut.model_validate(await get_owned(session, Activeflow, activeflow_id, who.customer_id, "activeflow"))
