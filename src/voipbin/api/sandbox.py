"""``/sandbox/mailbox``: the mail the platform "sent" when it has no SMTP server (the .eml outbox).

It lets a newcomer finish signup in the console without a mail server. Each reader sees only mail
to their own addresses: a pending signup's, named by its ``temp_token``, or a customer's (its email
and its agents' usernames) with any credential; the operator sees everything. It exists only in
sandbox mode with the file outbox; ``--smtp-url`` turns it off.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ConfigDict, Field
from sqlalchemy import func, select

from voipbin.api.deps import OptionalPrincipalDep, PlatformDep, Principal
from voipbin.api.errors import ApiError, unauthenticated
from voipbin.api.schemas import Resource, Timestamp
from voipbin.mail.outbox import StoredMail, read_outbox
from voipbin.runtime import Platform
from voipbin.store.models import Agent, Customer, Signup

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


TempToken = Annotated[str, Query(max_length=64, description="A pending signup's temp_token: shows mail to its email")]


async def _readable_mail(platform: Platform, reader: Principal | None, temp_token: str) -> list[StoredMail]:
    settings = platform.settings
    if not settings.sandbox or settings.smtp_url:
        raise ApiError(404, "MAILBOX_OFF", "The mailbox exists only in sandbox mode without --smtp-url; read your email.")
    addresses = await _addresses(platform, reader, temp_token)
    mails = await asyncio.to_thread(read_outbox, settings.mail_dir)
    return [mail for mail in mails if addresses is None or mail.to.strip().lower() in addresses]


async def _addresses(platform: Platform, reader: Principal | None, temp_token: str) -> set[str] | None:
    """The recipient addresses this reader may see; None for the operator, who sees all."""
    async with platform.store.session() as session:
        if temp_token:
            signup = await session.get(Signup, temp_token)
            if signup is None:
                raise ApiError(404, "SIGNUP_NOT_FOUND", "No pending signup with this temp_token; it may be verified already: log in.")
            return {signup.email}
        if reader is None:
            raise unauthenticated("Give the temp_token of your signup, or log in: the mailbox shows your own mail only.")
        if reader.is_superadmin:
            return None
        customer_email = await session.scalar(select(Customer.email).where(Customer.id == reader.customer_id))
        usernames = await session.scalars(
            select(func.lower(Agent.username)).where(Agent.customer_id == reader.customer_id, Agent.tm_delete.is_(None))
        )
        return {(customer_email or "").lower(), *usernames}


@router.get("/mailbox", response_model=Mailbox, summary="Mail the sandbox kept instead of sending, newest first")
async def list_mail(platform: PlatformDep, reader: OptionalPrincipalDep, temp_token: TempToken = "") -> Mailbox:
    return Mailbox(result=[MailOut.model_validate(mail) for mail in await _readable_mail(platform, reader, temp_token)])


@router.get("/mailbox/{mail_id}", response_model=MailOut, summary="One kept message")
async def get_mail(mail_id: str, platform: PlatformDep, reader: OptionalPrincipalDep, temp_token: TempToken = "") -> MailOut:
    for mail in await _readable_mail(platform, reader, temp_token):
        if mail.id == mail_id:
            return MailOut.model_validate(mail)
    raise ApiError(404, "MAIL_NOT_FOUND", "No such message in your mailbox.")
