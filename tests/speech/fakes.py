"""Starting local fakes of cloud speech services, and stopping every one after its test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar


class FakeServer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Fake = TypeVar("Fake", bound=FakeServer)


@asynccontextmanager
async def fake_servers(make: Callable[..., Fake]) -> AsyncIterator[Callable[..., Awaitable[Fake]]]:
    """A starter: ``await start(**options)`` runs ``make(**options)``; all are stopped on exit."""
    fakes: list[Fake] = []

    async def start(**options: Any) -> Fake:
        fake = make(**options)
        await fake.start()
        fakes.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in fakes:
            await fake.stop()
