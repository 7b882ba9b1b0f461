"""``/v1.0/accesskeys``: long-lived API keys of a customer (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from voipbin.accounts.customers import create_accesskey
from voipbin.api.crud import apply_update, get_owned, list_view, soft_delete
from voipbin.api.deps import AdminDep, PagingDep, PlatformDep
from voipbin.store.models import Accesskey
from voipbin.views import AccesskeyCreated, AccesskeyOut, LongText, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0/accesskeys", tags=["accesskeys"])

MIN_EXPIRE_S = 60
MAX_EXPIRE_S = 10 * 365 * 24 * 3600


class AccesskeyIn(Strict):
    name: ShortText = ""
    detail: LongText = ""
    expire: Annotated[
        int | None,
        Field(ge=MIN_EXPIRE_S, le=MAX_EXPIRE_S, description="Lifetime in seconds (default one year)."),
    ] = None


class AccesskeyUpdate(Strict):
    name: ShortText | None = None
    detail: LongText | None = None


def created_view(key: Accesskey, token: str) -> AccesskeyCreated:
    return AccesskeyCreated.model_validate(key).model_copy(update={"token": token})


@router.post("", response_model=AccesskeyCreated, summary="Create an access key; its token is shown only here")
async def create(body: AccesskeyIn, platform: PlatformDep, who: AdminDep) -> AccesskeyCreated:
    expire = body.expire or platform.settings.accesskey_default_expire_s
    async with platform.store.transaction() as tx:
        key, token = await create_accesskey(tx, who.customer_id, body.name, body.detail, expire)
        announce(tx, key, "accesskey_created", AccesskeyOut)
    return created_view(key, token)


@router.get("", response_model=Page[AccesskeyOut])
async def list_(platform: PlatformDep, who: AdminDep, paging: PagingDep) -> Page[AccesskeyOut]:
    return await list_view(platform, Accesskey, AccesskeyOut, who.customer_id, paging)


@router.get("/{accesskey_id}", response_model=AccesskeyOut)
async def get(accesskey_id: str, platform: PlatformDep, who: AdminDep) -> AccesskeyOut:
    async with platform.store.session() as session:
        key = await get_owned(session, Accesskey, accesskey_id, who.customer_id, "accesskey")
    return AccesskeyOut.model_validate(key)


@router.put("/{accesskey_id}", response_model=AccesskeyOut)
async def update(accesskey_id: str, body: AccesskeyUpdate, platform: PlatformDep, who: AdminDep) -> AccesskeyOut:
    async with platform.store.transaction() as tx:
        key = await get_owned(tx.session, Accesskey, accesskey_id, who.customer_id, "accesskey")
        apply_update(key, body, tx)
        return announce(tx, key, "accesskey_updated", AccesskeyOut)


@router.delete("/{accesskey_id}", response_model=AccesskeyOut)
async def delete(accesskey_id: str, platform: PlatformDep, who: AdminDep) -> AccesskeyOut:
    async with platform.store.transaction() as tx:
        key = await get_owned(tx.session, Accesskey, accesskey_id, who.customer_id, "accesskey")
        soft_delete(key, tx)
        return announce(tx, key, "accesskey_deleted", AccesskeyOut)
