"""``/v1.0/aisummaries``: a model's summary of a call's or a transcribe's transcript."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field
from sqlalchemy import select

from voipbin.api import forwarding
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import ApiError
from voipbin.calls.service import SummaryRefused, SummaryRequest
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
from voipbin.store.models import AiSummary, Conference
from voipbin.views import AiSummaryOut, Page, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["ai"])

NOT_FOUND = ("CALL_NOT_FOUND", "CONFERENCE_NOT_FOUND", "TRANSCRIBE_NOT_FOUND")  # the reference (another customer's is as absent)


class AiSummaryIn(Strict):
    reference_type: Annotated[
        Literal["call", "conference", "transcribe", "recording"],
        Field(description="call or conference (transcribed until it ends, if it is in progress), or transcribe."),
    ]
    reference_id: Annotated[str, Field(max_length=36, description="The call's or the transcribe's id.")]
    language: Annotated[str, Field("", max_length=35, description="The summary's language (BCP47), en-US by default.")]
    on_end_flow_id: Annotated[
        str, Field("", max_length=36, description="A flow of yours to run, without a call, once the summary is done.")
    ]


@router.post("/aisummaries", response_model=AiSummaryOut, summary="Summarise a call or a transcribe")
async def create(body: AiSummaryIn, platform: PlatformDep, who: StaffDep, request: Request) -> AiSummaryOut | Response:
    """The summary is ``progressing`` until its transcript is complete (a call in progress is transcribed until
    it ends), then ``done`` with its ``content``; a ``summary_updated`` event says so."""
    # A live call is transcribed by the node that runs it, a conference by the node that mixes it.
    if (answer := await _on_its_node(request, platform, who.customer_id, body)) is not None:
        return answer
    summary_request = SummaryRequest(
        who.customer_id, body.reference_type, body.reference_id, body.language, body.on_end_flow_id
    )
    try:
        return AiSummaryOut.model_validate(await platform.summaries.create(summary_request))
    except SummaryRefused as refusal:
        status = 404 if refusal.reason in NOT_FOUND else 400
        raise ApiError(status, refusal.reason, refusal.message) from None


async def _on_its_node(request: Request, platform: Platform, customer_id: str, body: AiSummaryIn) -> Response | None:
    reference_id = body.reference_id.lower()
    if body.reference_type == "call":
        return await forwarding.to_call_node(request, platform, customer_id, reference_id)
    if body.reference_type == "conference" and is_uuid(reference_id):
        async with platform.store.session() as session:
            conference = await session.scalar(
                select(Conference).where(Conference.id == reference_id, Conference.customer_id == customer_id)
            )
        if conference is not None:
            return await forwarding.to_conference_node(request, platform, conference)
    return None


@router.get("/aisummaries", response_model=Page[AiSummaryOut])
async def list_summaries(
    platform: PlatformDep,
    who: StaffDep,
    paging: PagingDep,
    reference_id: Annotated[str, Query(max_length=36, description="Only those of this call or transcribe.")] = "",
) -> Page[AiSummaryOut]:
    filters = [AiSummary.reference_id == reference_id.lower()] if reference_id else []
    return await list_view(platform, AiSummary, AiSummaryOut, who.customer_id, paging, *filters)


@router.get("/aisummaries/{summary_id}", response_model=AiSummaryOut)
async def get_summary(summary_id: str, platform: PlatformDep, who: StaffDep) -> AiSummaryOut:
    async with platform.store.session() as session:
        return AiSummaryOut.model_validate(await get_owned(session, AiSummary, summary_id, who.customer_id, "aisummary"))


@router.delete("/aisummaries/{summary_id}", response_model=AiSummaryOut)
async def delete_summary(summary_id: str, platform: PlatformDep, who: StaffDep) -> AiSummaryOut:
    """A summary still progressing is not made."""
    async with platform.store.transaction() as tx:
        row = await get_owned(tx.session, AiSummary, summary_id, who.customer_id, "aisummary")
        soft_delete(row, tx)
        return announce(tx, row, "summary_deleted", AiSummaryOut)
