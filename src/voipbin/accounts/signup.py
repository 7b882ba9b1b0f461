"""Signup: an email carrying a 6-digit code (headless, ``/auth/complete-signup``) and a
verification link (the console, ``/auth/email-verify``); either makes a customer with a ready
access key, and a welcome mail links to setting the admin's password.

``start`` answers the same way, in about the same time, whether or not the email is known: the
expensive steps (hashing a code, storing a signup, sending mail) happen on every path, and mail
goes out in the background so SMTP latency shows in no response. A signup lives until it expires
or until its address gets an account by any path; its mail is for its own ``temp_token`` only.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.accounts import recovery
from voipbin.accounts.context import AccountsContext
from voipbin.accounts.customers import Profile, assign_virtual_number, create_accesskey, create_customer
from voipbin.accounts.errors import AccountError
from voipbin.auth.passwords import hash_secret, verify_secret
from voipbin.core.ids import token_hex
from voipbin.mail.outbox import agent_audience, compose, send_later, signup_audience
from voipbin.store.db import Tx
from voipbin.store.models import Accesskey, Agent, Customer, Signup

ALREADY_REGISTERED = "This email already has an account; log in instead."


@dataclass(frozen=True)
class Completed:
    customer: Customer
    accesskey: Accesskey
    token: str


def normalize_email(raw: str) -> str | None:
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


async def start(ctx: AccountsContext, profile: Profile, source: str) -> str:
    """The temp_token of a new signup ("" when the email is invalid).

    A registered email gets a temp_token too, indistinguishable from a real one (its code is
    never mailed; its owner is told of the attempt instead), so the answer reveals nothing.
    ``source`` is the client's address: each may start only so many signups an hour.
    """
    settings = ctx.settings
    if await ctx.throttle.fail(f"signup-from:{source}", 3600) > settings.signup_limit_per_source:
        raise AccountError(429, "TOO_MANY_SIGNUPS", "Too many signups from your address in the last hour; try again later.")
    code = f"{secrets.randbelow(10**6):06d}"
    code_hash = await hash_secret(code)
    email = normalize_email(profile.email)
    if email is None:
        return ""
    owner = await _owner_of(ctx, email)
    now = ctx.clock.now()
    temp_token = token_hex(16)
    link_token, link_hash = recovery.new_link_token()
    async with ctx.store.transaction() as tx:
        tx.session.add(
            Signup(
                temp_token=temp_token,
                email=email,
                profile=asdict(profile) | {"email": email},
                code_hash=code_hash,
                link_hash=link_hash,
                attempts=0,
                tm_expire=now + timedelta(seconds=settings.signup_code_lifetime_s),
                tm_create=now,
            )
        )
        # Expired signups are of no further use to anyone.
        await tx.session.execute(delete(Signup).where(Signup.tm_expire < now))
    # However often someone signs up with an address, its inbox gets only a few mails an hour.
    if await ctx.throttle.fail(f"signup-mail:{email}", 3600) <= settings.signup_mails_per_address:
        mail = _existing_mail(ctx, email, owner) if owner else _verification_mail(ctx, email, code, link_token, temp_token)
        send_later(ctx.mailer, mail)
    return temp_token


def _verification_mail(ctx: AccountsContext, email: str, code: str, link_token: str, temp_token: str) -> EmailMessage:
    minutes = ctx.settings.signup_code_lifetime_s // 60
    link = f"{ctx.settings.base_url}/auth/email-verify?token={link_token}"
    return compose(
        ctx.settings.mail_from,
        email,
        f"Your VoIPBIN verification code: {code}",
        f"Confirm your email address by opening this link:\n{link}\n\n"
        f"Or, signing up through the API, send this code with POST /auth/complete-signup together\n"
        f"with your temp_token: {code}\n\n"
        f"Both expire in {minutes} minutes. If you did not sign up, ignore this email.\n",
        audience=[signup_audience(temp_token)],
    )


async def complete(ctx: AccountsContext, temp_token: str, code: str) -> Completed:
    """The headless path: the temp_token from ``start`` and the mailed code."""
    await _count_attempt(ctx, temp_token, code)
    async with ctx.store.session() as session:
        pending = await session.get(Signup, temp_token)
    code_ok = pending is not None and await verify_secret(pending.code_hash, code)
    async with ctx.store.transaction() as tx:
        signup = await tx.session.get(Signup, temp_token)
        refused = _check(signup, code_ok, ctx.clock.read())
        if refused is not None:
            return _finish(ctx, refused)
        assert signup is not None
        outcome = await _activate(ctx, tx, signup)
    return _finish(ctx, outcome)


async def verify_link(ctx: AccountsContext, link_token: str) -> Completed:
    """The console's path: the token of the emailed verification link."""
    invalid = AccountError(400, "INVALID_TOKEN", "This verification link is invalid, expired or already used; sign up again.")
    async with ctx.store.transaction() as tx:
        signup = await tx.session.scalar(select(Signup).where(Signup.link_hash == recovery.hash_link_token(link_token)))
        outcome: Activated | AccountError = invalid
        if signup is not None and signup.tm_expire > ctx.clock.read():
            outcome = await _activate(ctx, tx, signup)
    return _finish(ctx, outcome)


@dataclass(frozen=True)
class Activated:
    completed: Completed
    welcome: EmailMessage


async def _activate(ctx: AccountsContext, tx: Tx, signup: Signup) -> Activated | AccountError:
    """Turn a checked signup into a customer with an access key and a set-password link."""
    await tx.session.delete(signup)  # used either way: a signup completes once
    if await _owner_in(tx.session, signup.email):
        return AccountError(400, "ALREADY_REGISTERED", ALREADY_REGISTERED)
    settings = ctx.settings
    customer, admin = await create_customer(tx, Profile(**signup.profile), email_verified=True)
    key, token = await create_accesskey(tx, customer.id, "signup", "Created at signup", settings.accesskey_default_expire_s)
    if settings.sandbox:
        await assign_virtual_number(tx, customer.id)
    await end_pending_signups(tx, signup.email)
    welcome = _welcome_mail(ctx, customer, admin, recovery.issue_link(tx, admin.id))
    return Activated(Completed(customer=customer, accesskey=key, token=token), welcome)


def _finish(ctx: AccountsContext, outcome: Activated | AccountError) -> Completed:
    """After the commit: raise the failure, or send the welcome mail."""
    if isinstance(outcome, AccountError):
        raise outcome
    send_later(ctx.mailer, outcome.welcome)
    return outcome.completed


async def _count_attempt(ctx: AccountsContext, temp_token: str, code: str) -> None:
    """Count this attempt atomically (parallel guesses cannot slip past the limit)."""
    limit = ctx.settings.signup_max_attempts
    async with ctx.store.transaction() as tx:
        session = tx.session
        counted = await session.execute(
            update(Signup)
            .where(Signup.temp_token == temp_token, Signup.attempts < limit)
            .values(attempts=Signup.attempts + 1)
        )
        exists = counted.rowcount == 1 or await session.get(Signup, temp_token) is not None  # type: ignore[attr-defined]
    if not exists:
        await verify_secret("", code)  # as slow as a real check
        raise AccountError(400, "INVALID_TEMP_TOKEN", "Unknown temp_token; start again with POST /auth/signup.")
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        raise AccountError(
            429,
            "TOO_MANY_ATTEMPTS",
            f"More than {limit} attempts on this temp_token; call POST /auth/signup again for a new code.",
        )


def _check(signup: Signup | None, code_ok: bool, now: datetime) -> AccountError | None:
    if signup is None:
        return AccountError(400, "INVALID_TEMP_TOKEN", "Unknown temp_token; start again with POST /auth/signup.")
    if signup.tm_expire <= now:
        return AccountError(400, "CODE_EXPIRED", "The code has expired; call POST /auth/signup again for a new one.")
    if not code_ok:
        return AccountError(400, "INVALID_CODE", "The code is not correct; check the 6 digits in the email.")
    return None


async def end_pending_signups(tx: Tx, email: str) -> None:
    """The address has an account now: every signup still pending for it is over."""
    await tx.session.execute(delete(Signup).where(Signup.email == email.lower()))


async def _owner_of(ctx: AccountsContext, email: str) -> str | None:
    async with ctx.store.session() as session:
        return await _owner_in(session, email)


async def _owner_in(session: AsyncSession, email: str) -> str | None:
    """The agent an address belongs to (its login, or its customer's admin), if it has an account."""
    agent_id = await session.scalar(
        select(Agent.id).where(func.lower(Agent.username) == email, Agent.tm_delete.is_(None)).limit(1)
    )
    if agent_id is not None:
        return str(agent_id)
    customer_id = await session.scalar(
        select(Customer.id).where(func.lower(Customer.email) == email, Customer.tm_delete.is_(None)).limit(1)
    )
    if customer_id is None:
        return None
    admin_id = await session.scalar(
        select(Agent.id).where(Agent.customer_id == customer_id, Agent.tm_delete.is_(None)).order_by(Agent.tm_create).limit(1)
    )
    return None if admin_id is None else str(admin_id)


def _existing_mail(ctx: AccountsContext, email: str, owner_agent_id: str) -> EmailMessage:
    return compose(
        ctx.settings.mail_from,
        email,
        "Someone tried to sign up with your email",
        "A signup was started with this address, which already has a VoIPBIN account.\n"
        "If it was you, log in instead (or use 'Forgot password'). Otherwise, ignore this email.\n",
        audience=[agent_audience(owner_agent_id)],
    )


def _welcome_mail(ctx: AccountsContext, customer: Customer, admin: Agent, password_token: str) -> EmailMessage:
    settings = ctx.settings
    return compose(
        settings.mail_from,
        customer.email,
        "Welcome to VoIPBIN",
        f"Your account is ready. Customer id: {customer.id}\n\n"
        f"Set the password you will log in with ({customer.email}) here; the link works once, for 24 hours:\n"
        f"{recovery.link_url(ctx, password_token)}\n\n"
        f"Your access key was returned at signup; use it as ?accesskey= with the API.\n"
        f"The console is at {settings.base_url}/console/\n"
        f"SIP phones register to {settings.registrar_domain(customer.id)}.\n",
        audience=[agent_audience(admin.id)],
    )
