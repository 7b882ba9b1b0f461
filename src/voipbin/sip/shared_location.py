"""Registrations shared by every node through Redis, so a call placed on one node reaches a phone
registered on another.

Each node keeps a full replica (the registrar and lookups stay synchronous and local); a node's
own changes go to a Redis hash (the snapshot a starting node loads) and out on a channel that the
other nodes apply. A node that misses messages while Redis is away reloads the snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from voipbin.sip.location import Binding, LocationService

log = logging.getLogger(__name__)

RETRY_S = 0.5


class SharedLocation(LocationService):
    def __init__(self, url: str, namespace: str) -> None:
        super().__init__()
        self._redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._hash = f"{namespace}:location"
        self._channel = f"{namespace}:location-changes"
        self.node = secrets.token_hex(8)
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100_000)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._load_snapshot()
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def save(self, binding: Binding) -> None:
        super().save(binding)
        self._queue({"op": "save", "binding": asdict(binding)})

    def remove(self, customer_id: str, extension: str, contact: str | None = None) -> list[Binding]:
        removed = super().remove(customer_id, extension, contact)
        for binding in removed:
            self._queue({"op": "remove", "binding": asdict(binding)})
        return removed

    def _queue(self, change: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(change | {"node": self.node})
        except asyncio.QueueFull:
            log.error("shared location: Redis has been away too long; registrations are no longer shared")

    async def _send(self) -> None:
        while True:
            change = await self._outbox.get()
            while True:
                try:
                    await self._write(change)
                    break
                except (RedisError, OSError) as error:
                    log.warning("shared location: cannot reach Redis (%s); retrying", error)
                    await asyncio.sleep(RETRY_S)

    async def _write(self, change: dict[str, Any]) -> None:
        binding = change["binding"]
        field = _field(binding["customer_id"], binding["extension"], binding["contact"])
        async with self._redis.pipeline(transaction=True) as pipe:
            if change["op"] == "save":
                pipe.hset(self._hash, field, json.dumps(binding))
            else:
                pipe.hdel(self._hash, field)
            pipe.publish(self._channel, json.dumps(change))
            await pipe.execute()

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._load_snapshot()  # whatever changed before the subscription took
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._apply(json.loads(message["data"]))
            except (RedisError, OSError) as error:
                log.warning("shared location: lost Redis (%s); reloading when it is back", error)
                await asyncio.sleep(RETRY_S)

    def _apply(self, change: dict[str, Any]) -> None:
        if change.get("node") == self.node:
            return
        binding = _binding(change["binding"])
        if change["op"] == "save":
            super().save(binding)
        else:
            super().remove(binding.customer_id, binding.extension, binding.contact)

    async def _load_snapshot(self) -> None:
        stored = await self._redis.hgetall(self._hash)
        for raw in stored.values():
            super().save(_binding(json.loads(raw)))


def _field(customer_id: str, extension: str, contact: str) -> str:
    return f"{customer_id}|{extension}|{contact}"


def _binding(raw: dict[str, Any]) -> Binding:
    return Binding(**{**raw, "source": tuple(raw["source"])})
