"""``/v1.0/extensions``: SIP accounts a customer's phones register to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import select

from voipbin.api.crud import apply_update, emit_change, get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import conflict
from voipbin.api.schemas import ExtensionOut, Page, Strict
from voipbin.core.ids import new_id, token_hex
from voipbin.store.db import Tx
from voipbin.store.models import Extension

router = APIRouter(prefix="/v1.0/extensions", tags=["extensions"])

# A SIP user part that every softphone accepts without escaping.
SipUser = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Detail = Annotated[str, Field(max_length=4096)]
SipPassword = Annotated[str, Field(min_length=4, max_length=255, pattern=r"^[\x21-\x7e]+$")]


class ExtensionIn(Strict):
    name: Name
    detail: Detail
    extension: SipUser
    password: SipPassword


class ExtensionUpdate(Strict):
    name: Name | None = None
    detail: Detail | None = None
    password: SipPassword | None = None


async def _ensure_free(tx: Tx, customer_id: str, extension: str) -> None:
    taken = await tx.session.scalar(
        select(Extension.id).where(
            Extension.customer_id == customer_id, Extension.extension == extension, Extension.tm_delete.is_(None)
        )
    )
    if taken:
        raise conflict(f"Extension '{extension}' already exists in your account; choose another number or name.")


@router.post("", response_model=ExtensionOut)
async def create(body: ExtensionIn, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.transaction() as tx:
        await _ensure_free(tx, who.customer_id, body.extension)
        ext = Extension(
            id=new_id(),
            customer_id=who.customer_id,
            name=body.name,
            detail=body.detail,
            extension=body.extension,
            password=body.password,
            direct_hash=token_hex(6),
            tm_create=tx.clock.now(),
        )
        tx.session.add(ext)
        return emit_change(tx, ext, ExtensionOut, "extension", "created")


@router.get("", response_model=Page[ExtensionOut])
async def list_(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[ExtensionOut]:
    return await list_view(platform, Extension, ExtensionOut, who.customer_id, paging)


@router.get("/{extension_id}", response_model=ExtensionOut)
async def get(extension_id: str, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.session() as session:
        return ExtensionOut.model_validate(await get_owned(session, Extension, extension_id, who.customer_id, "extension"))


@router.put("/{extension_id}", response_model=ExtensionOut)
async def update(extension_id: str, body: ExtensionUpdate, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.transaction() as tx:
        ext = await get_owned(tx.session, Extension, extension_id, who.customer_id, "extension")
        apply_update(ext, body, tx)
        return emit_change(tx, ext, ExtensionOut, "extension", "updated")


@router.delete("/{extension_id}", response_model=ExtensionOut)
async def delete(extension_id: str, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.transaction() as tx:
        ext = await get_owned(tx.session, Extension, extension_id, who.customer_id, "extension")
        soft_delete(ext, tx)
        return emit_change(tx, ext, ExtensionOut, "extension", "deleted")
