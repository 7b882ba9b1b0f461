"""Small asyncio helpers the platform's loops share."""

from __future__ import annotations

import asyncio


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
