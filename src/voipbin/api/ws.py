"""``/v1.0/ws``: events over a WebSocket, by topic subscription.

Client frames: ``{"type": "subscribe"|"unsubscribe", "topics": [...]}`` and ``{"type": "ping"}``.
Server frames: events (``type``, ``event_type``, ``timestamp``, ``topic``, ``data``), and
``subscribed``/``unsubscribed``/``pong``/``error`` replies. A forbidden topic gets an error frame
and the connection stays open (VoIPBIN closes it; an error is kinder to debug).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from voipbin.api.deps import Principal, authenticate
from voipbin.api.errors import ApiError, envelope
from voipbin.auth.permissions import ADMIN_OR_MANAGER
from voipbin.events.bus import Subscription
from voipbin.events.model import Event
from voipbin.events.topics import matches, parse_scope
from voipbin.runtime import Platform

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])

MAX_TOPICS = 100
MAX_FRAME_BYTES = 64 * 1024


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

    def __init__(self, websocket: WebSocket, principal: Principal, subscription: Subscription) -> None:
        self.websocket = websocket
        self.principal = principal
        self.subscription = subscription
        self.patterns: set[str] = set()

    def topic_for(self, event: Event) -> str | None:
        for topic in event.topics:
            if any(matches(pattern, topic) for pattern in self.patterns):
                return topic
        return None

    async def pump_events(self) -> None:
        async for event in self.subscription:
            if event.customer_id != self.principal.customer_id and not self.principal.is_superadmin:
                continue
            topic = self.topic_for(event)
            if topic is not None:
                await self.websocket.send_text(json.dumps(event.frame(topic)))

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
        return self._subscribe(topics)

    def _subscribe(self, topics: list[str]) -> dict[str, Any]:
        problems = [p for p in (authorize_topic(self.principal, t) for t in topics) if p]
        if problems:
            return _error("FORBIDDEN_TOPIC", " ".join(problems), status=403)
        if len(self.patterns | set(topics)) > MAX_TOPICS:
            return _error("TOO_MANY_TOPICS", f"At most {MAX_TOPICS} topics per connection.")
        self.patterns.update(topics)
        return {"type": "subscribed", "topics": topics}


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
    await websocket.accept()
    stream = EventStream(websocket, principal, platform.bus.subscribe())
    pump = asyncio.create_task(stream.pump_events())
    try:
        while True:
            reply = await stream.handle(await websocket.receive_text())
            await websocket.send_text(json.dumps(reply))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        stream.subscription.close()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


async def _deny(websocket: WebSocket, exc: ApiError) -> None:
    body = envelope(exc.status_code, exc.reason, exc.message, "")
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, exc.status_code))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])
