"""``/sandbox/mailbox``: the mail the platform "sent" when it has no SMTP server (the .eml outbox).

It lets a newcomer finish signup in the console without a mail server. A reader sees only the
mail of audiences they have proven (see ``mail.outbox``), never mail merely addressed to an email
someone typed: a pending, unexpired signup sees its own mail through its ``temp_token`` (and only
from this host: anyone can start a signup for any address, so its mail is no proof elsewhere); an
agent's login sees that agent's mail; an access key, the mail of its customer's agents (it acts as
their administrator already); the operator sees everything. It exists only in sandbox mode with
the file outbox; ``--smtp-url`` turns it off.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ConfigDict, Field
from sqlalchemy import select

from voipbin.api.deps import OptionalPrincipalDep, PlatformDep, Principal
from voipbin.api.errors import ApiError, forbidden, unauthenticated
from voipbin.mail.outbox import StoredMail, agent_audience, read_outbox, signup_audience
from voipbin.runtime import Platform
from voipbin.store.models import Agent, Signup
from voipbin.views import Resource, Timestamp

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


class MailOut(Resource):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    sender: str = Field(serialization_alias="from")
    to: str
    subject: str
    date: Timestamp
    body: str


class Mailbox(Resource):
    result: list[MailOut]


TempToken = Annotated[str, Query(max_length=64, description="A pending signup's temp_token: shows that signup's mail")]


async def _readable_mail(platform: Platform, request: Request, reader: Principal | None, temp_token: str) -> list[StoredMail]:
    settings = platform.settings
    if not settings.sandbox or settings.smtp_url:
        raise ApiError(404, "MAILBOX_OFF", "The mailbox exists only in sandbox mode without --smtp-url; read your email.")
    audience = await _audience(platform, request, reader, temp_token)
    mails = await asyncio.to_thread(read_outbox, settings.mail_dir)
    return [mail for mail in mails if audience is None or mail.audience & audience]


async def _audience(platform: Platform, request: Request, reader: Principal | None, temp_token: str) -> set[str] | None:
    """The audiences this reader has proven; None for the operator, who sees all."""
    if reader is not None:
        if reader.is_superadmin:
            return None
        if reader.agent_id:
            return {agent_audience(reader.agent_id)}
        async with platform.store.session() as session:
            agents = await session.scalars(select(Agent.id).where(Agent.customer_id == reader.customer_id))
            return {agent_audience(agent_id) for agent_id in agents}
    if not temp_token:
        raise unauthenticated("Give the temp_token of your signup, or log in: the mailbox shows your own mail only.")
    if not _from_this_host(request):
        raise forbidden("A signup's mail is shown only on the machine running the sandbox; configure --smtp-url for others.")
    async with platform.store.session() as session:
        signup = await session.get(Signup, temp_token)
    if signup is None or signup.tm_expire <= platform.clock.read():
        raise ApiError(404, "SIGNUP_NOT_FOUND", "No pending signup with this temp_token; it expired or is complete: log in.")
    return {signup_audience(temp_token)}


def _from_this_host(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


@router.get("/mailbox", response_model=Mailbox, summary="Mail the sandbox kept instead of sending, newest first")
async def list_mail(platform: PlatformDep, request: Request, reader: OptionalPrincipalDep, temp_token: TempToken = "") -> Mailbox:
    mails = await _readable_mail(platform, request, reader, temp_token)
    return Mailbox(result=[MailOut.model_validate(mail) for mail in mails])


@router.get("/mailbox/{mail_id}", response_model=MailOut, summary="One kept message")
async def get_mail(
    mail_id: str, platform: PlatformDep, request: Request, reader: OptionalPrincipalDep, temp_token: TempToken = ""
) -> MailOut:
    for mail in await _readable_mail(platform, request, reader, temp_token):
        if mail.id == mail_id:
            return MailOut.model_validate(mail)
    raise ApiError(404, "MAIL_NOT_FOUND", "No such message in your mailbox.")
