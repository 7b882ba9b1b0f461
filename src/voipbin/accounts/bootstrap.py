"""What a fresh install holds: the operator's admin account and, in the sandbox, demo resources."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from voipbin.accounts.customers import Profile, assign_virtual_number, create_customer
from voipbin.auth.passwords import hash_secret
from voipbin.auth.permissions import Permission
from voipbin.core.ids import new_id, token_hex
from voipbin.runtime import Platform
from voipbin.store.models import Agent, Extension, Number

log = logging.getLogger(__name__)

ADMIN_USERNAME = "admin@localhost"
ADMIN_PASSWORD = "admin@localhost"
DEMO_EXTENSIONS = ("1000", "2000", "3000")


async def ensure_sandbox_admin(platform: Platform) -> None:
    """Create admin@localhost (platform superadmin and admin of "Sandbox Admin") once."""
    async with platform.store.session() as session:
        exists = await session.scalar(select(Agent.id).where(Agent.username == ADMIN_USERNAME))
    if exists:
        return
    password_hash = await hash_secret(ADMIN_PASSWORD)
    try:
        customer_id = await _create_sandbox_admin(platform, password_hash)
    except IntegrityError:  # another node of this install, starting at the same time, made it
        return
    log.info("created %s (customer %s)", ADMIN_USERNAME, customer_id)


async def _create_sandbox_admin(platform: Platform, password_hash: str) -> str:
    async with platform.store.transaction() as tx:
        customer, _agent = await create_customer(
            tx,
            Profile(email=ADMIN_USERNAME, name="Sandbox Admin", detail="Created by voipbin init"),
            admin_password_hash=password_hash,
            admin_permission=Permission.PROJECT_SUPER_ADMIN | Permission.CUSTOMER_ADMIN,
            email_verified=True,
        )
        if platform.settings.sandbox:
            await assign_virtual_number(tx, customer.id, name="demo number")
            now = tx.clock.now()
            for ext in DEMO_EXTENSIONS:
                tx.session.add(
                    Extension(
                        id=new_id(),
                        customer_id=customer.id,
                        name=f"demo-{ext}",
                        detail=f"Demo extension {ext}",
                        extension=ext,
                        password=f"pass{ext}",
                        direct_hash=token_hex(6),
                        tm_create=now,
                    )
                )
    return customer.id


@dataclass(frozen=True)
class SandboxFacts:
    """What the start banner tells a newcomer about the sandbox admin's account."""

    customer_id: str
    demo_number: str


async def sandbox_facts(platform: Platform) -> SandboxFacts:
    async with platform.store.session() as session:
        customer_id = await session.scalar(select(Agent.customer_id).where(Agent.username == ADMIN_USERNAME)) or ""
        number = await session.scalar(
            select(Number.number)
            .where(Number.customer_id == customer_id, Number.tm_delete.is_(None))
            .order_by(Number.tm_create)
            .limit(1)
        )
    return SandboxFacts(customer_id, number or "")
