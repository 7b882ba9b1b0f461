"""The scale-out bus stops, whatever its Redis client does with a cancel, and hands on each event once
when Redis carried out an XADD whose answer the node never got."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.backends import REDIS_URL
from voipbin.events.model import Event
from voipbin.events.redis_bus import RedisBus


async def test_close_ends_the_reader_even_when_its_cancel_is_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = RedisBus(REDIS_URL, f"vb_test_{secrets.token_hex(4)}")
    swallowed = asyncio.Event()

    async def xread_that_swallows_a_cancel(*args: Any, **kwargs: Any) -> list[Any]:
        # What redis-py's blocking read does on Python 3.11 when a cancel meets its block timeout:
        # the read ends as if the block had timed out, and the cancel is gone.
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if swallowed.is_set():
                raise
            swallowed.set()
        return []

    await bus.start()  # Redis runs on this machine kind and in CI
    monkeypatch.setattr(bus._reader, "xread", xread_that_swallows_a_cancel)
    await asyncio.sleep(0.2)

    closing = asyncio.ensure_future(bus.close())
    done, _ = await asyncio.wait([closing], timeout=5)

    assert swallowed.is_set()
    assert closing in done, "the bus did not stop"


async def test_an_event_added_twice_after_a_lost_answer_reaches_the_other_node_once(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = f"vb_test_{secrets.token_hex(4)}"
    sender, receiver = RedisBus(REDIS_URL, namespace), RedisBus(REDIS_URL, namespace)
    await sender.start()
    await receiver.start()
    subscription = receiver.subscribe()
    real_xadd = sender._redis.xadd
    answers_lost = 1

    async def xadd_whose_answer_is_lost(*args: Any, **kwargs: Any) -> Any:
        # A frozen Redis: the command reaches it and is carried out once it thaws, but the node's
        # socket timeout has fired meanwhile, so the node sends it again.
        nonlocal answers_lost
        added = await real_xadd(*args, **kwargs)
        if answers_lost:
            answers_lost -= 1
            raise TimeoutError("Timeout reading from socket")
        return added

    monkeypatch.setattr(sender._redis, "xadd", xadd_whose_answer_is_lost)
    events = [Event(f"event-{n}", "customer", "extension_created", ("customer_id:customer:extension:x",), {"n": n},
                    datetime.now(UTC)) for n in range(3)]
    try:
        for event in events:
            await sender.publish(event)
        received: list[str] = []

        async def collect() -> None:
            async for event in subscription:
                received.append(event.id)

        collector = asyncio.ensure_future(collect())
        await asyncio.sleep(2.5)  # the retry comes after RETRY_S; then nothing more should arrive
        collector.cancel()
        assert await sender._redis.xlen(sender.stream) == 4, "the test did not add an event twice"
        assert received == [event.id for event in events]
    finally:
        subscription.close()
        await sender.close()
        await receiver.close()
