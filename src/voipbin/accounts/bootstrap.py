"""What a fresh install holds: the operator's admin account and, in the sandbox, demo resources.

The seed's sandbox promises ``admin@localhost`` / ``admin@localhost``. A published password is
fine on loopback and an open door anywhere else, so while it is in use (``default_password_in_use``)
the install refuses to listen beyond loopback, to add trunks, or to call out through one; demo
extensions get random passwords, shown in the start banner.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from voipbin.accounts import recovery
from voipbin.accounts.context import AccountsContext
from voipbin.accounts.customers import Profile, assign_virtual_number, create_customer
from voipbin.accounts.defaults import ADMIN_PASSWORD, ADMIN_USERNAME, default_password_in_use
from voipbin.auth.passwords import hash_secret, verify_secret
from voipbin.auth.permissions import Permission
from voipbin.core.ids import new_id, token_hex
from voipbin.store.models import Agent, Extension, Number

log = logging.getLogger(__name__)

DEMO_EXTENSIONS = ("1000", "2000", "3000")
DEMO_PASSWORD_LENGTH = 12


class DefaultCredentials(RuntimeError):
    """The install would be reachable from elsewhere while admin@localhost has its published password."""


async def ensure_sandbox_admin(ctx: AccountsContext) -> None:
    """Create admin@localhost (platform superadmin and admin of "Sandbox Admin") once; with
    ``admin_password`` set, it replaces the published default password."""
    chosen = ctx.settings.admin_password
    async with ctx.store.session() as session:
        admin = await session.scalar(select(Agent).where(Agent.username == ADMIN_USERNAME, Agent.tm_delete.is_(None)))
    if admin is not None:
        if chosen and chosen != ADMIN_PASSWORD and await verify_secret(admin.password_hash, ADMIN_PASSWORD):
            await _replace_default_password(ctx, admin.id, chosen)
        return
    password_hash = await hash_secret(chosen or ADMIN_PASSWORD)
    try:
        customer_id = await _create_sandbox_admin(ctx, password_hash)
    except IntegrityError:  # another node of this install, starting at the same time, made it
        return
    log.info("created %s (customer %s)", ADMIN_USERNAME, customer_id)


async def _create_sandbox_admin(ctx: AccountsContext, password_hash: str) -> str:
    async with ctx.store.transaction() as tx:
        customer, _agent = await create_customer(
            tx,
            Profile(email=ADMIN_USERNAME, name="Sandbox Admin", detail="Created by voipbin init"),
            admin_password_hash=password_hash,
            admin_permission=Permission.PROJECT_SUPER_ADMIN | Permission.CUSTOMER_ADMIN,
            email_verified=True,
        )
        if ctx.settings.sandbox:
            await assign_virtual_number(tx, customer.id, name="demo number", detail="The sandbox operator's demo number")
            now = tx.clock.now()
            for ext in DEMO_EXTENSIONS:
                tx.session.add(
                    Extension(
                        id=new_id(),
                        customer_id=customer.id,
                        name=f"demo-{ext}",
                        detail=f"Demo extension {ext}",
                        extension=ext,
                        password=_demo_password(),
                        direct_hash=token_hex(6),
                        tm_create=now,
                    )
                )
    return customer.id


def _demo_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(DEMO_PASSWORD_LENGTH))


async def _replace_default_password(ctx: AccountsContext, agent_id: str, password: str) -> None:
    password_hash = await hash_secret(password)
    async with ctx.store.transaction() as tx:
        agent = await tx.session.get(Agent, agent_id)
        if agent is not None:
            recovery.set_password(tx, agent, password_hash)
    log.info("the password of %s was set from the admin password setting", ADMIN_USERNAME)


async def refuse_exposure_with_default_password(ctx: AccountsContext) -> None:
    """Raise DefaultCredentials when a published password would guard an install reachable from elsewhere."""
    settings = ctx.settings
    if not settings.exposed or not await default_password_in_use(ctx.store):
        return
    if settings.insecure_sandbox:
        log.warning("%s still has its published password and this install is reachable from other machines "
                    "(--insecure-sandbox): anyone can log in as the operator", ADMIN_USERNAME)
        return
    raise DefaultCredentials(
        f"{ADMIN_USERNAME} still has its published password ({ADMIN_PASSWORD}), and this install would be "
        f"reachable from other machines (--host {settings.host or '0.0.0.0'}"
        f"{', --public-address ' + settings.public_address if settings.public_address else ''}). "
        "Choose a password first: start with VOIPBIN_ADMIN_PASSWORD=<a strong password>, or change it on a "
        "loopback-only run; --insecure-sandbox starts anyway."
    )


@dataclass(frozen=True)
class DemoExtension:
    extension: str
    password: str


@dataclass(frozen=True)
class SandboxFacts:
    """What the start banner tells a newcomer about the sandbox admin's account."""

    customer_id: str
    demo_number: str
    demo_extensions: tuple[DemoExtension, ...] = ()
    default_password: bool = False


async def sandbox_facts(ctx: AccountsContext) -> SandboxFacts:
    async with ctx.store.session() as session:
        customer_id = await session.scalar(select(Agent.customer_id).where(Agent.username == ADMIN_USERNAME)) or ""
        number = await session.scalar(
            select(Number.number)
            .where(Number.customer_id == customer_id, Number.tm_delete.is_(None))
            .order_by(Number.tm_create)
            .limit(1)
        )
        demos = await session.scalars(
            select(Extension)
            .where(Extension.customer_id == customer_id, Extension.extension.in_(DEMO_EXTENSIONS), Extension.tm_delete.is_(None))
            .order_by(Extension.extension)
        )
        extensions = tuple(DemoExtension(e.extension, e.password) for e in demos)
    return SandboxFacts(customer_id, number or "", extensions, await default_password_in_use(ctx.store))
