"""``/v1.0/numbers``: E.164 phone numbers a customer owns, each pointing at flows."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field, field_validator
from sqlalchemy import select

from voipbin.accounts.customers import VIRTUAL_PREFIX
from voipbin.api.crud import apply_update, get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, Principal, StaffDep
from voipbin.api.errors import bad_request, conflict, forbidden
from voipbin.core.ids import is_uuid, new_id
from voipbin.core.phone import E164_RULE, is_e164
from voipbin.runtime import Platform
from voipbin.store.models import Customer, Number
from voipbin.views import LongText, NumberOut, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0/numbers", tags=["numbers"])

E164 = Annotated[str, Field(min_length=1, max_length=20, description=f"E.164: {E164_RULE}")]
FlowId = Annotated[str, Field(max_length=36, description="A flow id, or empty for none.")]



class _FlowRefs(Strict):
    @field_validator("call_flow_id", "message_flow_id", check_fields=False)
    @classmethod
    def _flow_id(cls, value: str | None) -> str | None:
        if value and not is_uuid(value):
            raise ValueError("must be a flow id (UUID) or empty")
        return value


class NumberIn(_FlowRefs):
    number: E164
    type: Literal["normal", "virtual"] = "normal"
    customer_id: Annotated[str, Field(max_length=36, description="The operator only: the customer to assign the number to.")] = ""
    call_flow_id: FlowId = ""
    message_flow_id: FlowId = ""
    name: ShortText = ""
    detail: LongText = ""


class NumberUpdate(_FlowRefs):
    call_flow_id: FlowId | None = None
    message_flow_id: FlowId | None = None
    name: ShortText | None = None
    detail: LongText | None = None


@router.post(
    "",
    response_model=NumberOut,
    summary="Acquire a number",
    description=f"Customers take virtual numbers ({VIRTUAL_PREFIX}…, which no carrier routes); a number of the "
    "telephone network is the caller id carriers see, so only the operator assigns one (with `customer_id`).",
)
async def create(body: NumberIn, platform: PlatformDep, who: StaffDep) -> NumberOut:
    if not is_e164(body.number):
        raise bad_request(f"'number' must be E.164: {E164_RULE}.")
    virtual = body.number.startswith(VIRTUAL_PREFIX)
    if body.type == "virtual" and not virtual:
        raise bad_request(f"Virtual numbers start with {VIRTUAL_PREFIX}.")
    if not virtual and not who.is_superadmin:
        raise forbidden(f"Only the operator assigns numbers of the telephone network; take a virtual number "
                        f"({VIRTUAL_PREFIX}…) or ask the operator for {body.number}.")
    owner = await _assignee(platform, who, body.customer_id)
    async with platform.store.transaction() as tx:
        taken = await tx.session.scalar(
            select(Number.id).where(Number.number == body.number, Number.tm_delete.is_(None))
        )
        if taken:
            raise conflict(f"{body.number} is already in use.")
        now = tx.clock.now()
        number = Number(
            id=new_id(),
            customer_id=owner,
            status="active",
            tm_purchase=now,
            tm_create=now,
            **body.model_dump(exclude={"customer_id"}),
        )
        tx.session.add(number)
        return announce(tx, number, "number_created", NumberOut)


async def _assignee(platform: Platform, who: Principal, customer_id: str) -> str:
    if not customer_id or customer_id == who.customer_id:
        return who.customer_id
    if not who.is_superadmin:
        raise forbidden("Only the operator assigns numbers to other customers.")
    async with platform.store.session() as session:
        exists = is_uuid(customer_id) and await session.scalar(
            select(Customer.id).where(Customer.id == customer_id, Customer.tm_delete.is_(None))
        )
    if not exists:
        raise bad_request(f"customer_id {customer_id} is not a customer of this install.")
    return customer_id


@router.get("", response_model=Page[NumberOut])
async def list_(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[NumberOut]:
    return await list_view(platform, Number, NumberOut, who.customer_id, paging)


@router.get("/{number_id}", response_model=NumberOut)
async def get(number_id: str, platform: PlatformDep, who: StaffDep) -> NumberOut:
    async with platform.store.session() as session:
        return NumberOut.model_validate(await get_owned(session, Number, number_id, who.customer_id, "number"))


@router.put("/{number_id}", response_model=NumberOut)
async def update(number_id: str, body: NumberUpdate, platform: PlatformDep, who: StaffDep) -> NumberOut:
    async with platform.store.transaction() as tx:
        number = await get_owned(tx.session, Number, number_id, who.customer_id, "number")
        apply_update(number, body, tx)
        return announce(tx, number, "number_updated", NumberOut)


@router.delete("/{number_id}", response_model=NumberOut, summary="Release a number")
async def delete(number_id: str, platform: PlatformDep, who: StaffDep) -> NumberOut:
    async with platform.store.transaction() as tx:
        number = await get_owned(tx.session, Number, number_id, who.customer_id, "number")
        number.status = "deleted"
        soft_delete(number, tx)
        return announce(tx, number, "number_deleted", NumberOut)
