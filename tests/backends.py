"""The two backends every API and event test runs on: embedded (SQLite, in-process bus) and
scale-out (PostgreSQL and Redis, as on this machine kind and in CI).

Each PostgreSQL test gets its own scratch database and each Redis one its own key namespace, so
tests never see each other's rows or events. Without PostgreSQL or Redis the scale-out cases are
skipped locally and fail in CI (``CI`` set), where both must run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import pytest
import redis.asyncio as aioredis

BACKENDS = ["sqlite", "postgres"]
POSTGRES_ADMIN_URL = os.environ.get("VOIPBIN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VOIPBIN_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error}); start it, or see .ci/run"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def _create_database() -> str:
    name = f"vb_test_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        _unavailable("PostgreSQL", error)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _check_redis() -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as error:
        _unavailable("Redis", error)
    finally:
        await client.aclose()


async def _drop_namespace(namespace: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _scale_out() -> dict[str, str]:
    """Settings of a fresh scale-out backend: a new database and a new Redis namespace."""
    await _check_redis()
    name = await _create_database()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return {"database_url": f"{base}/{name}", "redis_url": REDIS_URL, "redis_namespace": f"vbtest:{name}"}


async def _remove(changes: dict[str, str]) -> None:
    await _drop_namespace(changes["redis_namespace"])
    await _drop_database(changes["database_url"].rsplit("/", 1)[1])


@asynccontextmanager
async def backend_changes(backend: str) -> AsyncIterator[dict[str, str]]:
    """Settings changes that put a platform on ``backend`` (removed afterwards)."""
    if backend == "sqlite":
        yield {}
        return
    changes = await _scale_out()
    try:
        yield changes
    finally:
        await _remove(changes)


@contextmanager
def backend_changes_sync(backend: str) -> Iterator[dict[str, str]]:
    """``backend_changes`` for synchronous fixtures (live servers in threads)."""
    if backend == "sqlite":
        yield {}
        return
    changes = asyncio.run(_scale_out())
    try:
        yield changes
    finally:
        asyncio.run(_remove(changes))
