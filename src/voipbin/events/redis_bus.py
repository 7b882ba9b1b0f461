"""The scale-out event bus: every node adds its events to one Redis stream and reads the others'
from it, so each node's subscribers (WebSockets, caches) see every node's events. A node hands
its own events to its subscribers at once, as the in-process bus does, so what a request changed
is visible to its own node before the response goes out.

A stream rather than pub/sub: a node that loses Redis for a while resumes reading after the last
entry it saw and misses nothing that was added meanwhile. Events that could not be added while
Redis was down wait in memory (bounded) and go out once it is back; they are in the database's
durable log either way, and webhooks are queued there, not here.

Adding is at least once: a Redis that stalls past the socket timeout still carries out the XADD it
had read, and the node, with no answer, adds the event again. Readers therefore drop an event id they
have just handed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from voipbin.events.bus import InProcessBus
from voipbin.events.model import Event

log = logging.getLogger(__name__)

STREAM_LENGTH = 100_000  # entries kept: minutes of history at any realistic event rate
RETRY_S = 0.5
MAX_UNSENT = 100_000
READ_BLOCK_MS = 1000
RECENT_IDS = 10_000  # a retried add lands right after the first: this many ids back is ample
CLOSE_FLUSH_S = 2.0


class RedisBus(InProcessBus):
    def __init__(self, url: str, namespace: str) -> None:
        super().__init__()
        self._redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        # Its own connection, as XREAD blocks; the timeout outlasts the block, so a silently dead
        # connection is noticed and replaced.
        self._reader = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=READ_BLOCK_MS / 1000 + 10)
        self.stream = f"{namespace}:events"
        self._unsent: deque[Event] = deque(maxlen=MAX_UNSENT)
        self._pending = asyncio.Event()
        self._last_id = "$"
        self.node = secrets.token_hex(8)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._recent = _RecentIds(RECENT_IDS)

    async def start(self) -> None:
        # Read from what the stream holds now: events published before this node started are
        # the durable log's business, not the live bus's.
        # redis-py types replies for every protocol and decoding; ours are RESP2 bytes.
        latest = cast(list[tuple[bytes, dict[bytes, bytes]]], await self._redis.xrevrange(self.stream, count=1))
        self._last_id = latest[0][0].decode() if latest else "0-0"
        self._tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._send())]

    async def publish(self, event: Event) -> None:
        """Local subscribers get it now; other nodes through Redis, sent in the background so that
        no request waits on Redis (or hangs with it)."""
        self.deliver_locally(event)
        self._unsent.append(event)
        self._pending.set()

    async def _add(self, event: Event) -> None:
        fields: dict[str | bytes, str | bytes] = {"event": _encode(event), "node": self.node}
        await self._redis.xadd(self.stream, fields, maxlen=STREAM_LENGTH, approximate=True)  # type: ignore[arg-type]

    async def _send(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                while self._unsent:  # in order: the oldest first, removed once Redis has it
                    await self._add(self._unsent[0])
                    self._unsent.popleft()
            except (RedisError, OSError) as error:
                log.warning("event bus: Redis unreachable (%s); %d events wait for it", error, len(self._unsent))
                await asyncio.sleep(RETRY_S)
                self._pending.set()

    async def _pump(self) -> None:
        # Also stops on the flag: a cancel that lands as XREAD's block times out is taken for that
        # timeout by redis-py's read (asyncio.timeout on Python 3.11), and the loop would go on.
        while not self._closing:
            try:
                read = await self._reader.xread({self.stream: self._last_id}, count=500, block=READ_BLOCK_MS)
            except (RedisError, OSError) as error:
                log.warning("event bus: reading from Redis failed (%s); retrying", error)
                await asyncio.sleep(RETRY_S)
                continue
            for _stream, entries in cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], read):
                for entry_id, fields in entries:
                    self._last_id = entry_id.decode()
                    self._deliver(fields)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"node") == self.node.encode():
            return  # delivered when published
        try:
            event = _decode(fields[b"event"])
        except (KeyError, ValueError, TypeError):
            log.exception("event bus: skipping an unreadable stream entry")
            return
        if self._recent.add(event.id):
            self.deliver_locally(event)

    async def close(self) -> None:
        # What this node published last still reaches the others, if Redis answers soon.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drained(), CLOSE_FLUSH_S)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().close()
        await self._redis.aclose()
        await self._reader.aclose()

    async def _drained(self) -> None:
        while self._unsent and self._tasks:
            await asyncio.sleep(0.01)


class _RecentIds:
    """The last ``size`` ids seen, in a set for lookups and a ring to forget the oldest."""

    def __init__(self, size: int) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def add(self, event_id: str) -> bool:
        """True if ``event_id`` is new."""
        if event_id in self._ids:
            return False
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


def _encode(event: Event) -> str:
    return json.dumps({
        "id": event.id, "customer_id": event.customer_id, "event_type": event.event_type,
        "topics": list(event.topics), "data": event.data, "timestamp": event.timestamp.isoformat(), "seq": event.seq,
    }, separators=(",", ":"))


def _decode(raw: bytes) -> Event:
    body: dict[str, Any] = json.loads(raw)
    return Event(
        id=body["id"], customer_id=body["customer_id"], event_type=body["event_type"], topics=tuple(body["topics"]),
        data=body["data"], timestamp=datetime.fromisoformat(body["timestamp"]), seq=int(body.get("seq", 0)),
    )
