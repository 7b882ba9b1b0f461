"""Persisting call-side resources and announcing each change as an event, in one transaction."""

from __future__ import annotations

from typing import Any

from voipbin.store.db import Store, Tx
from voipbin.views import announce


async def change(store: Store, model: type[Any], row_id: str, event_type: str | None, **values: Any) -> Any:
    """Update one row and announce it; returns the row (None if it no longer exists)."""
    async with store.transaction() as tx:
        return await update(tx, model, row_id, event_type, **values)


async def update(tx: Tx, model: type[Any], row_id: str, event_type: str | None, **values: Any) -> Any:
    """``change`` within a transaction of the caller's."""
    row = await tx.session.get(model, row_id)
    if row is None:
        return None
    for key, value in values.items():
        setattr(row, key, value)
    row.tm_update = tx.clock.now()
    if event_type:
        announce(tx, row, event_type)
    return row


async def add(store: Store, row: Any, event_type: str) -> Any:
    async with store.transaction() as tx:
        tx.session.add(row)
        announce(tx, row, event_type)
    return row
