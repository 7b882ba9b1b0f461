"""The event bus: committed events fan out to everything that listens in this process.

The in-process bus is the embedded default. The interface is what a Redis-backed bus implements
for scale-out: ``publish`` is called after the producing transaction commits, and every
``Subscription`` sees every event published after it was opened, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from voipbin.events.model import Event

log = logging.getLogger(__name__)


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    def close(self) -> None: ...


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def publish(self, event: Event) -> None: ...

    def subscribe(self, max_pending: int = ...) -> Subscription: ...

    async def close(self) -> None: ...


class _QueueSubscription:
    def __init__(self, bus: InProcessBus, max_pending: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(max_pending)
        self.dropped = 0

    def offer(self, event: Event | None) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # A consumer this far behind would stall every publisher; it loses events instead
            # and can replay them from the durable log.
            self.dropped += 1

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not None:
            yield event

    def close(self) -> None:
        self._bus._subscriptions.discard(self)
        self.offer(None)


class InProcessBus:
    def __init__(self) -> None:
        self._subscriptions: set[_QueueSubscription] = set()

    async def start(self) -> None:
        pass

    async def publish(self, event: Event) -> None:
        self.deliver_locally(event)

    def deliver_locally(self, event: Event) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    def subscribe(self, max_pending: int = 10_000) -> _QueueSubscription:
        subscription = _QueueSubscription(self, max_pending)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
