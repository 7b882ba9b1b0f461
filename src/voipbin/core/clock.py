"""Time for the platform: one place that reads the wall clock, so tests can replace it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_TICK = timedelta(microseconds=1)


class Clock:
    """UTC wall clock whose readings never repeat or go backwards within a process.

    Lists are paged by ``tm_create`` (as VoIPBIN does), so two rows created in the same
    microsecond would make a page boundary ambiguous; bumping by one microsecond avoids it.
    """

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            current = max(self.read(), self._last + _TICK)
            self._last = current
            return current

    def read(self) -> datetime:
        return datetime.now(UTC)


def format_timestamp(value: datetime | None) -> str:
    """VoIPBIN's ``tm_*`` format as the quickstart shows it: microseconds, ``Z``, ``""`` if unset."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str) -> datetime:
    """Inverse of :func:`format_timestamp`; raises ``ValueError`` on anything else."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
