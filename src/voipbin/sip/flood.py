"""Per-source rate limits for the requests scanners flood with (sans-IO: give it ``now``).

A token bucket per source address: ``rate`` requests a second on average, bursts up to
``burst``. Requests over the limit are dropped unanswered, as SIP edge proxies do with floods:
an answer would only cost us more and tell the scanner something.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SOURCES = 65536  # memory bound: a spoofed flood invents endless addresses


@dataclass
class FloodLimiter:
    rate: float
    burst: float
    dropped: int = 0
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> (tokens, at)

    def allow(self, source: str, now: float) -> bool:
        tokens, at = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            self.dropped += 1
            return False
        if source not in self._buckets and len(self._buckets) >= MAX_SOURCES:
            self._forget_full(now)
            if len(self._buckets) >= MAX_SOURCES:  # every bucket busy: start over rather than grow
                self._buckets.clear()
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled: they hold nothing a fresh bucket would not."""
        refill = self.burst / self.rate
        self._buckets = {s: (t, at) for s, (t, at) in self._buckets.items() if now - at < refill}
