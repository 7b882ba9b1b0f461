"""The event every resource change produces, as it travels on the bus, WebSocket and webhooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voipbin.core.clock import format_timestamp


@dataclass(frozen=True)
class Event:
    id: str
    customer_id: str
    event_type: str
    # Topics this event is published under, most specific form first, e.g.
    # ``customer_id:<cid>:call:<call_id>``; a subscription matching any of them receives it.
    topics: tuple[str, ...]
    data: dict[str, Any]
    timestamp: datetime
    # Position in the durable log, filled in once stored.
    seq: int = field(default=0, compare=False)

    def frame(self, topic: str | None = None) -> dict[str, Any]:
        """The JSON shape sent to clients: the quickstart's fields plus VoIPBIN's ``type``."""
        return {
            "type": self.event_type,
            "event_type": self.event_type,
            "timestamp": format_timestamp(self.timestamp),
            "topic": topic or self.topics[0],
            "data": self.data,
        }


def resource_of(event_type: str) -> str:
    """``call_hangup`` → ``call``, ``transcript_created`` → ``transcript`` (VoIPBIN's rule)."""
    return event_type.split("_", 1)[0]
