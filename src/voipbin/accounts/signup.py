"""Headless signup: an emailed 6-digit code, then a customer with a ready access key.

``start`` answers the same way, in about the same time, whether or not the email is known: the
expensive steps (hashing a code, sending mail) happen on every path, and mail goes out in the
background so SMTP latency shows in no response.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.accounts.customers import Profile, assign_virtual_number, create_accesskey, create_customer
from voipbin.auth.passwords import hash_secret, verify_secret
from voipbin.core.ids import token_hex
from voipbin.mail.outbox import compose
from voipbin.runtime import Platform
from voipbin.store.models import Accesskey, Agent, Customer, Signup

log = logging.getLogger(__name__)


class SignupError(Exception):
    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message


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


async def start(platform: Platform, profile: Profile) -> str:
    """Returns the temp_token, or "" when the email is invalid or already has an account."""
    code = f"{secrets.randbelow(10**6):06d}"
    code_hash = await hash_secret(code)
    email = normalize_email(profile.email)
    if email is None or await _email_taken(platform, email):
        _background(_notify_existing(platform, email) if email else None)
        return ""
    now = platform.clock.now()
    temp_token = token_hex(16)
    async with platform.store.transaction() as tx:
        tx.session.add(
            Signup(
                temp_token=temp_token,
                email=email,
                profile=asdict(profile) | {"email": email},
                code_hash=code_hash,
                attempts=0,
                tm_expire=now + timedelta(seconds=platform.settings.signup_code_lifetime_s),
                tm_create=now,
            )
        )
        # Expired attempts are of no further use to anyone.
        await tx.session.execute(delete(Signup).where(Signup.tm_expire < now - timedelta(days=1)))
    minutes = platform.settings.signup_code_lifetime_s // 60
    _background(
        platform.mailer.send(
            compose(
                platform.settings.mail_from,
                email,
                f"Your VoIPBIN verification code: {code}",
                f"Your verification code is {code}\n\n"
                f"Send it with POST /auth/complete-signup together with your temp_token.\n"
                f"The code expires in {minutes} minutes. If you did not sign up, ignore this email.\n",
            )
        )
    )
    return temp_token


async def complete(platform: Platform, temp_token: str, code: str) -> Completed:
    await _count_attempt(platform, temp_token, code)
    settings = platform.settings
    async with platform.store.session() as session:
        pending = await session.get(Signup, temp_token)
    code_ok = pending is not None and await verify_secret(pending.code_hash, code)
    async with platform.store.transaction() as tx:
        signup = await tx.session.get(Signup, temp_token)
        failure = _check(signup, code_ok, platform.clock.read())
        if signup is not None and failure is None and await _email_taken_in(tx.session, signup.email):
            failure = SignupError(400, "ALREADY_REGISTERED", "This email already has an account; log in instead.")
        if failure is not None:
            if failure.reason == "ALREADY_REGISTERED":
                await tx.session.delete(signup)
        else:
            assert signup is not None
            customer, _admin = await create_customer(tx, Profile(**signup.profile), email_verified=True)
            key, token = await create_accesskey(
                tx, customer.id, "signup", "Created at signup", settings.accesskey_default_expire_s
            )
            if settings.sandbox:
                await assign_virtual_number(tx, customer.id)
            await tx.session.delete(signup)
    if failure is not None:
        raise failure
    _background(_welcome(platform, customer))
    return Completed(customer=customer, accesskey=key, token=token)


async def _count_attempt(platform: Platform, temp_token: str, code: str) -> None:
    """Count this attempt atomically (parallel guesses cannot slip past the limit)."""
    limit = platform.settings.signup_max_attempts
    async with platform.store.transaction() as tx:
        session = tx.session
        counted = await session.execute(
            update(Signup)
            .where(Signup.temp_token == temp_token, Signup.attempts < limit)
            .values(attempts=Signup.attempts + 1)
        )
        exists = counted.rowcount == 1 or await session.get(Signup, temp_token) is not None  # type: ignore[attr-defined]
    if not exists:
        await verify_secret("", code)  # as slow as a real check
        raise SignupError(400, "INVALID_TEMP_TOKEN", "Unknown temp_token; start again with POST /auth/signup.")
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        raise SignupError(
            429,
            "TOO_MANY_ATTEMPTS",
            f"More than {limit} attempts on this temp_token; call POST /auth/signup again for a new code.",
        )


def _check(signup: Signup | None, code_ok: bool, now: datetime) -> SignupError | None:
    if signup is None:
        return SignupError(400, "INVALID_TEMP_TOKEN", "Unknown temp_token; start again with POST /auth/signup.")
    if signup.tm_expire <= now:
        return SignupError(400, "CODE_EXPIRED", "The code has expired; call POST /auth/signup again for a new one.")
    if not code_ok:
        return SignupError(400, "INVALID_CODE", "The code is not correct; check the 6 digits in the email.")
    return None


async def _email_taken(platform: Platform, email: str) -> bool:
    async with platform.store.session() as session:
        return await _email_taken_in(session, email)


async def _email_taken_in(session: AsyncSession, email: str) -> bool:
    customers = await session.scalar(
        select(func.count()).select_from(Customer).where(func.lower(Customer.email) == email, Customer.tm_delete.is_(None))
    )
    agents = await session.scalar(
        select(func.count()).select_from(Agent).where(func.lower(Agent.username) == email, Agent.tm_delete.is_(None))
    )
    return bool(customers or agents)


async def _notify_existing(platform: Platform, email: str) -> None:
    await platform.mailer.send(
        compose(
            platform.settings.mail_from,
            email,
            "Someone tried to sign up with your email",
            "A signup was started with this address, which already has a VoIPBIN account.\n"
            "If it was you, log in with POST /auth/login instead. Otherwise, ignore this email.\n",
        )
    )


async def _welcome(platform: Platform, customer: Customer) -> None:
    await platform.mailer.send(
        compose(
            platform.settings.mail_from,
            customer.email,
            "Welcome to VoIPBIN",
            f"Your account is ready. Customer id: {customer.id}\n\n"
            f"Your access key was returned by POST /auth/complete-signup; use it as ?accesskey=.\n"
            f"To log in with a password, set one at {platform.settings.base_url}/console/.\n"
            f"SIP phones register to {platform.settings.registrar_domain(customer.id)}.\n",
        )
    )


_pending: set[asyncio.Task[None]] = set()


def _background(coro) -> None:  # type: ignore[no-untyped-def]
    """Run without making the caller wait; keep a reference so the task is not collected."""
    if coro is None:
        return
    task = asyncio.create_task(_logged(coro))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _logged(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        await coro
    except Exception:
        log.exception("sending mail failed")
