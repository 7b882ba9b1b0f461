"""Creating customers together with what every new customer gets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from voipbin.auth.permissions import Permission
from voipbin.auth.tokens import hash_accesskey_token, new_accesskey_token
from voipbin.core.ids import new_id, token_hex
from voipbin.store.db import Tx
from voipbin.store.models import Accesskey, Agent, Customer, Number

# VoIPBIN's virtual numbers live under +899, a country code no carrier routes.
VIRTUAL_PREFIX = "+899"


@dataclass(frozen=True)
class Profile:
    email: str
    name: str = ""
    detail: str = ""
    phone_number: str = ""
    address: str = ""
    webhook_method: str = ""
    webhook_uri: str = ""


async def create_customer(
    tx: Tx,
    profile: Profile,
    *,
    admin_password_hash: str = "",
    admin_permission: Permission = Permission.CUSTOMER_ADMIN,
    email_verified: bool = False,
) -> tuple[Customer, Agent]:
    """A customer and its first admin agent, whose username is the customer's email.

    Hash the password before the transaction (see ``auth.passwords``): it is slow.
    """
    now = tx.clock.now()
    customer = Customer(
        id=new_id(),
        name=profile.name,
        detail=profile.detail,
        email=profile.email,
        phone_number=profile.phone_number,
        address=profile.address,
        webhook_method=profile.webhook_method or ("POST" if profile.webhook_uri else ""),
        webhook_uri=profile.webhook_uri,
        webhook_secret=token_hex(32),
        status="active",
        email_verified=email_verified,
        tm_create=now,
    )
    agent = Agent(
        id=new_id(),
        customer_id=customer.id,
        username=profile.email,
        # No password until the person sets one (an empty hash never verifies).
        password_hash=admin_password_hash,
        name=profile.name or profile.email,
        detail="",
        ring_method="ringall",
        status="offline",
        permission=int(admin_permission),
        tm_create=now,
    )
    tx.session.add_all([customer, agent])
    return customer, agent


async def create_accesskey(tx: Tx, customer_id: str, name: str, detail: str, expire_s: int) -> tuple[Accesskey, str]:
    """A new access key and its token (the only time the token exists in clear)."""
    now = tx.clock.now()
    token = new_accesskey_token()
    key = Accesskey(
        id=new_id(),
        customer_id=customer_id,
        name=name,
        detail=detail,
        token_hash=hash_accesskey_token(token),
        token_prefix=token[:11],
        tm_expire=now + timedelta(seconds=expire_s),
        tm_create=now,
    )
    tx.session.add(key)
    return key, token


async def assign_virtual_number(
    tx: Tx, customer_id: str, name: str = "sandbox number", detail: str = "Virtual number given at signup"
) -> Number:
    """A free ``+899…`` number, so a new customer can place calls right away."""
    while True:  # 10^8 candidates: a clash is rare, two in a row rarer still
        candidate = VIRTUAL_PREFIX + "".join(secrets.choice("0123456789") for _ in range(8))
        clash = await tx.session.scalar(select(Number.id).where(Number.number == candidate, Number.tm_delete.is_(None)))
        if clash is None:
            break
    now = tx.clock.now()
    number = Number(
        id=new_id(),
        customer_id=customer_id,
        number=candidate,
        type="virtual",
        name=name,
        detail=detail,
        status="active",
        tm_purchase=now,
        tm_create=now,
    )
    tx.session.add(number)
    return number
