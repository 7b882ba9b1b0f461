"""The scale-out bus stops, whatever its Redis client does with a cancel."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from tests.backends import REDIS_URL
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
