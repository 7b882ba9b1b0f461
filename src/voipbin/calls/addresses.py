"""Checking and resolving the source and destinations of a call request.

What a customer writes here ends up in SIP headers that phones and carriers read, so it is held to
the platform's policy: a call through the operator's trunk shows a number of the caller's own
account and nothing else (no display name, no borrowed number), a SIP URI must parse as one and
may not name a trunk (which would bypass that rule), and text is escaped where it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.calls.errors import CallRequestError
from voipbin.core.phone import E164_RULE, is_e164
from voipbin.sip.errors import ParseError
from voipbin.sip.uri import SipUri
from voipbin.store.models import Extension, Number, Provider

SUPPORTED_DESTINATIONS = ("extension", "tel", "sip")


@dataclass(frozen=True)
class Destination:
    address: dict[str, Any]
    kind: str
    extension: Extension | None = None
    provider: Provider | None = None
    sip_uri: str = ""


MAX_DISPLAY_NAME = 64


def display_name(text: str) -> str:
    """A caller's name as it may appear in a From header: printable, one line, bounded."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())[:MAX_DISPLAY_NAME]


async def _owns_number(session: AsyncSession, customer_id: str, number: str) -> bool:
    owned = await session.scalar(
        select(Number.id).where(Number.customer_id == customer_id, Number.number == number, Number.tm_delete.is_(None))
    )
    return owned is not None


async def check_source(session: AsyncSession, customer_id: str, source: dict[str, Any]) -> dict[str, Any]:
    kind, target = source.get("type", ""), source.get("target", "")
    if kind == "tel":
        if not is_e164(target):
            raise CallRequestError(f"source.target '{target}' is not E.164: {E164_RULE}.")
        if not await _owns_number(session, customer_id, target):
            raise CallRequestError(
                f"source.target '{target}' is not a number of your account; GET /v1.0/numbers lists yours.",
                "SOURCE_NOT_OWNED",
            )
    elif kind not in ("extension", "sip"):
        raise CallRequestError("source.type must be 'tel' (a number you own), 'extension' or 'sip'.")
    return {"type": kind, "target": target, "target_name": source.get("target_name", ""),
            "name": source.get("name", ""), "detail": source.get("detail", "")}


async def trunk_caller(
    session: AsyncSession, customer_id: str, caller: dict[str, Any], fallback: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The identity a call through the trunk shows the carrier: ``caller`` when it is a number of
    the customer's, else ``fallback`` (a connect's call: the number its caller dialled); never a
    display name. CallRequestError when neither is a number the customer owns."""
    for candidate in (caller, fallback):
        if candidate and candidate.get("type") == "tel" and await _owns_number(session, customer_id, candidate.get("target", "")):
            return {**candidate, "name": "", "target_name": ""}
    raise CallRequestError(
        "A call to a phone number shows one of your numbers as caller id: set the source to "
        "{\"type\": \"tel\", \"target\": <a number from GET /v1.0/numbers>}.",
        "SOURCE_NOT_OWNED",
    )


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
        uri = _sip_uri(raw.get("target", ""), where)
        if await _names_a_trunk(session, uri.host):
            raise CallRequestError(f"{where}: {uri.host} is a trunk of this platform; call phone numbers as 'tel' destinations.",
                                   "SIP_TARGET_REFUSED")
        return Destination(address, kind, sip_uri=str(uri))
    raise CallRequestError(
        f"{where}.type '{kind}' is not supported; use one of {', '.join(SUPPORTED_DESTINATIONS)}.",
        "UNSUPPORTED_DESTINATION",
    )


def _sip_uri(target: object, where: str) -> SipUri:
    """A destination's ``sip:user@host[:port][;params]``, parsed and re-serialized (nothing else reaches a header)."""
    problem = f"{where}.target must be a SIP URI like sip:user@host:5060."
    if not isinstance(target, str):
        raise CallRequestError(problem)
    try:
        uri = SipUri.parse(target)
    except ParseError:
        raise CallRequestError(problem) from None
    if uri.scheme not in ("sip", "sips") or not uri.user or uri.headers or uri.password is not None:
        raise CallRequestError(problem + " (no password or ?headers)")
    if uri.transport not in (None, "udp", "tcp"):
        raise CallRequestError(f"{where}.target: transport must be udp or tcp.")
    return uri


async def _names_a_trunk(session: AsyncSession, host: str) -> bool:
    hosts = await session.scalars(select(Provider.hostname).where(Provider.tm_delete.is_(None)))
    return host.strip("[]").lower() in {h.strip("[]").lower() for h in hosts}


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
