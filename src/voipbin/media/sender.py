"""The sending half of an RTP endpoint, without I/O: one RTP datagram out per tick, and RTCP reports.

An :class:`RtpSender` keeps the queue of :class:`Playback` prompts and streams,
RFC 4733 digits waiting to go out, and audio from a bridge, and on each tick
chooses what the peer hears next: a DTMF event, else a playback frame, else
bridged audio, else comfort silence. Everything goes out through one
:class:`~voipbin.media.pacer.RtpStreamState`, so the peer sees a single stream
whose timestamp keeps real time across prompts, pauses and holds. It also
writes our RTCP sender/receiver reports on a randomised schedule and reads our
round-trip time from the peer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncIterable
from typing import Final, Literal, TypeAlias

from voipbin.media.dtmf import DtmfError, DtmfPacket, DtmfSender
from voipbin.media.frames import FRAME_BYTES, FRAME_SAMPLES, SILENCE_FRAME, Taps
from voipbin.media.g711 import Codec
from voipbin.media.pacer import RtpStreamState
from voipbin.media.rtp import (
    RtcpReportBlock,
    build_bye,
    build_receiver_report,
    build_sender_report,
    ntp_middle32,
    ntp_timestamp,
)

logger = logging.getLogger(__name__)

# Audio between two DTMF digits, so the far end hears separate presses.
DTMF_GAP_FRAMES: Final = 3

PlaybackOutcome: TypeAlias = Literal["finished", "stopped", "flushed", "failed"]


class Playback:
    """One queued prompt or stream of 8 kHz 16-bit mono PCM.

    ``done`` resolves with the outcome: ``finished`` once the last frame was sent,
    ``stopped`` when cut off by ``stop`` or ``cancel`` (or by closing the
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


class RtpSender:
    """Our stream to the peer: playbacks, DTMF, bridged audio and RTCP reports.

    ``bridged`` is set by a bridge to the frames its partner received; they play
    whenever no playback is active. ``rtcp_interval`` is the mean number of
    seconds between reports; ``rng`` seeds SSRC, sequence number, timestamp and
    report times (tests pass a seeded one; the default is the system's).
    """

    def __init__(self, *, rtcp_interval: float = 5.0, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self._rtcp_interval = rtcp_interval
        self.taps = Taps("out")
        self.bridged: deque[bytes] | None = None
        self._stream = RtpStreamState(0, rng=self._rng)
        self._codec: Codec | None = None
        self._silence = b""
        self._te_pt: int | None = None
        self._closed = False
        self._queue: deque[Playback] = deque()
        self._current: Playback | None = None
        self._stream_tasks: set[asyncio.Task[None]] = set()
        self._dtmf_sender = DtmfSender()
        self._dtmf_digits: deque[list[DtmfPacket]] = deque()
        self._dtmf_packets: deque[DtmfPacket] = deque()
        self._dtmf_gap = 0
        self._next_report: float | None = None
        self._rtt: float | None = None

    def configure(self, codec: Codec, telephone_event_pt: int | None, now: float) -> None:
        """Take a negotiated codec (again); the first call also schedules the first report."""
        self._codec = codec
        self._silence = codec.silence(FRAME_SAMPLES)
        self._stream.payload_type = codec.payload_type
        self._te_pt = telephone_event_pt
        if self._next_report is None:
            self._next_report = now + self._report_delay()

    @property
    def ssrc(self) -> int:
        return self._stream.ssrc

    @property
    def packets_sent(self) -> int:
        return self._stream.packets_sent

    @property
    def octets_sent(self) -> int:
        return self._stream.octets_sent

    @property
    def rtt(self) -> float | None:
        """Round-trip time in seconds from the peer's last report about us; None before one came."""
        return self._rtt

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
        except Exception as exc:  # any failure of the source ends the playback as "failed"
            logger.warning("playback %s source failed: %r", playback.id, exc, exc_info=True)
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

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; they replace audio on the ticks they are sent on."""
        if self._te_pt is None:
            raise DtmfError("telephone-event was not negotiated with the peer")
        # Built now so a bad digit or duration raises here, not inside the ticker.
        trains = [self._dtmf_sender.packets(digit, duration_ms, 0) for digit in digits]
        self._dtmf_digits.extend(trains)

    async def close(self) -> None:
        """Stop every playback (queued ones too), drop pending digits and wait for stream sources to close."""
        self._closed = True
        for playback in (self._current, *self._queue):
            if playback is not None:
                playback._finish("stopped")
        self._current = None
        self._queue.clear()
        self._dtmf_digits.clear()
        self._dtmf_packets.clear()
        for task in tuple(self._stream_tasks):
            task.cancel()
        await asyncio.gather(*self._stream_tasks, return_exceptions=True)

    # ------------------------------------------------------------------ ticks

    def tick(self, *, transmit: bool) -> bytes | None:
        """This tick's RTP datagram; the taps get what the peer hears.

        None before :meth:`configure`, or without ``transmit`` (a hold): then the
        slot still passes, playbacks advance and the timestamp moves on, so the
        stream resumes in real time.
        """
        codec = self._codec
        if codec is None:
            return None
        if not self._dtmf_packets and not self._dtmf_gap and self._dtmf_digits:
            timestamp = self._stream.timestamp
            self._dtmf_packets.extend(p._replace(timestamp=timestamp) for p in self._dtmf_digits.popleft())
        if self._dtmf_packets:
            event = self._dtmf_packets.popleft()
            datagram = self._packet(
                transmit, event.payload, payload_type=self._te_pt, timestamp=event.timestamp, marker=event.marker
            )
            if not self._dtmf_packets:
                self._dtmf_gap = DTMF_GAP_FRAMES
                self._stream.mark()  # audio after the event starts a new talkspurt
            heard = SILENCE_FRAME
        else:
            if self._dtmf_gap:
                self._dtmf_gap -= 1
            pcm = self._next_audio_frame()
            datagram = self._packet(transmit, self._silence if pcm is None else codec.encode(pcm))
            heard = SILENCE_FRAME if pcm is None else pcm
        self.taps.emit(heard)
        return datagram

    def skip(self, frames: int) -> None:
        """The ticker stalled past these slots: move the timestamp on so playout stays real-time."""
        self._stream.skip(frames)

    def _packet(
        self,
        transmit: bool,
        payload: bytes,
        *,
        payload_type: int | None = None,
        timestamp: int | None = None,
        marker: bool | None = None,
    ) -> bytes | None:
        if not transmit:
            self._stream.skip(1)
            return None
        packet = self._stream.next_packet(payload, payload_type=payload_type, timestamp=timestamp, marker=marker)
        return packet.serialize()

    def _next_audio_frame(self) -> bytes | None:
        """A playback frame, else bridged audio, else None for comfort silence."""
        frame = self._next_playback_frame()
        bridged = self.bridged
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

    # ------------------------------------------------------------------ RTCP

    def _report_delay(self) -> float:
        # Randomised as RFC 3550 6.2 asks, so hundreds of streams do not report in step.
        return self._rtcp_interval * self._rng.uniform(0.5, 1.5)

    def report_due(self, now: float) -> bool:
        return self._next_report is not None and now >= self._next_report

    def report(self, now: float, wall: float, block: RtcpReportBlock | None) -> bytes:
        """Our next RTCP report, carrying ``block`` about the peer; schedules the one after.

        An SR once we have sent RTP, else an RR. ``wall`` is the Unix time for the
        SR's NTP timestamp; ``now`` the monotonic clock the schedule runs on.
        """
        self._next_report = now + self._report_delay()
        stream = self._stream
        if not stream.packets_sent:
            return build_receiver_report(stream.ssrc, block)
        # The timestamp of the frame just sent, taken at the same instant as the NTP time.
        rtp_ts = (stream.timestamp - FRAME_SAMPLES) & 0xFFFF_FFFF
        return build_sender_report(
            stream.ssrc, ntp_timestamp(wall), rtp_ts, stream.packets_sent, stream.octets_sent, block
        )

    def receive_report(self, block: RtcpReportBlock, wall: float) -> None:
        """Read our round-trip time from a peer's report block about our stream (RFC 3550 6.4.1)."""
        if block.ssrc != self._stream.ssrc or not block.lsr:
            return
        # now - LSR - DLSR, all in 1/65536 s; a "negative" result is a clock step, not an RTT.
        rtt = (ntp_middle32(ntp_timestamp(wall)) - block.lsr - block.dlsr) & 0xFFFF_FFFF
        if rtt < 0x8000_0000:
            self._rtt = rtt / 65536

    def bye(self) -> bytes:
        return build_bye(self._stream.ssrc)
