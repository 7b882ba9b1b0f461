"""Emailed links that set an agent's password: the welcome mail's "set your password" and
"forgot password" both issue one.

A link carries 256 random bits, and only its SHA-256 is stored, so links cannot be guessed or read
back from the database; each works once, for a day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, func, select

from voipbin.accounts.context import AccountsContext
from voipbin.accounts.defaults import ADMIN_PASSWORD
from voipbin.accounts.errors import AccountError
from voipbin.auth.passwords import hash_secret
from voipbin.core.ids import token_hex
from voipbin.mail.outbox import agent_audience, compose, send_later
from voipbin.store.db import Tx
from voipbin.store.models import Agent, Customer, PasswordReset

LINK_LIFETIME = timedelta(days=1)
MIN_PASSWORD_LENGTH = 8
# The most common passwords of at least 8 characters in public breach lists.
COMMON_PASSWORDS = frozenset(
    ["password", "12345678", "123456789", "1234567890", "password1", "password123", "qwertyuiop", "qwerty123", "11111111", "iloveyou", "00000000", "abc12345", "abcd1234", "1qaz2wsx", "sunshine", "princess", "football", "baseball", "welcome1", "letmein1", "admin123", "administrator", "changeme", "passw0rd", "trustno1", "superman", "starwars"]
)


def new_link_token() -> tuple[str, str]:
    """A link token (64 lowercase hex, VoIPBIN's format) and the hash that is stored."""
    token = token_hex(32)
    return token, hash_link_token(token)


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.strip().lower().encode()).hexdigest()


def password_problem(password: str, username: str) -> str | None:
    """Why this password is too weak, in words a person can act on; None when it is fine."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    lowered = password.lower()
    if lowered == ADMIN_PASSWORD:
        return "This is the sandbox's published password; pick one of your own."
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        return "This password is too easy to guess; pick a longer or less common one."
    if username and lowered == username.lower():
        return "The password must not be the username."
    return None


def issue_link(tx: Tx, agent_id: str) -> str:
    """A new set-password link token for this agent, saved in ``tx``."""
    token, token_hash = new_link_token()
    now = tx.clock.now()
    tx.session.add(PasswordReset(token_hash=token_hash, agent_id=agent_id, tm_expire=now + LINK_LIFETIME, tm_create=now))
    return token


def link_url(ctx: AccountsContext, token: str) -> str:
    return f"{ctx.settings.base_url}/auth/password-reset?token={token}"


MAILS_PER_HOUR = 3


async def forgot(ctx: AccountsContext, username: str) -> None:
    """Mail a reset link when the user exists; answer the same either way."""
    if await ctx.throttle.fail(f"forgot:{username.strip().lower()}", 3600) > MAILS_PER_HOUR:
        return  # nobody's inbox gets flooded through us
    async with ctx.store.transaction() as tx:
        agent = await tx.session.scalar(
            select(Agent)
            .join(Customer, Customer.id == Agent.customer_id)
            .where(func.lower(Agent.username) == username.strip().lower())
            .where(Agent.tm_delete.is_(None), Customer.tm_delete.is_(None))
        )
        if agent is None:
            return
        token = issue_link(tx, agent.id)
        await tx.session.execute(delete(PasswordReset).where(PasswordReset.tm_expire < tx.clock.now()))
    send_later(
        ctx.mailer,
        compose(
            ctx.settings.mail_from,
            agent.username,
            "Reset your VoIPBIN password",
            f"Someone asked to reset the password of {agent.username}.\n\n"
            f"Set a new password here (the link works once, for 24 hours):\n{link_url(ctx, token)}\n\n"
            "If it was not you, ignore this email: your password stays as it is.\n",
            audience=[agent_audience(agent.id)],
        ),
    )


def set_password(tx: Tx, agent: Agent, password_hash: str) -> None:
    """A new password; every JWT issued before it stops working."""
    agent.password_hash = password_hash
    agent.session_epoch += 1
    agent.tm_update = tx.clock.now()


async def reset(ctx: AccountsContext, token: str, password: str, announce: Callable[[Tx, Agent], None]) -> None:
    """Set the password of a link's agent; ``announce`` emits the agent's change in the same transaction."""
    invalid = AccountError(
        400, "INVALID_TOKEN", "This link is invalid, expired or already used; ask for a new one with 'Forgot password'."
    )
    async with ctx.store.session() as session:
        link = await session.get(PasswordReset, hash_link_token(token))
        agent = await session.get(Agent, link.agent_id) if link else None
    if link is None or agent is None or agent.tm_delete is not None or link.tm_expire <= ctx.clock.now():
        raise invalid
    if problem := password_problem(password, agent.username):
        raise AccountError(400, "WEAK_PASSWORD", problem)
    password_hash = await hash_secret(password)  # slow: before the transaction, not inside it
    async with ctx.store.transaction() as tx:
        # Whoever deletes the link uses it: single use even under concurrent requests.
        used = await tx.session.execute(delete(PasswordReset).where(PasswordReset.token_hash == link.token_hash))
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise invalid
        await tx.session.execute(delete(PasswordReset).where(PasswordReset.agent_id == agent.id))
        fresh = await tx.session.get(Agent, agent.id)
        assert fresh is not None
        set_password(tx, fresh, password_hash)
        announce(tx, fresh)
