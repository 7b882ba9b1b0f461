"""``/v1.0/ws``: events over a WebSocket, by topic subscription.

Client frames: ``{"type": "subscribe"|"unsubscribe", "topics": [...]}`` and ``{"type": "ping"}``.
Server frames: events (``type``, ``event_type``, ``timestamp``, ``topic``, ``data``, and a
``cursor``), and ``subscribed``/``unsubscribed``/``pong``/``error`` replies. A forbidden topic gets
an error frame and the connection stays open (VoIPBIN closes it; an error is kinder to debug).

A client that reconnects subscribes with ``"since": <the last cursor it saw>`` and first receives,
from the durable event log, what matched its topics meanwhile (up to ``MAX_REPLAY`` events).

A connection lives only as long as its credential: it is checked again whenever its account's
access keys, agents or customer change (and every ``RECHECK_EVERY_S`` in any case), and the
socket is closed (1008) once the key is deleted or expired, or the password changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from sqlalchemy import select

from voipbin.api.deps import Principal, authenticate
from voipbin.api.errors import ApiError, envelope, unavailable
from voipbin.auth.permissions import ADMIN_OR_MANAGER
from voipbin.core.aio import wait_event
from voipbin.core.ids import is_uuid
from voipbin.events.bus import Subscription
from voipbin.events.model import Event
from voipbin.events.topics import matches, parse_scope
from voipbin.runtime import Platform
from voipbin.store.db import Store
from voipbin.store.models import EventRecord

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])

MAX_TOPICS = 100
MAX_FRAME_BYTES = 64 * 1024
MAX_REPLAY = 10_000
RECENTLY_SENT = 20_000  # event ids remembered to send nothing twice when replay meets live events
RECHECK_EVERY_S = 60.0
# Changes after which a connection's credential may no longer be valid.
_CREDENTIAL_EVENTS = frozenset({
    "accesskey_deleted", "accesskey_updated", "agent_updated", "agent_deleted", "customer_updated", "customer_deleted",
})


def authorize_topic(principal: Principal, pattern: str) -> str | None:
    """Why this principal may not subscribe to this pattern, or None when it may."""
    scope = parse_scope(pattern)
    if scope is None:
        return f"'{pattern}' is not a topic: use customer_id:<your-customer-id>:<resource>:<id or *>."
    if scope.kind == "customer_id":
        if scope.owner_id != principal.customer_id and not principal.is_superadmin:
            return f"'{pattern}' names another customer; subscribe to customer_id:{principal.customer_id}:..."
        if not (principal.permission & ADMIN_OR_MANAGER or principal.is_superadmin):
            return "Customer-wide topics need admin or manager permission; use agent_id:<your-agent-id>:..."
        return None
    if scope.owner_id != principal.agent_id:
        return f"'{pattern}' names another agent."
    return None


class EventStream:
    """One client's subscriptions, fed from the bus."""

    def __init__(self, websocket: WebSocket, principal: Principal, subscription: Subscription, store: Store) -> None:
        self.websocket = websocket
        self.principal = principal
        self.subscription = subscription
        self.store = store
        self.patterns: set[str] = set()
        self._sending = asyncio.Lock()  # a replay goes out whole, before live events that follow it
        self._sent: OrderedDict[str, None] = OrderedDict()
        self.credential_changed = asyncio.Event()

    def topic_for(self, event: Event) -> str | None:
        for topic in event.topics:
            if any(matches(pattern, topic) for pattern in self.patterns):
                return topic
        return None

    async def pump_events(self) -> None:
        async for event in self.subscription:
            if event.event_type in _CREDENTIAL_EVENTS and event.customer_id == self.principal.customer_id:
                self.credential_changed.set()
            async with self._sending:
                await self._send_event(event)

    async def _send_event(self, event: Event) -> None:
        if event.customer_id != self.principal.customer_id and not self.principal.is_superadmin:
            return
        topic = self.topic_for(event)
        if topic is None or event.id in self._sent:
            return
        self._sent[event.id] = None
        if len(self._sent) > RECENTLY_SENT:
            self._sent.popitem(last=False)
        await self.websocket.send_text(json.dumps({**event.frame(topic), "cursor": event.id}))

    async def replay(self, since: str) -> dict[str, Any] | None:
        """Send what was logged after the event ``since``; an error frame if it is unknown."""
        async with self._sending, self.store.session() as session:
            after = await session.scalar(select(EventRecord.seq).where(EventRecord.id == since))
            if after is None:
                return _error("UNKNOWN_CURSOR", "since must be the cursor of an event this connection's account received.")
            query = select(EventRecord).where(EventRecord.seq > after).order_by(EventRecord.seq).limit(MAX_REPLAY)
            if not self.principal.is_superadmin:
                query = query.where(EventRecord.customer_id == self.principal.customer_id)
            for record in (await session.scalars(query)).all():
                await self._send_event(_logged_event(record))
        return None

    async def handle(self, raw: str) -> dict[str, Any]:
        try:
            message = json.loads(raw) if len(raw) <= MAX_FRAME_BYTES else None
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            return _error("INVALID_MESSAGE", 'Send JSON like {"type": "subscribe", "topics": ["customer_id:<id>:call:*"]}.')
        kind = message.get("type")
        if kind == "ping":
            return {"type": "pong"}
        if kind not in ("subscribe", "unsubscribe"):
            return _error("UNKNOWN_TYPE", "type must be subscribe, unsubscribe or ping.")
        topics = message.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            return _error("INVALID_TOPICS", "topics must be a list of strings.")
        if kind == "unsubscribe":
            self.patterns.difference_update(topics)
            return {"type": "unsubscribed", "topics": topics}
        since = message.get("since")
        if since is not None and not (isinstance(since, str) and is_uuid(since)):
            return _error("INVALID_CURSOR", "since must be the cursor of an event frame you received.")
        reply = self._subscribe(topics)
        if since and reply["type"] == "subscribed":
            return await self.replay(since) or reply
        return reply

    def _subscribe(self, topics: list[str]) -> dict[str, Any]:
        problems = [p for p in (authorize_topic(self.principal, t) for t in topics) if p]
        if problems:
            return _error("FORBIDDEN_TOPIC", " ".join(problems), status=403)
        if len(self.patterns | set(topics)) > MAX_TOPICS:
            return _error("TOO_MANY_TOPICS", f"At most {MAX_TOPICS} topics per connection.")
        self.patterns.update(topics)
        return {"type": "subscribed", "topics": topics}


def _logged_event(record: EventRecord) -> Event:
    return Event(
        id=record.id, customer_id=record.customer_id, event_type=record.event_type,
        topics=tuple(record.topics["topics"]), data=record.data, timestamp=record.tm_create, seq=record.seq,
    )


def _error(reason: str, message: str, status: int = 400) -> dict[str, Any]:
    return {"type": "error", **envelope(status, reason, message, "")}


@router.websocket("/v1.0/ws")
async def events_socket(websocket: WebSocket) -> None:
    platform: Platform = websocket.app.state.platform
    params = websocket.query_params
    bearer = websocket.headers.get("authorization", "")
    token = params.get("token") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
    try:
        principal = await authenticate(platform, token, params.get("accesskey"))
    except ApiError as exc:
        await _deny(websocket, exc)
        return
    except Exception as exc:  # the database away: a 503 the client may retry, not a 500
        if (away := unavailable(exc)) is None:
            raise
        await _deny(websocket, away)
        return
    await websocket.accept()
    stream = EventStream(websocket, principal, platform.bus.subscribe(), platform.store)
    revoked = asyncio.create_task(_until_credential_invalid(stream, platform, token, params.get("accesskey")))
    tasks = (asyncio.create_task(stream.pump_events()), asyncio.create_task(_answer_frames(websocket, stream)), revoked)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a failure is raised here
        if revoked in done:
            with contextlib.suppress(Exception):
                await websocket.close(code=1008, reason="Your credential was revoked or expired; connect with a new one.")
    finally:
        stream.subscription.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _answer_frames(websocket: WebSocket, stream: EventStream) -> None:
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                reply = await stream.handle(raw)
            except Exception as exc:  # a replay with the database away: an error frame, and the socket stays
                if (away := unavailable(exc)) is None:
                    raise
                reply = _error(away.reason, away.message, away.status_code)
            await websocket.send_text(json.dumps(reply))
    except (WebSocketDisconnect, RuntimeError):
        pass


async def _until_credential_invalid(stream: EventStream, platform: Platform, token: str | None, accesskey: str | None) -> None:
    """Returns once the connection's credential stops being valid."""
    while True:
        await wait_event(stream.credential_changed, RECHECK_EVERY_S)
        stream.credential_changed.clear()
        try:
            await authenticate(platform, token, accesskey)
        except ApiError:
            return
        except Exception as exc:  # the database away: keep the connection, check again later
            if unavailable(exc) is None:
                raise


async def _deny(websocket: WebSocket, exc: ApiError) -> None:
    body = envelope(exc.status_code, exc.reason, exc.message, "")
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, exc.status_code, headers=exc.headers))
    else:
        await websocket.close(code=1013 if exc.status_code == 503 else 1008, reason=exc.message[:120])  # 1013: try again later
