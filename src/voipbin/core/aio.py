"""Small asyncio helpers the platform's loops share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` was set within ``timeout`` seconds.

    ``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11 loses a cancellation that arrives as
    the event is set, so a loop around it can outlive its task's cancel (and hang whoever waits for
    the task to end); ``asyncio.wait`` passes the cancellation on.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait([waiter], timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


class Background:
    """Tasks that outlive whoever started them (a hangup a flow asked for, a recording's end),
    run until they finish or the platform stops; a failure is logged, never lost."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("background task failed", exc_info=task.exception())
