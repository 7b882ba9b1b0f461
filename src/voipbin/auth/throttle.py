"""Failure counters that slow down guessing (passwords, codes): per node in memory for the
embedded default, shared through Redis when several nodes serve one install.

Fixed windows: a key allows ``limit`` failures per ``window_s``; the window starts at the first
failure. Only failures count, so a user who types their password right is never held back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

MAX_KEYS = 100_000  # memory bound for the in-process counters (scanners invent endless keys)


class Throttle(Protocol):
    async def failures(self, key: str) -> int: ...

    async def fail(self, key: str, window_s: float) -> int: ...

    async def clear(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[float, int]] = {}  # key -> (window end, failures)

    async def failures(self, key: str) -> int:
        end, count = self._counts.get(key, (0.0, 0))
        return count if end > self._clock() else 0

    async def fail(self, key: str, window_s: float) -> int:
        now = self._clock()
        end, count = self._counts.get(key, (0.0, 0))
        if end <= now:
            if len(self._counts) >= MAX_KEYS:
                self._counts = {k: v for k, v in self._counts.items() if v[0] > now}
            end, count = now + window_s, 0
        self._counts[key] = (end, count + 1)
        return count + 1

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    async def close(self) -> None:
        self._counts.clear()


class RedisThrottle:
    def __init__(self, url: str, namespace: str) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = f"{namespace}:throttle:"

    async def failures(self, key: str) -> int:
        return int(await self._redis.get(self._prefix + key) or 0)

    async def fail(self, key: str, window_s: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._prefix + key)
            pipe.expire(self._prefix + key, max(1, int(window_s)), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def clear(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def close(self) -> None:
        await self._redis.aclose()


def make_throttle(redis_url: str, namespace: str) -> Throttle:
    return RedisThrottle(redis_url, namespace) if redis_url else MemoryThrottle()
