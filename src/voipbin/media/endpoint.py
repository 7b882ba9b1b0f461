"""The asyncio media runtime: RTP endpoints over UDP, driven by one shared 20 ms ticker.

A :class:`MediaEngine` owns a single task that wakes on an absolute 20 ms grid and
lets every :class:`RtpEndpoint` receive and send one frame. One task for all
streams keeps timers and wake-ups constant as calls are added, and every stream
shares the same notion of "now". Sockets only file incoming packets with the
endpoint's :class:`~voipbin.media.receiver.RtpReceiver`; all playout and
sending, through its :class:`~voipbin.media.sender.RtpSender`, happens on ticks.

Audio crossing this API is always 16-bit signed little-endian mono PCM at 8 kHz,
in frames of 160 samples (320 bytes, 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, Self, TypeAlias

from voipbin.media.frames import (
    FRAME_BYTES,
    FRAME_INTERVAL,
    FRAME_SAMPLES,
    SAMPLE_RATE_8K,
    SILENCE_FRAME,
    PcmCallback,
)
from voipbin.media.g711 import Codec
from voipbin.media.pacer import LatenessStats, Pacer
from voipbin.media.ports import PortAllocator, PortsExhausted
from voipbin.media.receiver import Address, RtpReceiver
from voipbin.media.rtp import is_rtcp
from voipbin.media.sdp import Direction
from voipbin.media.sender import Playback, PlaybackOutcome, RtpSender

__all__ = [
    "FRAME_BYTES",
    "FRAME_INTERVAL",
    "FRAME_SAMPLES",
    "SAMPLE_RATE_8K",
    "SILENCE_FRAME",
    "Address",
    "Bridge",
    "EndpointStats",
    "FeedOwner",
    "MediaEngine",
    "Mixing",
    "PcmCallback",
    "Playback",
    "PlaybackOutcome",
    "RtpEndpoint",
    "TapDirection",
    "bridge",
]

logger = logging.getLogger(__name__)

# Frames of bridged audio that may wait; more would only add delay.
BRIDGE_DEPTH: Final = 3
# An RFC 2543 hold: the peer still negotiates but has no address to send to.
HOLD_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})

TapDirection: TypeAlias = Literal["in", "out"]


class FeedOwner(Protocol):
    """What feeds an endpoint's outgoing audio (a bridge, a conference mix); closed with it."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class EndpointStats:
    """Counters since the endpoint opened; bytes are RTP payload octets, as RTCP counts them.

    ``malformed`` counts datagrams that were not valid RTP/RTCP; ``unexpected``
    valid RTP we dropped (unknown payload type, foreign source, no remote yet).
    """

    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int
    lost: int
    jitter_ms: float
    late: int
    duplicate: int
    malformed: int
    unexpected: int
    rtcp_sent: int
    rtcp_received: int
    rtt_ms: float | None


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # IPv6 sources come as (host, port, flowinfo, scope_id); we send to (host, port).
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable and the like: the peer is not listening (yet). Not fatal.
        logger.debug("media socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class RtpEndpoint:
    """One call leg's media: an RTP/RTCP port pair, opened by :meth:`MediaEngine.open_endpoint`.

    Nothing is sent or tapped until :meth:`set_remote` tells it the peer's address
    and codec; from then on every tick sends exactly one 20 ms packet (playback,
    bridged audio, DTMF or comfort silence) and hands one frame to each tap.

    The endpoint owns the sockets and the negotiated direction; what it hears is
    its :class:`RtpReceiver`'s business, what it says its :class:`RtpSender`'s.
    """

    def __init__(self, engine: MediaEngine, port: int) -> None:
        self.local_port = port
        self._engine = engine
        self._clock = engine.clock
        self._closed = False
        self._codec: Codec | None = None
        self._direction: Direction = "sendrecv"
        self._receiver = RtpReceiver()
        self._sender = RtpSender(rtcp_interval=engine.rtcp_interval)
        self._feed_owner: FeedOwner | None = None
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._protocols: list[_Datagrams] = []
        self._rtcp_sent = 0

    async def _bind(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        rtp = _Datagrams(self._on_rtp_datagram)
        rtcp = _Datagrams(self._on_rtcp_datagram)
        self._rtp_transport, _ = await loop.create_datagram_endpoint(
            lambda: rtp, local_addr=(host, self.local_port)
        )
        self._protocols.append(rtp)
        try:
            self._rtcp_transport, _ = await loop.create_datagram_endpoint(
                lambda: rtcp, local_addr=(host, self.local_port + 1)
            )
        except OSError:
            await self._close_transports()
            raise
        self._protocols.append(rtcp)

    # ------------------------------------------------------------------ negotiation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def remote(self) -> Address | None:
        """Where RTP goes now: the SDP address, or the peer's real source once latched."""
        return self._receiver.remote

    @property
    def latched(self) -> bool:
        return self._receiver.latched

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @property
    def on_dtmf(self) -> Callable[[str], None] | None:
        """Called with each digit the peer sends (RFC 4733), as soon as its first packet arrives."""
        return self._receiver.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, callback: Callable[[str], None] | None) -> None:
        self._receiver.on_dtmf = callback

    def set_remote(
        self,
        host: str,
        port: int,
        codec: Codec,
        telephone_event_pt: int | None = None,
        *,
        direction: Direction = "sendrecv",
        rtcp_port: int | None = None,
    ) -> None:
        """Start (or re-target) the stream from negotiated SDP.

        ``direction`` is ours: with ``recvonly``/``inactive``, or a hold address
        (0.0.0.0), ticks keep the clock and playbacks running but send nothing.
        ``host`` must be an IP literal; name lookups would block the ticker.
        """
        ipaddress.ip_address(host)
        if not 0 < port <= 65535 or (rtcp_port is not None and not 0 < rtcp_port <= 65535):
            raise ValueError(f"invalid RTP/RTCP port {port}/{rtcp_port}")
        if rtcp_port is None and port < 65535:
            rtcp_port = port + 1
        now = self._clock()
        rtcp_remote = (host, rtcp_port) if rtcp_port is not None else None
        self._receiver.configure((host, port), rtcp_remote, codec, telephone_event_pt, now)
        self._sender.configure(codec, telephone_event_pt, now)
        self._codec = codec
        self._direction = direction

    @property
    def expects_media(self) -> bool:
        """Whether the peer should be sending RTP now (not when it holds the call, or we do)."""
        return self._codec is not None and not self._closed and self._direction in ("sendrecv", "recvonly")

    def silent_for(self, now: float) -> float:
        """Seconds since the peer was last heard (RTP or RTCP), or since the stream was negotiated."""
        return self._receiver.silent_for(now)

    @property
    def _sending(self) -> bool:
        remote = self._receiver.remote
        return (
            self._direction in ("sendrecv", "sendonly")
            and self._rtp_transport is not None
            and remote is not None
            and remote[0] not in HOLD_ADDRESSES
        )

    # ------------------------------------------------------------------ datagrams and ticks

    def _on_rtp_datagram(self, data: bytes, source: Address) -> None:
        if self._closed:
            return
        if is_rtcp(data):  # rtcp-mux peers send RTCP here
            self._on_rtcp(data, source, latch=False)
        else:
            self._receiver.receive_rtp(data, source, self._clock())

    def _on_rtcp_datagram(self, data: bytes, source: Address) -> None:
        if not self._closed:
            self._on_rtcp(data, source, latch=True)

    def _on_rtcp(self, data: bytes, source: Address, *, latch: bool) -> None:
        for block in self._receiver.receive_rtcp(data, source, self._clock(), latch=latch):
            self._sender.receive_report(block, time.time())

    def _tick(self, now: float) -> None:
        if self._codec is None or self._closed:
            return
        self._receiver.tick(now)
        datagram = self._sender.tick(transmit=self._sending)
        remote = self._receiver.remote
        if datagram is not None and self._rtp_transport is not None and remote is not None:
            self._rtp_transport.sendto(datagram, remote)
        if self._sender.report_due(now):
            self._send_rtcp(self._sender.report(now, time.time(), self._receiver.report_block(now)))

    def _skip(self, frames: int) -> None:
        """The ticker stalled past these slots: move the timestamp on so playout stays real-time."""
        self._sender.skip(frames)

    def _send_rtcp(self, data: bytes) -> None:
        # RTCP still flows on a=sendonly/inactive hold; only a hold address has nowhere to go.
        remote = self._receiver.rtcp_remote
        if self._rtcp_transport is None or remote is None or remote[0] in HOLD_ADDRESSES:
            return
        self._rtcp_transport.sendto(data, remote)
        self._rtcp_sent += 1

    # ------------------------------------------------------------------ playback

    def play(self, pcm: bytes) -> Playback:
        """Queue 8 kHz 16-bit mono PCM; the last frame is padded with silence."""
        return self._sender.play(pcm)

    def play_stream(self, chunks: AsyncIterable[bytes]) -> Playback:
        """Queue PCM that is still being produced (streamed TTS), played as it arrives.

        The source is read from now on, even while earlier playbacks are playing,
        so its first frames are ready when its turn comes.
        """
        return self._sender.play_stream(chunks)

    def flush(self) -> None:
        """Drop the playbacks that have not started; the current one carries on."""
        self._sender.flush()

    def stop(self) -> None:
        """Cut the current playback off now and drop the queue."""
        self._sender.stop()

    def cancel(self, playback: Playback) -> None:
        """Cut off one playback, playing or queued, leaving the others alone."""
        self._sender.cancel(playback)

    @property
    def playing(self) -> bool:
        return self._sender.playing

    # ------------------------------------------------------------------ taps and DTMF

    def add_tap(self, direction: TapDirection, callback: PcmCallback) -> Callable[[], None]:
        """Receive every 20 ms frame of 8 kHz 16-bit mono PCM; returns a function that detaches it.

        ``in`` frames are what the peer sent (decoded; silence where nothing arrived
        in time), ``out`` frames what we sent it (silence included). Both fire once
        per tick, in that order, so they stay aligned.
        """
        if direction == "in":
            return self._receiver.taps.add(callback)
        if direction == "out":
            return self._sender.taps.add(callback)
        raise ValueError(f"tap direction must be 'in' or 'out', not {direction!r}")

    def attach_feed(self, owner: FeedOwner, frames: deque[bytes]) -> None:
        """Send ``frames`` (popped one a tick, behind any playback) until ``detach_feed``: one feed at a time."""
        if self._feed_owner is not None or self._closed:
            raise RuntimeError(f"endpoint on port {self.local_port} is closed or already bridged")
        self._feed_owner, self._sender.bridged = owner, frames

    def detach_feed(self, owner: FeedOwner) -> None:
        if self._feed_owner is owner:
            self._feed_owner, self._sender.bridged = None, None

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; they replace audio on the ticks they are sent on."""
        self._sender.send_dtmf(digits, duration_ms)

    # ------------------------------------------------------------------ statistics and teardown

    def stats(self) -> EndpointStats:
        receiver, sender = self._receiver, self._sender
        playout = receiver.playout
        return EndpointStats(
            packets_sent=sender.packets_sent,
            bytes_sent=sender.octets_sent,
            packets_received=receiver.packets_received,
            bytes_received=receiver.bytes_received,
            lost=receiver.lost,
            jitter_ms=receiver.jitter_ms,
            late=playout.late,
            duplicate=playout.duplicate,
            malformed=receiver.malformed,
            unexpected=receiver.unexpected,
            rtcp_sent=self._rtcp_sent,
            rtcp_received=receiver.rtcp_received,
            rtt_ms=None if sender.rtt is None else sender.rtt * 1000,
        )

    async def close(self) -> None:
        """Stop playbacks, say RTCP BYE, close the sockets and free the ports; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._feed_owner is not None:
            self._feed_owner.close()
        if self._codec is not None:
            self._send_rtcp(self._sender.bye())
        await self._sender.close()
        await self._close_transports()
        self._engine._forget(self)

    async def _close_transports(self) -> None:
        for transport in (self._rtp_transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        # Wait for the sockets to really close so the ports can be bound again at once.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.closed for p in self._protocols)), timeout=1.0)


class Bridge:
    """Two endpoints hearing each other: each one's received audio becomes the other's outgoing.

    Playbacks on either endpoint take precedence over the bridged audio.
    """

    def __init__(self, a: RtpEndpoint, b: RtpEndpoint) -> None:
        if a is b:
            raise ValueError("cannot bridge an endpoint to itself")
        for endpoint in (a, b):
            if endpoint._feed_owner is not None or endpoint.closed:
                raise RuntimeError(f"endpoint on port {endpoint.local_port} is closed or already bridged")
        self._endpoints = (a, b)
        to_a: deque[bytes] = deque(maxlen=BRIDGE_DEPTH)
        to_b: deque[bytes] = deque(maxlen=BRIDGE_DEPTH)
        a.attach_feed(self, to_a)
        b.attach_feed(self, to_b)
        self._detach = [a.add_tap("in", to_b.append), b.add_tap("in", to_a.append)]

    def close(self) -> None:
        for detach in self._detach:
            detach()
        self._detach = []
        for endpoint in self._endpoints:
            endpoint.detach_feed(self)


def bridge(a: RtpEndpoint, b: RtpEndpoint) -> Bridge:
    return Bridge(a, b)


class Mixing(Protocol):
    def mix(self) -> None:
        """Combine this tick's received frames into each leg's next outgoing one."""
        ...


class MediaEngine:
    """Owns the RTP port range and the one ticker that drives every endpoint.

    ``clock`` is the monotonic clock in seconds that deadlines, jitter buffers and
    statistics use; ``rtcp_interval`` the mean seconds between RTCP reports.
    """

    def __init__(
        self,
        bind_host: str = "127.0.0.1",
        port_first: int = 20000,
        port_last: int = 30000,
        clock: Callable[[], float] = time.monotonic,
        *,
        rtcp_interval: float = 5.0,
    ) -> None:
        self.bind_host = bind_host
        self.ports = PortAllocator(port_first, port_last)
        self.clock = clock
        self.rtcp_interval = rtcp_interval
        self.lateness = LatenessStats()
        self._endpoints: dict[int, RtpEndpoint] = {}
        self._mixers: list[Mixing] = []
        self._ticker: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def endpoints(self) -> list[RtpEndpoint]:
        return list(self._endpoints.values())

    async def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._run(), name="media-ticker")

    async def stop(self) -> None:
        """Close every endpoint and stop ticking; idempotent."""
        await asyncio.gather(*(endpoint.close() for endpoint in self.endpoints))
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def open_endpoint(self) -> RtpEndpoint:
        """An endpoint on a free RTP/RTCP port pair; :class:`PortsExhausted` when none binds."""
        error: OSError | None = None
        for _ in range(self.ports.capacity):
            port = self.ports.allocate()
            endpoint = RtpEndpoint(self, port)
            try:
                await endpoint._bind(self.bind_host)
            except OSError as exc:  # taken by another process: try the next pair
                self.ports.release(port)
                error = exc
                continue
            self._endpoints[port] = endpoint
            return endpoint
        raise PortsExhausted(
            f"no RTP port pair in {self.ports.first}-{self.ports.last} could be bound"
        ) from error

    def add_mixer(self, mixer: Mixing) -> None:
        """Mix on every tick, once every endpoint has received its frame for it."""
        self._mixers.append(mixer)

    def remove_mixer(self, mixer: Mixing) -> None:
        if mixer in self._mixers:
            self._mixers.remove(mixer)

    def _forget(self, endpoint: RtpEndpoint) -> None:
        if self._endpoints.get(endpoint.local_port) is endpoint:
            del self._endpoints[endpoint.local_port]
            self.ports.release(endpoint.local_port)

    async def _run(self) -> None:
        pacer = Pacer(self.clock(), FRAME_INTERVAL)
        pacer.lateness = self.lateness
        while True:
            # sleep(0) when already late still lets socket reads in between frames.
            await asyncio.sleep(max(0.0, pacer.next_deadline() - self.clock()))
            now = self.clock()
            endpoints = tuple(self._endpoints.values())
            for endpoint in endpoints:
                try:
                    endpoint._tick(now)
                except Exception:
                    logger.exception("media endpoint on port %d failed; closing it", endpoint.local_port)
                    self._close_later(endpoint)
            for mixer in tuple(self._mixers):
                try:
                    mixer.mix()
                except Exception:
                    logger.exception("a media mixer failed; it no longer mixes")
                    self.remove_mixer(mixer)
            skipped = pacer.advance(now)
            if skipped:
                for endpoint in endpoints:
                    endpoint._skip(skipped)

    def _close_later(self, endpoint: RtpEndpoint) -> None:
        task = asyncio.create_task(endpoint.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
