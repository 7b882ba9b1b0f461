"""Reads shared by every customer-owned resource: scoped lookups and VoIPBIN-style pages."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.api.deps import Paging
from voipbin.api.errors import bad_request, not_found
from voipbin.core.clock import format_timestamp, parse_timestamp
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
from voipbin.store.db import Tx
from voipbin.views import Page, Resource

M = TypeVar("M", bound=Any)
R = TypeVar("R", bound=Resource)


async def get_owned(session: AsyncSession, model: type[M], resource_id: str, customer_id: str, name: str) -> M:
    """The live row with this id owned by this customer; 404 otherwise (also for other tenants')."""
    if not is_uuid(resource_id):
        raise not_found(name)
    row = await session.scalar(
        select(model).where(model.id == resource_id, model.customer_id == customer_id, model.tm_delete.is_(None))
    )
    if row is None:
        raise not_found(name)
    return row  # type: ignore[no-any-return]


def owned_query(model: type[M], customer_id: str) -> Select[tuple[M]]:
    query = select(model).where(model.customer_id == customer_id)
    if hasattr(model, "tm_delete"):  # transcripts, for one, are never deleted
        query = query.where(model.tm_delete.is_(None))
    return query


async def page(
    session: AsyncSession, query: Select[Any], model: type[M], paging: Paging, oldest_first: bool = False
) -> tuple[list[M], str]:
    """Newest first (or oldest first); the token is the last row's ``tm_create`` (VoIPBIN's cursor)."""
    if paging.page_token:
        try:
            last = parse_timestamp(paging.page_token)
        except ValueError:
            raise bad_request(
                "page_token must be the next_page_token of a previous page (e.g. 2026-02-21T10:00:00.000000Z)."
            ) from None
        query = query.where(model.tm_create > last if oldest_first else model.tm_create < last)
    order = model.tm_create.asc() if oldest_first else model.tm_create.desc()
    rows = list((await session.scalars(query.order_by(order).limit(paging.page_size))).all())
    token = format_timestamp(rows[-1].tm_create) if len(rows) == paging.page_size else ""
    return rows, token


async def list_view(
    platform: Platform, model: type[M], view: type[R], customer_id: str, paging: Paging, *filters: Any,
    oldest_first: bool = False,
) -> Page[R]:
    """One page of a customer's live rows, as public views."""
    async with platform.store.session() as session:
        query = owned_query(model, customer_id).where(*filters)
        rows, token = await page(session, query, model, paging, oldest_first)
    return Page[view](result=[view.model_validate(r) for r in rows], next_page_token=token)  # type: ignore[valid-type]


def apply_update(row: Any, changes: BaseModel, tx: Tx) -> None:
    for field, value in changes.model_dump(exclude_none=True).items():
        setattr(row, field, value)
    row.tm_update = tx.clock.now()


def soft_delete(row: Any, tx: Tx) -> None:
    row.tm_delete = row.tm_update = tx.clock.now()
