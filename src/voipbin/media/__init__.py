"""Sans-IO core of the media engine: RTP/RTCP, G.711, RFC 4733 DTMF, jitter buffer, pacing.

Nothing in this package opens sockets, sleeps or reads the clock; callers pass bytes
and time in and get bytes and decisions out, which keeps every piece testable with
exact, repeatable inputs.
"""

from __future__ import annotations
