"""Changing a customer's email: the new address is used only once its owner opens the link mailed to it.

Until then the customer keeps its old address, so nobody can point an account at someone else's
inbox (and so at the mail sent there). Links carry 256 random bits, only their hash is stored,
and each works once, for a day.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from sqlalchemy import delete, func, select

from voipbin.accounts import recovery
from voipbin.accounts.context import AccountsContext
from voipbin.accounts.errors import AccountError
from voipbin.mail.outbox import agent_audience, compose
from voipbin.store.db import Tx
from voipbin.store.models import Agent, Customer, EmailChange


async def request(ctx: AccountsContext, tx: Tx, customer: Customer, email: str) -> EmailMessage:
    """The confirmation mail for ``email``, to send once ``tx`` commits; the customer's email stays as it is."""
    token, token_hash = recovery.new_link_token()
    now = tx.clock.now()
    await tx.session.execute(delete(EmailChange).where(EmailChange.customer_id == customer.id))
    tx.session.add(EmailChange(token_hash=token_hash, customer_id=customer.id, email=email,
                               tm_expire=now + recovery.LINK_LIFETIME, tm_create=now))
    # Only someone who already logs in with that address has proven they read it.
    owner = await tx.session.scalar(
        select(Agent.id).where(func.lower(Agent.username) == email, Agent.tm_delete.is_(None)).limit(1)
    )
    link = f"{ctx.settings.base_url}/auth/email-change?token={token}"
    return compose(
        ctx.settings.mail_from,
        email,
        "Confirm your new VoIPBIN email address",
        f"The VoIPBIN account {customer.id} asked to use this address as its email.\n\n"
        f"Confirm it here (the link works once, for 24 hours):\n{link}\n\n"
        "If it was not you, ignore this email: nothing changes.\n",
        audience=[agent_audience(owner)] if owner else [],
    )


async def confirm(ctx: AccountsContext, token: str, announce: Callable[[Tx, Customer], None]) -> Customer:
    """Apply the change a link stands for; ``announce`` emits the customer's change in the same transaction."""
    invalid = AccountError(400, "INVALID_TOKEN", "This link is invalid, expired or already used; change the email again.")
    async with ctx.store.transaction() as tx:
        change = await tx.session.get(EmailChange, recovery.hash_link_token(token))
        if change is None or change.tm_expire <= tx.clock.now():
            raise invalid
        await tx.session.delete(change)
        customer = await tx.session.scalar(
            select(Customer).where(Customer.id == change.customer_id, Customer.tm_delete.is_(None))
        )
        if customer is None:
            raise invalid
        customer.email = change.email
        customer.email_verified = True
        customer.tm_update = tx.clock.now()
        announce(tx, customer)
    return customer
