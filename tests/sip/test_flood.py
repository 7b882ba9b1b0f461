"""The per-source flood limiter."""

from __future__ import annotations

from voipbin.sip.flood import FloodLimiter


def test_a_burst_passes_then_the_rate_holds() -> None:
    limiter = FloodLimiter(rate=10, burst=5)

    burst = [limiter.allow("203.0.113.1", 0.0) for _ in range(8)]
    later = [limiter.allow("203.0.113.1", 0.0 + 0.1 * i) for i in range(1, 11)]

    assert burst == [True] * 5 + [False] * 3
    assert all(later)  # 10/s is allowed once the burst is spent
    assert limiter.dropped == 3


def test_sources_are_limited_separately() -> None:
    limiter = FloodLimiter(rate=1, burst=1)

    assert limiter.allow("203.0.113.1", 0.0)
    assert not limiter.allow("203.0.113.1", 0.1)
    assert limiter.allow("203.0.113.2", 0.1)


def test_memory_stays_bounded_under_spoofed_sources() -> None:
    limiter = FloodLimiter(rate=100, burst=1)

    for i in range(200_000):
        limiter.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i / 1e6)

    assert len(limiter._buckets) <= 65536
