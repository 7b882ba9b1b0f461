"""The media engine: RTP/RTCP, G.711, RFC 4733 DTMF, jitter buffer, pacing, SDP, recording.

The protocol pieces (rtp, g711, dtmf, jitter, pacer, sdp) and the two halves of a stream
(``receiver`` and ``sender``) are sans-IO: bytes and time in, bytes and decisions out, so each
is tested with exact, repeatable inputs. Only ``endpoint`` (UDP sockets and the one 20 ms
ticker that drives every stream) and ``recorder`` (WAV files) do I/O.
"""

from __future__ import annotations
