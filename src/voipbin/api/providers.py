"""``/v1.0/providers``: the operator's SIP trunks, used for ``tel`` destinations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field

from voipbin.accounts.defaults import ADMIN_USERNAME, default_password_in_use
from voipbin.api.crud import apply_update, get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, SuperadminDep
from voipbin.api.errors import ApiError
from voipbin.core.ids import new_id
from voipbin.store.models import Provider
from voipbin.views import LongText, Page, ProviderOut, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0/providers", tags=["operator"])

Host = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Affix = Annotated[str, Field(max_length=32, pattern=r"^[0-9A-Za-z*#+]*$")]


class ProviderIn(Strict):
    type: Literal["sip"] = "sip"
    hostname: Host
    port: Port = 5060
    transport: Literal["udp", "tcp"] = "udp"
    username: Annotated[str, Field(max_length=255)] = ""
    password: Annotated[str, Field(max_length=255)] = ""
    tech_prefix: Affix = ""
    tech_postfix: Affix = ""
    tech_headers: dict[str, Any] = Field(default_factory=dict)
    name: ShortText = ""
    detail: LongText = ""


class ProviderUpdate(Strict):
    hostname: Host | None = None
    port: Port | None = None
    transport: Literal["udp", "tcp"] | None = None
    username: Annotated[str, Field(max_length=255)] | None = None
    password: Annotated[str, Field(max_length=255)] | None = None
    tech_prefix: Affix | None = None
    tech_postfix: Affix | None = None
    name: ShortText | None = None
    detail: LongText | None = None


@router.post("", response_model=ProviderOut)
async def create(body: ProviderIn, platform: PlatformDep, who: SuperadminDep) -> ProviderOut:
    if await default_password_in_use(platform.store):
        raise ApiError(403, "DEFAULT_CREDENTIALS", f"{ADMIN_USERNAME} still has its published password, so anyone could "
                       "use a trunk through it; change that password before adding one.")
    async with platform.store.transaction() as tx:
        provider = Provider(id=new_id(), customer_id=who.customer_id, tm_create=tx.clock.now(), **body.model_dump())
        tx.session.add(provider)
        return announce(tx, provider, "provider_created", ProviderOut)


@router.get("", response_model=Page[ProviderOut])
async def list_(platform: PlatformDep, who: SuperadminDep, paging: PagingDep) -> Page[ProviderOut]:
    return await list_view(platform, Provider, ProviderOut, who.customer_id, paging)


@router.get("/{provider_id}", response_model=ProviderOut)
async def get(provider_id: str, platform: PlatformDep, who: SuperadminDep) -> ProviderOut:
    async with platform.store.session() as session:
        return ProviderOut.model_validate(await get_owned(session, Provider, provider_id, who.customer_id, "provider"))


@router.put("/{provider_id}", response_model=ProviderOut)
async def update(provider_id: str, body: ProviderUpdate, platform: PlatformDep, who: SuperadminDep) -> ProviderOut:
    async with platform.store.transaction() as tx:
        provider = await get_owned(tx.session, Provider, provider_id, who.customer_id, "provider")
        apply_update(provider, body, tx)
        return announce(tx, provider, "provider_updated", ProviderOut)


@router.delete("/{provider_id}", response_model=ProviderOut)
async def delete(provider_id: str, platform: PlatformDep, who: SuperadminDep) -> ProviderOut:
    async with platform.store.transaction() as tx:
        provider = await get_owned(tx.session, Provider, provider_id, who.customer_id, "provider")
        soft_delete(provider, tx)
        return announce(tx, provider, "provider_deleted", ProviderOut)
