"""Which nodes of an install are alive, so that calls of a node that died do not stay live forever.

Every node writes a heartbeat to the database; any node that sees another's heartbeat stop for
``DEAD_AFTER_S`` hangs up the dead node's calls (recording them as failed) and forgets it. A
single-node install (SQLite) knows at start that no one else can be alive, and reaps at once.
Heartbeats compare clocks of different machines: keep them in sync (NTP), well within the limit.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from voipbin.core.clock import Clock
from voipbin.store.db import Store
from voipbin.store.models import Node

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
DEAD_AFTER_S = 10.0

# Called with the ids of dead nodes; ends their calls.
Reaper = Callable[[list[str]], Awaitable[None]]
# How many calls this node runs now (reported with each heartbeat, to spread new calls).
LiveCount = Callable[[], int]


class NodeRegistry:
    def __init__(self, store: Store, clock: Clock, reaper: Reaper, live_count: LiveCount, *, role: str = "all",
                 api_url: str = "") -> None:
        self.store = store
        self.clock = clock
        self.reaper = reaper
        self.live_count = live_count
        self.role = role
        self.api_url = api_url
        self.sip_address = ""
        self.id = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None
        # A node judges others only after its own heartbeats have gone through for DEAD_AFTER_S:
        # after an outage of the database, everyone's last heartbeat looks old at first.
        self._healthy_since = clock.read()

    async def start(self, *, alone: bool) -> None:
        """``alone``: this is the install's only node, so every other one recorded is dead."""
        now = self.clock.now()
        async with self.store.transaction() as tx:
            tx.session.add(self._row(now))
        await self.reap(everyone_else=alone)
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self.store.transaction() as tx:
            await tx.session.execute(delete(Node).where(Node.id == self.id))

    async def alive(self) -> list[Node]:
        async with self.store.session() as session:
            limit = self.clock.now() - timedelta(seconds=DEAD_AFTER_S)
            return list((await session.scalars(select(Node).where(Node.tm_heartbeat >= limit))).all())

    async def url_of(self, node_id: str) -> str | None:
        """The API URL of another live node; None for this node, or one that is gone."""
        if node_id in ("", self.id):
            return None
        return next((node.api_url for node in await self.alive() if node.id == node_id and node.api_url), None)

    async def sip_address_of(self, node_id: str) -> str | None:
        """The SIP address ("host:port") of another live node that takes calls; None if there is none."""
        if node_id in ("", self.id):
            return None
        return next((node.sip_address for node in await self.alive() if node.id == node_id and node.sip_address), None)

    async def least_busy_media_node(self) -> Node | None:
        takers = [node for node in await self.alive() if node.role in ("all", "media") and node.api_url]
        return min(takers, key=lambda node: node.live_calls, default=None)

    async def reap(self, *, everyone_else: bool = False) -> list[str]:
        """End the calls of dead nodes (of every other node with ``everyone_else``)."""
        query = select(Node.id).where(Node.id != self.id)
        if not everyone_else:
            if (self.clock.read() - self._healthy_since).total_seconds() < DEAD_AFTER_S:
                return []
            query = query.where(Node.tm_heartbeat < self.clock.now() - timedelta(seconds=DEAD_AFTER_S))
        async with self.store.session() as session:
            dead = list((await session.scalars(query)).all())
        # Calls without a node come from before nodes were recorded: no process holds them now.
        await self.reaper([*dead, ""])
        if dead:
            log.warning("nodes %s stopped without a goodbye; their calls were ended", ", ".join(dead))
            async with self.store.transaction() as tx:
                await tx.session.execute(delete(Node).where(Node.id.in_(dead)))
        return dead

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._heartbeat()
                await self.reap()
            except Exception:  # the database may be away for a while; keep beating once it is back
                log.exception("node heartbeat failed")
                self._healthy_since = self.clock.read() + timedelta(seconds=HEARTBEAT_S)

    async def _heartbeat(self) -> None:
        async with self.store.transaction() as tx:
            now = tx.clock.now()
            beat = await tx.session.execute(
                update(Node).where(Node.id == self.id).values(tm_heartbeat=now, live_calls=self.live_count())
            )
            if beat.rowcount == 0:  # type: ignore[attr-defined]
                # Another node took this one for dead (a long pause); be known again.
                tx.session.add(self._row(now))

    def _row(self, now: datetime) -> Node:
        return Node(id=self.id, role=self.role, sip_address=self.sip_address, api_url=self.api_url,
                    live_calls=self.live_count(), tm_start=now, tm_heartbeat=now)
