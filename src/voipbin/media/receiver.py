"""The receiving half of an RTP endpoint, without I/O: datagrams and ``now`` in, 20 ms frames out.

An :class:`RtpReceiver` decides which packets are the peer's (symmetric RTP
latching), files them in the jitter buffer, detects RFC 4733 digits, keeps the
RFC 3550 reception statistics and the report block our RTCP carries about the
peer, and knows when the peer was last heard. Its owner hands it every datagram
that arrives and calls :meth:`RtpReceiver.tick` once per frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Final, TypeAlias

from voipbin.media.dtmf import DtmfDetector
from voipbin.media.frames import FRAME_BYTES, SAMPLE_RATE_8K, SILENCE_FRAME, Taps
from voipbin.media.g711 import Codec
from voipbin.media.jitter import JitterBuffer, JitterStats
from voipbin.media.rtp import (
    RtcpReportBlock,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpError,
    RtpPacket,
    RtpReceiverStats,
    ntp_middle32,
    parse_rtcp,
)

logger = logging.getLogger(__name__)

Address: TypeAlias = tuple[str, int]

# Decoded audio waiting to be handed out; only grows when the peer sends packets
# longer than 20 ms, and must not grow without bound if it sends too fast.
INBOUND_MAX_BYTES: Final = 10 * FRAME_BYTES


class RtpReceiver:
    """Everything about the peer's stream: who it is, where it is, what it sent and when.

    ``remote`` and ``rtcp_remote`` are where the peer can be reached: the SDP
    addresses until its own packets show where it really is (a phone behind NAT
    rarely sends from the address it advertises). Counters are read-only for
    callers; ``malformed`` counts datagrams that were not valid RTP/RTCP,
    ``unexpected`` valid RTP that is not the peer's negotiated stream.
    """

    def __init__(self) -> None:
        self.on_dtmf: Callable[[str], None] | None = None
        self.taps = Taps("in")
        self.remote: Address | None = None
        self.rtcp_remote: Address | None = None
        self.latched = False
        self.packets_received = 0
        self.bytes_received = 0
        self.malformed = 0
        self.unexpected = 0
        self.rtcp_received = 0
        self._sdp_remote: Address | None = None
        self._codec: Codec | None = None
        self._te_pt: int | None = None
        # When the peer was last heard from (RTP or RTCP), or the stream was negotiated.
        self._heard_at: float | None = None
        self._peer_ssrc: int | None = None
        self._stats = RtpReceiverStats()
        self._lost_before = 0  # loss counted against earlier peer SSRCs
        self._audio_transit: float | None = None  # arrival - timestamp of the last audio packet
        self._last_sr: tuple[int, float] | None = None  # (NTP middle 32 bits, arrival)
        self._jitter = JitterBuffer()
        self._detector = DtmfDetector()
        self._inbound = bytearray()

    def configure(
        self,
        remote: Address,
        rtcp_remote: Address | None,
        codec: Codec,
        telephone_event_pt: int | None,
        now: float,
    ) -> None:
        """Take a negotiated stream (again).

        Only a new SDP address resets latching: a re-INVITE that repeats the old one
        must not throw away where the peer was found to really send from.
        """
        if remote != self._sdp_remote:
            self._sdp_remote = self.remote = remote
            self.rtcp_remote = rtcp_remote
            self.latched = False
        self._codec = codec
        self._te_pt = telephone_event_pt
        self._heard_at = now  # a (re)negotiated stream gets a fresh chance to be heard

    @property
    def peer_ssrc(self) -> int | None:
        return self._peer_ssrc

    def silent_for(self, now: float) -> float:
        """Seconds since the peer was last heard (RTP or RTCP), or since the stream was negotiated."""
        return 0.0 if self._heard_at is None else max(0.0, now - self._heard_at)

    # ------------------------------------------------------------------ RTP

    def receive_rtp(self, data: bytes, source: Address, now: float) -> None:
        """File one datagram that arrived on the RTP port from ``source``."""
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.malformed += 1
            return
        codec = self._codec
        if codec is None or packet.payload_type not in (codec.payload_type, self._te_pt):
            self.unexpected += 1
            return
        if not self._accept_source(packet.ssrc, source):
            self.unexpected += 1
            return
        self._heard_at = now
        arrival = now * codec.clock_rate
        self.packets_received += 1
        self.bytes_received += len(packet.payload)
        if packet.payload_type == codec.payload_type:
            self._stats.add(packet, arrival)
            self._audio_transit = arrival - packet.timestamp
            self._jitter.push(packet, now)
            return
        # Every packet of an event repeats its start timestamp, which says nothing
        # about network timing: account it as on time so it counts for loss only.
        if self._audio_transit is not None:
            on_time = int(arrival - self._audio_transit) & 0xFFFF_FFFF
            self._stats.add(replace(packet, timestamp=on_time), arrival)
        else:
            self._stats.add(packet, arrival)
        digit = self._detector.feed_packet(packet)
        if digit is not None and self.on_dtmf is not None:
            try:
                self.on_dtmf(digit)
            except Exception:
                logger.exception("on_dtmf callback failed")

    def _accept_source(self, ssrc: int, source: Address) -> bool:
        """Symmetric RTP: follow where the peer really sends from, but not anyone else."""
        if not self.latched or source == self.remote:
            if not self.latched:
                self.latched = True
                self.remote = source
            if ssrc != self._peer_ssrc:
                self._new_peer_source(ssrc)
            return True
        if ssrc == self._peer_ssrc:
            self.remote = source  # the same stream from a new address: its NAT rebound
            return True
        return False

    def _new_peer_source(self, ssrc: int) -> None:
        # A PBX may switch the stream it relays; statistics restart for the new source.
        if self._peer_ssrc is not None:
            self._lost_before += max(0, self._stats.lost)
            self._stats = RtpReceiverStats()
            self._detector.reset()
            self._audio_transit = None
        self._peer_ssrc = ssrc

    def tick(self, now: float) -> bytes:
        """This tick's frame of what the peer said, also handed to the taps.

        Silence stands in for whatever did not arrive in time: that is what the
        phone effectively sent, and it keeps "in" frames aligned with "out" frames.
        """
        codec = self._codec
        packet = self._jitter.pop(now)
        if codec is not None and packet is not None and packet.payload_type == codec.payload_type:
            self._inbound += codec.decode(packet.payload)
            del self._inbound[:-INBOUND_MAX_BYTES]
        if len(self._inbound) < FRAME_BYTES:
            frame = SILENCE_FRAME
        else:
            frame = bytes(self._inbound[:FRAME_BYTES])
            del self._inbound[:FRAME_BYTES]
        self.taps.emit(frame)
        return frame

    # ------------------------------------------------------------------ RTCP

    def receive_rtcp(self, data: bytes, source: Address, now: float, *, latch: bool) -> list[RtcpReportBlock]:
        """File one RTCP datagram; returns its report blocks, which tell our sender its RTT.

        ``latch`` is whether ``source`` may become the RTCP address: true on the
        RTCP port, false for RTCP multiplexed onto the RTP port (RFC 5761), whose
        replies still go to the RTCP port.
        """
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self.malformed += 1
            return []
        self.rtcp_received += 1
        blocks: list[RtcpReportBlock] = []
        for packet in packets:
            if not isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                continue
            if self._peer_ssrc is not None and packet.ssrc == self._peer_ssrc:
                self._heard_at = now
                if latch:
                    self.rtcp_remote = source
                if isinstance(packet, RtcpSrPacket):
                    self._last_sr = (ntp_middle32(packet.sender_info.ntp_timestamp), now)
            blocks.extend(packet.reports)
        return blocks

    def report_block(self, now: float) -> RtcpReportBlock | None:
        """The block our next SR/RR carries about the peer; None before it sent anything.

        Each call closes a reporting interval (the fraction lost covers the time
        since the previous call), so call it once per report sent.
        """
        if self._peer_ssrc is None or not self._stats.received:
            return None
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = min(0xFFFF_FFFF, int((now - self._last_sr[1]) * 65536))
        return self._stats.report_block(self._peer_ssrc, lsr, dlsr)

    # ------------------------------------------------------------------ statistics

    @property
    def lost(self) -> int:
        """Packets lost across every source the peer used."""
        return self._lost_before + max(0, self._stats.lost)

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter of the current source, in milliseconds."""
        clock_rate = self._codec.clock_rate if self._codec else SAMPLE_RATE_8K
        return self._stats.jitter / clock_rate * 1000

    @property
    def playout(self) -> JitterStats:
        """The jitter buffer's counters (late, duplicate, lost at playout...)."""
        return self._jitter.stats
