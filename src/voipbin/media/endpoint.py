"""The asyncio media runtime: RTP endpoints over UDP, driven by one shared 20 ms ticker.

A :class:`MediaEngine` owns a single task that wakes on an absolute 20 ms grid and
lets every :class:`RtpEndpoint` receive and send one frame. One task for all
streams keeps timers and wake-ups constant as calls are added, and every stream
shares the same notion of "now". Sockets only file incoming packets (jitter
buffer, DTMF detector, statistics); all playout and sending happens on ticks.

Audio crossing this API is always 16-bit signed little-endian mono PCM at 8 kHz,
in frames of 160 samples (320 bytes, 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, replace
from typing import Final, Literal, TypeAlias

from voipbin.media.dtmf import DtmfDetector, DtmfError, DtmfPacket, DtmfSender
from voipbin.media.g711 import Codec
from voipbin.media.jitter import JitterBuffer
from voipbin.media.pacer import LatenessStats, Pacer, RtpStreamState
from voipbin.media.ports import PortAllocator, PortsExhausted
from voipbin.media.rtp import (
    RtcpRrPacket,
    RtcpSrPacket,
    RtpError,
    RtpPacket,
    RtpReceiverStats,
    build_bye,
    build_receiver_report,
    build_sender_report,
    is_rtcp,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
)
from voipbin.media.sdp import Direction

logger = logging.getLogger(__name__)

SAMPLE_RATE_8K: Final = 8000
FRAME_SAMPLES: Final = 160
FRAME_BYTES: Final = 2 * FRAME_SAMPLES
FRAME_INTERVAL: Final = 0.020
SILENCE_FRAME: Final = bytes(FRAME_BYTES)

# Audio between two DTMF digits, so the far end hears separate presses.
DTMF_GAP_FRAMES: Final = 3
# Decoded audio waiting to be handed to "in" taps; only grows when the peer sends
# packets longer than 20 ms, and must not grow without bound if it sends too fast.
INBOUND_MAX_BYTES: Final = 10 * FRAME_BYTES
# Frames of bridged audio that may wait; more would only add delay.
BRIDGE_DEPTH: Final = 3
# An RFC 2543 hold: the peer still negotiates but has no address to send to.
HOLD_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})

TapDirection: TypeAlias = Literal["in", "out"]
PcmCallback: TypeAlias = Callable[[bytes], None]
PlaybackOutcome: TypeAlias = Literal["finished", "stopped", "flushed", "failed"]
Address: TypeAlias = tuple[str, int]


class Playback:
    """One queued prompt or stream of 8 kHz 16-bit mono PCM.

    ``done`` resolves with the outcome: ``finished`` once the last frame was sent,
    ``stopped`` when cut off by :meth:`RtpEndpoint.stop` (or by closing the
    endpoint, started or not), ``flushed`` when dropped from the queue before it
    started, ``failed`` once what arrived before its source raised (kept in
    ``error``) has been played.
    """

    def __init__(self, pcm: bytes = b"", *, complete: bool = True) -> None:
        self.id = uuid.uuid4().hex
        self.done: asyncio.Future[PlaybackOutcome] = asyncio.get_running_loop().create_future()
        self.frames_sent = 0
        self.error: Exception | None = None
        self._pcm = bytearray(pcm)
        self._complete = complete
        self._task: asyncio.Task[None] | None = None

    @property
    def _exhausted(self) -> bool:
        return self._complete and not self._pcm

    def _take_frame(self) -> bytes | None:
        """The next 20 ms frame; None while a streamed source has not delivered it yet."""
        if len(self._pcm) < FRAME_BYTES and not (self._complete and self._pcm):
            return None
        frame = bytes(self._pcm[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        del self._pcm[:FRAME_BYTES]  # CPython trims a bytearray's head without copying
        return frame

    def _finish(self, outcome: PlaybackOutcome) -> None:
        if not self.done.done():
            self.done.set_result(outcome)
        if self._task is not None:
            self._task.cancel()


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
    """

    def __init__(self, engine: MediaEngine, port: int) -> None:
        self.local_port = port
        self.on_dtmf: Callable[[str], None] | None = None
        self._engine = engine
        self._clock = engine.clock
        self._closed = False
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._protocols: list[_Datagrams] = []

        # Negotiated with set_remote.
        self._codec: Codec | None = None
        self._silence = b""
        self._te_pt: int | None = None
        self._direction: Direction = "sendrecv"
        self._sdp_remote: Address | None = None
        self._rtp_dest: Address | None = None
        self._rtcp_dest: Address | None = None
        self._latched = False
        # When the peer was last heard from (its RTP or RTCP), or the stream began: a peer that
        # falls silent for long has gone away (see silent_for).
        self._heard_at: float | None = None

        # Receiving.
        self._peer_ssrc: int | None = None
        self._receiver = RtpReceiverStats()
        self._lost_before = 0  # loss counted against earlier peer SSRCs
        self._audio_transit: float | None = None  # arrival - timestamp of the last audio packet
        self._jitter = JitterBuffer()
        self._detector = DtmfDetector()
        self._inbound = bytearray()
        self._packets_received = 0
        self._bytes_received = 0
        self._malformed = 0
        self._unexpected = 0

        # Sending.
        self._stream = RtpStreamState(0)
        self._queue: deque[Playback] = deque()
        self._current: Playback | None = None
        self._stream_tasks: set[asyncio.Task[None]] = set()
        self._dtmf_sender = DtmfSender()
        self._dtmf_digits: deque[list[DtmfPacket]] = deque()
        self._dtmf_packets: deque[DtmfPacket] = deque()
        self._dtmf_gap = 0
        self._bridge: Bridge | None = None
        self._bridge_in: deque[bytes] | None = None
        self._taps: dict[TapDirection, list[PcmCallback]] = {"in": [], "out": []}

        # RTCP.
        self._next_rtcp: float | None = None
        self._last_sr: tuple[int, float] | None = None  # (NTP middle 32 bits, arrival)
        self._rtcp_sent = 0
        self._rtcp_received = 0
        self._rtt: float | None = None

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
        return self._rtp_dest

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def codec(self) -> Codec | None:
        return self._codec

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
        if (host, port) != self._sdp_remote:
            # New SDP address: trust it until the peer's packets say otherwise.
            self._sdp_remote = self._rtp_dest = (host, port)
            if rtcp_port is None and port < 65535:
                rtcp_port = port + 1
            self._rtcp_dest = (host, rtcp_port) if rtcp_port is not None else None
            self._latched = False
        self._codec = codec
        self._silence = codec.silence(FRAME_SAMPLES)
        self._stream.payload_type = codec.payload_type
        self._heard_at = self._clock()  # a (re)negotiated stream gets a fresh chance to be heard
        self._te_pt = telephone_event_pt
        self._direction = direction
        if self._next_rtcp is None:
            self._next_rtcp = self._clock() + self._rtcp_delay()

    @property
    def expects_media(self) -> bool:
        """Whether the peer should be sending RTP now (not when it holds the call, or we do)."""
        return self._codec is not None and not self._closed and self._direction in ("sendrecv", "recvonly")

    def silent_for(self, now: float) -> float:
        """Seconds since the peer was last heard (RTP or RTCP), or since the stream was negotiated."""
        return 0.0 if self._heard_at is None else max(0.0, now - self._heard_at)

    @property
    def _sending(self) -> bool:
        return (
            self._direction in ("sendrecv", "sendonly")
            and self._rtp_dest is not None
            and self._rtp_dest[0] not in HOLD_ADDRESSES
        )

    def _rtcp_delay(self) -> float:
        # Randomised as RFC 3550 6.2 asks, so hundreds of streams do not report in step.
        return self._engine.rtcp_interval * random.uniform(0.5, 1.5)

    # ------------------------------------------------------------------ receiving

    def _on_rtp_datagram(self, data: bytes, source: Address) -> None:
        if self._closed:
            return
        if is_rtcp(data):  # rtcp-mux peers send RTCP here
            self._on_rtcp(data, source, latch=False)
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self._malformed += 1
            return
        codec = self._codec
        if codec is None or packet.payload_type not in (codec.payload_type, self._te_pt):
            self._unexpected += 1
            return
        if not self._accept_source(packet.ssrc, source):
            self._unexpected += 1
            return
        now = self._clock()
        self._heard_at = now
        arrival = now * codec.clock_rate
        self._packets_received += 1
        self._bytes_received += len(packet.payload)
        if packet.payload_type == codec.payload_type:
            self._receiver.add(packet, arrival)
            self._audio_transit = arrival - packet.timestamp
            self._jitter.push(packet, now)
            return
        # Every packet of an event repeats its start timestamp, which says nothing
        # about network timing: account it as on time so it counts for loss only.
        if self._audio_transit is not None:
            packet_on_time = replace(packet, timestamp=int(arrival - self._audio_transit) & 0xFFFF_FFFF)
            self._receiver.add(packet_on_time, arrival)
        else:
            self._receiver.add(packet, arrival)
        digit = self._detector.feed_packet(packet)
        if digit is not None and self.on_dtmf is not None:
            try:
                self.on_dtmf(digit)
            except Exception:
                logger.exception("on_dtmf callback failed")

    def _accept_source(self, ssrc: int, source: Address) -> bool:
        """Symmetric RTP: follow where the peer really sends from, but not anyone else."""
        if not self._latched or source == self._rtp_dest:
            if not self._latched:
                self._latched = True
                self._rtp_dest = source
            if ssrc != self._peer_ssrc:
                self._new_peer_source(ssrc)
            return True
        if ssrc == self._peer_ssrc:
            self._rtp_dest = source  # the same stream from a new address: its NAT rebound
            return True
        return False

    def _new_peer_source(self, ssrc: int) -> None:
        # A PBX may switch the stream it relays; statistics restart for the new source.
        if self._peer_ssrc is not None:
            self._lost_before += max(0, self._receiver.lost)
            self._receiver = RtpReceiverStats()
            self._detector.reset()
            self._audio_transit = None
        self._peer_ssrc = ssrc

    def _on_rtcp_datagram(self, data: bytes, source: Address) -> None:
        if not self._closed:
            self._on_rtcp(data, source, latch=True)

    def _on_rtcp(self, data: bytes, source: Address, *, latch: bool) -> None:
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self._malformed += 1
            return
        self._rtcp_received += 1
        for packet in packets:
            if not isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                continue
            if packet.ssrc == self._peer_ssrc and self._peer_ssrc is not None:
                self._heard_at = self._clock()
                if latch:
                    self._rtcp_dest = source
                if isinstance(packet, RtcpSrPacket):
                    self._last_sr = (ntp_middle32(packet.sender_info.ntp_timestamp), self._clock())
            for block in packet.reports:
                if block.ssrc == self._stream.ssrc and block.lsr:
                    # RFC 3550 6.4.1: now - LSR - DLSR, all in 1/65536 s.
                    now = ntp_middle32(ntp_timestamp(time.time()))
                    rtt = (now - block.lsr - block.dlsr) & 0xFFFF_FFFF
                    if rtt < 0x8000_0000:
                        self._rtt = rtt / 65536

    def _receive_frame(self, now: float, codec: Codec) -> bytes:
        packet = self._jitter.pop(now)
        if packet is not None and packet.payload_type == codec.payload_type:
            self._inbound += codec.decode(packet.payload)
            del self._inbound[:-INBOUND_MAX_BYTES]
        if len(self._inbound) < FRAME_BYTES:
            return SILENCE_FRAME  # nothing in time: what the phone "sent" is silence
        frame = bytes(self._inbound[:FRAME_BYTES])
        del self._inbound[:FRAME_BYTES]
        return frame

    # ------------------------------------------------------------------ sending

    def _tick(self, now: float) -> None:
        codec = self._codec
        if codec is None or self._closed:
            return
        self._emit("in", self._receive_frame(now, codec))
        self._emit("out", self._send_frame(codec))
        if self._next_rtcp is not None and now >= self._next_rtcp:
            self._send_rtcp(now)
            self._next_rtcp = now + self._rtcp_delay()

    def _skip(self, frames: int) -> None:
        """The ticker stalled past these slots: move the timestamp on so playout stays real-time."""
        self._stream.skip(frames)

    def _send_frame(self, codec: Codec) -> bytes:
        """Send this tick's packet; returns the PCM the peer hears (silence during DTMF)."""
        if not self._dtmf_packets and not self._dtmf_gap and self._dtmf_digits:
            timestamp = self._stream.timestamp
            self._dtmf_packets.extend(p._replace(timestamp=timestamp) for p in self._dtmf_digits.popleft())
        if self._dtmf_packets:
            event = self._dtmf_packets.popleft()
            self._transmit(
                event.payload, payload_type=self._te_pt, timestamp=event.timestamp, marker=event.marker
            )
            if not self._dtmf_packets:
                self._dtmf_gap = DTMF_GAP_FRAMES
                self._stream.mark()  # audio after the event starts a new talkspurt
            return SILENCE_FRAME
        if self._dtmf_gap:
            self._dtmf_gap -= 1
        pcm = self._next_audio_frame()
        self._transmit(self._silence if pcm is None else codec.encode(pcm))
        return SILENCE_FRAME if pcm is None else pcm

    def _transmit(
        self,
        payload: bytes,
        *,
        payload_type: int | None = None,
        timestamp: int | None = None,
        marker: bool | None = None,
    ) -> None:
        if not self._sending or self._rtp_transport is None or self._rtp_dest is None:
            self._stream.skip(1)  # on hold: time passes, nothing is sent
            return
        packet = self._stream.next_packet(
            payload, payload_type=payload_type, timestamp=timestamp, marker=marker
        )
        self._rtp_transport.sendto(packet.serialize(), self._rtp_dest)

    def _next_audio_frame(self) -> bytes | None:
        """A playback frame, else bridged audio, else None for comfort silence."""
        frame = self._next_playback_frame()
        bridged = self._bridge_in
        if frame is not None or self._current is not None:
            if bridged:
                bridged.clear()  # a prompt talks over the bridge; its audio is dropped, not delayed
            return frame
        return bridged.popleft() if bridged else None

    def _next_playback_frame(self) -> bytes | None:
        while True:
            playback = self._current
            if playback is None:
                if not self._queue:
                    return None
                playback = self._current = self._queue.popleft()
            frame = playback._take_frame()
            if frame is None and not playback._exhausted:
                return None  # a streamed source is behind: silence until it catches up
            if frame is not None:
                if playback.frames_sent == 0:
                    self._stream.mark()
                playback.frames_sent += 1
            if playback._exhausted:
                playback._finish("finished" if playback.error is None else "failed")
                self._current = None
            if frame is not None:
                return frame

    def _send_rtcp_packet(self, data: bytes) -> None:
        # RTCP still flows on a=sendonly/inactive hold; only a hold address has nowhere to go.
        if self._rtcp_transport is None or self._rtcp_dest is None or self._rtcp_dest[0] in HOLD_ADDRESSES:
            return
        self._rtcp_transport.sendto(data, self._rtcp_dest)
        self._rtcp_sent += 1

    def _send_rtcp(self, now: float) -> None:
        block = None
        if self._peer_ssrc is not None and self._receiver.received:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = min(0xFFFF_FFFF, int((now - self._last_sr[1]) * 65536))
            block = self._receiver.report_block(self._peer_ssrc, lsr, dlsr)
        stream = self._stream
        if stream.packets_sent:
            # The timestamp of the frame just sent, taken at the same instant as the NTP time.
            rtp_ts = (stream.timestamp - FRAME_SAMPLES) & 0xFFFF_FFFF
            ntp = ntp_timestamp(time.time())
            data = build_sender_report(
                stream.ssrc, ntp, rtp_ts, stream.packets_sent, stream.octets_sent, block
            )
        else:
            data = build_receiver_report(stream.ssrc, block)
        self._send_rtcp_packet(data)

    # ------------------------------------------------------------------ playback

    def play(self, pcm: bytes) -> Playback:
        """Queue 8 kHz 16-bit mono PCM; the last frame is padded with silence."""
        if len(pcm) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        return self._enqueue(Playback(pcm))

    def play_stream(self, chunks: AsyncIterable[bytes]) -> Playback:
        """Queue PCM that is still being produced (streamed TTS), played as it arrives.

        The source is read from now on, even while earlier playbacks are playing,
        so its first frames are ready when its turn comes.
        """
        playback = Playback(complete=False)
        if not self._closed:
            task = asyncio.create_task(self._consume(playback, chunks))
            playback._task = task
            self._stream_tasks.add(task)
            task.add_done_callback(self._stream_tasks.discard)
        return self._enqueue(playback)

    async def _consume(self, playback: Playback, chunks: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in chunks:
                if playback.done.done():
                    break
                playback._pcm += chunk
        except Exception as exc:
            logger.warning("playback %s source failed: %r", playback.id, exc)
            playback.error = exc
        finally:
            playback._complete = True
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _enqueue(self, playback: Playback) -> Playback:
        if self._closed:
            playback._finish("stopped")
        else:
            self._queue.append(playback)
        return playback

    def flush(self) -> None:
        """Drop the playbacks that have not started; the current one carries on."""
        while self._queue:
            self._queue.popleft()._finish("flushed")

    def stop(self) -> None:
        """Cut the current playback off now and drop the queue."""
        if self._current is not None:
            self._current._finish("stopped")
            self._current = None
        self.flush()

    def cancel(self, playback: Playback) -> None:
        """Cut off one playback, playing or queued, leaving the others alone."""
        if self._current is playback:
            self._current = None
        elif playback in self._queue:
            self._queue.remove(playback)
        else:
            return
        playback._finish("stopped")

    @property
    def playing(self) -> bool:
        return self._current is not None or bool(self._queue)

    # ------------------------------------------------------------------ taps and DTMF

    def add_tap(self, direction: TapDirection, callback: PcmCallback) -> Callable[[], None]:
        """Receive every 20 ms frame of 8 kHz 16-bit mono PCM; returns a function that detaches it.

        ``in`` frames are what the peer sent (decoded; silence where nothing arrived
        in time), ``out`` frames what we sent it (silence included). Both fire once
        per tick, in that order, so they stay aligned.
        """
        if direction not in self._taps:
            raise ValueError(f"tap direction must be 'in' or 'out', not {direction!r}")
        taps = self._taps[direction]
        taps.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                taps.remove(callback)

        return remove

    def _emit(self, direction: TapDirection, frame: bytes) -> None:
        for callback in tuple(self._taps[direction]):
            try:
                callback(frame)
            except Exception:
                # Detached so one broken consumer cannot log 50 times a second.
                logger.exception("%s media tap failed; detaching it", direction)
                with contextlib.suppress(ValueError):
                    self._taps[direction].remove(callback)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; they replace audio on the ticks they are sent on."""
        if self._te_pt is None:
            raise DtmfError("telephone-event was not negotiated with the peer")
        # Built now so a bad digit or duration raises here, not inside the ticker.
        trains = [self._dtmf_sender.packets(digit, duration_ms, 0) for digit in digits]
        self._dtmf_digits.extend(trains)

    # ------------------------------------------------------------------ statistics and teardown

    def stats(self) -> EndpointStats:
        jitter = self._jitter.stats
        clock_rate = self._codec.clock_rate if self._codec else SAMPLE_RATE_8K
        return EndpointStats(
            packets_sent=self._stream.packets_sent,
            bytes_sent=self._stream.octets_sent,
            packets_received=self._packets_received,
            bytes_received=self._bytes_received,
            lost=self._lost_before + max(0, self._receiver.lost),
            jitter_ms=self._receiver.jitter / clock_rate * 1000,
            late=jitter.late,
            duplicate=jitter.duplicate,
            malformed=self._malformed,
            unexpected=self._unexpected,
            rtcp_sent=self._rtcp_sent,
            rtcp_received=self._rtcp_received,
            rtt_ms=None if self._rtt is None else self._rtt * 1000,
        )

    async def close(self) -> None:
        """Stop playbacks, say RTCP BYE, close the sockets and free the ports; idempotent."""
        if self._closed:
            return
        self._closed = True
        for playback in (self._current, *self._queue):
            if playback is not None:
                playback._finish("stopped")
        self._current = None
        self._queue.clear()
        self._dtmf_digits.clear()
        self._dtmf_packets.clear()
        if self._bridge is not None:
            self._bridge.close()
        if self._codec is not None:
            self._send_rtcp_packet(build_bye(self._stream.ssrc))
        for task in tuple(self._stream_tasks):
            task.cancel()
        await asyncio.gather(*self._stream_tasks, return_exceptions=True)
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
            if endpoint._bridge is not None or endpoint.closed:
                raise RuntimeError(f"endpoint on port {endpoint.local_port} is closed or already bridged")
        self._endpoints = (a, b)
        to_a: deque[bytes] = deque(maxlen=BRIDGE_DEPTH)
        to_b: deque[bytes] = deque(maxlen=BRIDGE_DEPTH)
        a._bridge, a._bridge_in = self, to_a
        b._bridge, b._bridge_in = self, to_b
        self._detach = [a.add_tap("in", to_b.append), b.add_tap("in", to_a.append)]

    def close(self) -> None:
        for detach in self._detach:
            detach()
        self._detach = []
        for endpoint in self._endpoints:
            if endpoint._bridge is self:
                endpoint._bridge = None
                endpoint._bridge_in = None


def bridge(a: RtpEndpoint, b: RtpEndpoint) -> Bridge:
    return Bridge(a, b)


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

    async def __aenter__(self) -> MediaEngine:
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
            skipped = pacer.advance(now)
            if skipped:
                for endpoint in endpoints:
                    endpoint._skip(skipped)

    def _close_later(self, endpoint: RtpEndpoint) -> None:
        task = asyncio.create_task(endpoint.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
