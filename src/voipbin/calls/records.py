"""Persisting call-side resources and announcing each change as an event, in one transaction."""

from __future__ import annotations

from typing import Any

from voipbin.api.schemas import (
    ActiveflowOut,
    CallOut,
    GroupcallOut,
    RecordingOut,
    Resource,
    SpeakingOut,
    TranscribeOut,
    TranscriptOut,
)
from voipbin.events.topics import customer_topic
from voipbin.store.db import Store, Tx
from voipbin.store.models import Activeflow, Call, Groupcall, Recording, Speaking, Transcribe, Transcript

VIEWS: dict[type[Any], tuple[str, type[Resource]]] = {
    Call: ("call", CallOut),
    Groupcall: ("groupcall", GroupcallOut),
    Activeflow: ("activeflow", ActiveflowOut),
    Transcribe: ("transcribe", TranscribeOut),
    Transcript: ("transcript", TranscriptOut),
    Speaking: ("speaking", SpeakingOut),
    Recording: ("recording", RecordingOut),
}


def public(row: Any) -> dict[str, Any]:
    return VIEWS[type(row)][1].model_validate(row).public()


def announce(tx: Tx, row: Any, event_type: str) -> dict[str, Any]:
    """Emit ``event_type`` for ``row`` under its topic (transcripts also under their transcribe)."""
    resource, _view = VIEWS[type(row)]
    data = public(row)
    topics = [customer_topic(row.customer_id, resource, row.id)]
    if isinstance(row, Transcript):
        # The quickstart subscribes to customer_id:<id>:transcribe:* to get transcripts.
        topics.append(customer_topic(row.customer_id, "transcribe", row.transcribe_id))
    tx.emit(row.customer_id, event_type, data, topics)
    return data


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
