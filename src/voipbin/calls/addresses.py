"""Checking and resolving the source and destinations of a call request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.core.phone import E164_RULE, is_e164
from voipbin.store.models import Extension, Number, Provider

SUPPORTED_DESTINATIONS = ("extension", "tel", "sip")


class CallRequestError(Exception):
    """A call request the platform cannot place; the message says how to fix it."""

    def __init__(self, message: str, reason: str = "INVALID_REQUEST_PARAMETER") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason



@dataclass(frozen=True)
class Destination:
    address: dict[str, Any]
    kind: str
    extension: Extension | None = None
    provider: Provider | None = None
    sip_uri: str = ""


async def check_source(session: AsyncSession, customer_id: str, source: dict[str, Any]) -> dict[str, Any]:
    kind, target = source.get("type", ""), source.get("target", "")
    if kind == "tel":
        if not is_e164(target):
            raise CallRequestError(f"source.target '{target}' is not E.164: {E164_RULE}.")
        owned = await session.scalar(
            select(Number.id).where(Number.customer_id == customer_id, Number.number == target, Number.tm_delete.is_(None))
        )
        if owned is None:
            raise CallRequestError(
                f"source.target '{target}' is not a number of your account; GET /v1.0/numbers lists yours.",
                "SOURCE_NOT_OWNED",
            )
    elif kind not in ("extension", "sip"):
        raise CallRequestError("source.type must be 'tel' (a number you own), 'extension' or 'sip'.")
    return {"type": kind, "target": target, "target_name": source.get("target_name", ""),
            "name": source.get("name", ""), "detail": source.get("detail", "")}


async def resolve_destination(session: AsyncSession, customer_id: str, index: int, raw: dict[str, Any]) -> Destination:
    kind = raw.get("type", "")
    where = f"destinations[{index}]"
    address = {key: raw.get(key, "") for key in ("type", "target", "target_name", "name", "detail")}
    if kind == "extension":
        return Destination(address, kind, extension=await _extension(session, customer_id, raw, where))
    if kind == "tel":
        target = raw.get("target", "")
        if not is_e164(target):
            raise CallRequestError(f"{where}.target '{target}' is not E.164: {E164_RULE}.")
        return Destination(address, kind, provider=await _provider(session, where))
    if kind == "sip":
        target = raw.get("target", "")
        if not target.startswith(("sip:", "sips:")) or "@" not in target:
            raise CallRequestError(f"{where}.target must be a SIP URI like sip:user@host:5060.")
        return Destination(address, kind, sip_uri=target)
    raise CallRequestError(
        f"{where}.type '{kind}' is not supported; use one of {', '.join(SUPPORTED_DESTINATIONS)}.",
        "UNSUPPORTED_DESTINATION",
    )


async def _extension(session: AsyncSession, customer_id: str, raw: dict[str, Any], where: str) -> Extension:
    # The quickstart dials an extension by its name; VoIPBIN's code matches its number: take both.
    wanted = raw.get("target_name") or raw.get("target") or ""
    if not wanted:
        raise CallRequestError(f"{where}.target_name must name the extension to call (its name or number).")
    rows = (
        await session.scalars(
            select(Extension).where(
                Extension.customer_id == customer_id,
                Extension.tm_delete.is_(None),
                or_(Extension.name == wanted, Extension.extension == wanted),
            )
        )
    ).all()
    if not rows:
        raise CallRequestError(
            f"{where}: no extension named '{wanted}' in your account (names are case-sensitive); "
            "GET /v1.0/extensions lists them.",
            "EXTENSION_NOT_FOUND",
        )
    return next((r for r in rows if r.name == wanted), rows[0])


async def _provider(session: AsyncSession, where: str) -> Provider:
    """The platform's trunk (providers are the operator's, shared by every customer, as in VoIPBIN)."""
    chosen = await session.scalar(
        select(Provider).where(Provider.tm_delete.is_(None)).order_by(Provider.tm_create).limit(1)
    )
    if chosen is None:
        raise CallRequestError(
            f"{where}: calling phone numbers needs a SIP trunk; the operator adds one with POST /v1.0/providers.",
            "NO_PROVIDER",
        )
    return chosen
