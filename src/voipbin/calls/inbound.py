"""Where an incoming call goes: a number's call flow, another extension, or out through the trunk.

One of our phones dialling another extension of its customer is connected to it; dialling a
phone number, it reaches that number's flow when the number is ours, or goes out through the
trunk with its customer's first number as caller id. A call from outside reaches the flow of the
number it dialled (VoIPBIN's inbound path).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from voipbin.calls.context import CallContext
from voipbin.core.ids import is_uuid, new_id
from voipbin.core.phone import is_e164
from voipbin.flows.actions import Action, parse_actions
from voipbin.sip.message import Address
from voipbin.store.models import Call, Conference, Extension, Flow, Number

Route = tuple[Call, tuple[Action, ...]]
CONFERENCE_PREFIX = "conference:"


async def route(ctx: CallContext, identity: tuple[str, str] | None, caller: Address, dialed: str) -> Route | None:
    """The call to record and the actions to run; None when nothing here answers ``dialed``.

    ``identity`` is (customer_id, extension) of a registered phone of ours, None for a call from outside.
    """
    if identity is None:
        return await _number_route(ctx, caller, dialed)
    if dialed.lower().startswith(CONFERENCE_PREFIX):
        return await _conference_route(ctx, identity, dialed[len(CONFERENCE_PREFIX):])
    return await _extension_route(ctx, identity, dialed) or await _phone_dials_number(ctx, identity, dialed)


def dialed_number(dialed: str) -> str | None:
    """What a phone dialled, as E.164 when it is a phone number: +CC…, 00CC… or 7+ plain digits."""
    compact = "".join(ch for ch in dialed if ch not in " -.()")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.isdigit() and len(compact) >= 7:
        compact = "+" + compact
    return compact if is_e164(compact) else None


def _incoming_call(
    ctx: CallContext, customer_id: str, flow_id: str, source: dict[str, Any], destination: dict[str, Any]
) -> Call:
    blank = {"type": "", "target": "", "target_name": "", "name": "", "detail": ""}
    return Call(
        id=new_id(),
        customer_id=customer_id,
        flow_id=flow_id,
        type="flow",
        source={**blank, **source},
        destination={**blank, **destination},
        status="ringing",
        direction="incoming",
        node_id=ctx.node_id,
        tm_create=ctx.clock.now(),
    )


async def _number_route(ctx: CallContext, caller: Address, dialed: str) -> Route | None:
    number_text = dialed if dialed.startswith("+") else f"+{dialed}"
    async with ctx.store.session() as session:
        number = await session.scalar(select(Number).where(Number.number == number_text, Number.tm_delete.is_(None)))
        if number is None or not number.call_flow_id:
            return None
        flow = await session.scalar(
            select(Flow).where(Flow.id == number.call_flow_id, Flow.customer_id == number.customer_id, Flow.tm_delete.is_(None))
        )
    if flow is None:
        return None
    source = {"type": "tel", "target": caller.sip_uri.user or "", "target_name": caller.display_name}
    destination = {"type": "tel", "target": number.number, "target_name": number.name}
    return _incoming_call(ctx, number.customer_id, flow.id, source, destination), parse_actions(flow.actions)


async def _extension_route(ctx: CallContext, identity: tuple[str, str], dialed: str) -> Route | None:
    customer_id, extension = identity
    async with ctx.store.session() as session:
        target = await session.scalar(
            select(Extension).where(
                Extension.customer_id == customer_id,
                Extension.tm_delete.is_(None),
                or_(Extension.extension == dialed, Extension.name == dialed),
            )
        )
    if target is None:
        return None
    source = {"type": "extension", "target": extension}
    destination = {"type": "extension", "target": target.extension, "target_name": target.name}
    # A built-in flow: ring the dialled extension's phones and bridge the first to answer.
    actions = [{"type": "connect", "option": {"destinations": [{"type": "extension", "target_name": target.name}]}}]
    return _incoming_call(ctx, customer_id, "", source, destination), parse_actions(actions)


async def _conference_route(ctx: CallContext, identity: tuple[str, str], conference_id: str) -> Route | None:
    """A phone of ours dialling ``conference:<id>`` (VoIPBIN's address form) joins its customer's conference."""
    customer_id, extension = identity
    if not is_uuid(conference_id):
        return None
    async with ctx.store.session() as session:
        found = await session.scalar(
            select(Conference.id).where(Conference.id == conference_id.lower(), Conference.customer_id == customer_id,
                                        Conference.tm_delete.is_(None))
        )  # fmt: skip
    if found is None:
        return None
    source = {"type": "extension", "target": extension}
    destination = {"type": "conference", "target": found}
    actions = [{"type": "answer"}, {"type": "conference_join", "option": {"conference_id": found}}]
    return _incoming_call(ctx, customer_id, "", source, destination), parse_actions(actions)


async def _phone_dials_number(ctx: CallContext, identity: tuple[str, str], dialed: str) -> Route | None:
    number = dialed_number(dialed)
    if number is None:
        return None
    customer_id, extension = identity
    caller = Address(f"sip:{extension}@{ctx.settings.domain}")
    if (ours := await _number_route(ctx, caller, number)) is not None:
        call, flow = ours
        if call.customer_id == customer_id:  # within one account the caller is its extension
            call.source = {**call.source, "type": "extension", "target": extension}
        return call, flow
    async with ctx.store.session() as session:
        caller_id = await session.scalar(
            select(Number.number)
            .where(Number.customer_id == customer_id, Number.tm_delete.is_(None))
            .order_by(Number.tm_create)
            .limit(1)
        )
    if caller_id is None:
        return None  # no number to show the called party
    source = {"type": "extension", "target": extension}
    destination = {"type": "tel", "target": number}
    actions = [{"type": "connect", "option": {"source": {"type": "tel", "target": caller_id}, "destinations": [destination]}}]
    return _incoming_call(ctx, customer_id, "", source, destination), parse_actions(actions)
