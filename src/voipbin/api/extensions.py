"""``/v1.0/extensions``: SIP accounts a customer's phones register to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import select

from voipbin.api.crud import apply_update, get_owned, owned_query, page, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import conflict
from voipbin.core.ids import new_id, token_hex
from voipbin.runtime import Platform
from voipbin.store.db import Tx
from voipbin.store.models import Extension
from voipbin.views import ContactOut, ExtensionOut, Page, Strict, announce

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


def view(platform: Platform, ext: Extension) -> ExtensionOut:
    """The extension with its live registrations (from the SIP location service)."""
    contacts = [
        ContactOut(uri=b.contact, source=":".join(map(str, b.source)), expires=b.remaining(platform.sip.now()), user_agent=b.user_agent)
        for b in platform.sip.registrations(ext.customer_id, ext.extension)
    ]
    return ExtensionOut.model_validate(ext).model_copy(update={"registered": bool(contacts), "contacts": contacts})


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
        return announce(tx, ext, "extension_created", view(platform, ext))


@router.get("", response_model=Page[ExtensionOut])
async def list_(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[ExtensionOut]:
    async with platform.store.session() as session:
        rows, token = await page(session, owned_query(Extension, who.customer_id), Extension, paging)
    return Page(result=[view(platform, r) for r in rows], next_page_token=token)


@router.get("/{extension_id}", response_model=ExtensionOut)
async def get(extension_id: str, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.session() as session:
        return view(platform, await get_owned(session, Extension, extension_id, who.customer_id, "extension"))


@router.put("/{extension_id}", response_model=ExtensionOut)
async def update(extension_id: str, body: ExtensionUpdate, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.transaction() as tx:
        ext = await get_owned(tx.session, Extension, extension_id, who.customer_id, "extension")
        apply_update(ext, body, tx)
        return announce(tx, ext, "extension_updated", view(platform, ext))


@router.delete("/{extension_id}", response_model=ExtensionOut)
async def delete(extension_id: str, platform: PlatformDep, who: StaffDep) -> ExtensionOut:
    async with platform.store.transaction() as tx:
        ext = await get_owned(tx.session, Extension, extension_id, who.customer_id, "extension")
        soft_delete(ext, tx)
        return announce(tx, ext, "extension_deleted", view(platform, ext))
