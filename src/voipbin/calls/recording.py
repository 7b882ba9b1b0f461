"""Call recordings: a live call's audio to a stereo WAV, its Recording row, and its events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from voipbin.calls.context import CallContext
from voipbin.core.ids import new_id
from voipbin.media.recorder import SAMPLE_RATE_8K, WavRecorder
from voipbin.store.models import Call, Recording
from voipbin.views import announce

if TYPE_CHECKING:
    from voipbin.media.endpoint import RtpEndpoint

SILENCE_LEVEL = 256
"""Mean absolute sample value under which a 20 ms frame counts as silence (Asterisk's default threshold)."""
FRAME_MS = 20


@dataclass(frozen=True)
class RecordingOptions:
    """recording_start's options (the flow action's and the API's); durations in seconds, 0 = no limit."""

    format: str = "wav"
    end_of_silence: int = 0
    end_of_key: str = ""
    duration: int = 0
    beep_start: bool = False
    on_end_flow_id: str = ""

    @classmethod
    def from_action(cls, options: Mapping[str, Any]) -> RecordingOptions:
        names = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in options.items() if name in names})

    def ends_on(self, digit: str) -> bool:
        return self.end_of_key == "any" or (self.end_of_key not in ("", "none") and digit == self.end_of_key)


class CallRecording:
    """One recording of one call, from :meth:`start` until :meth:`stop` or one of its limits."""

    def __init__(
        self, ctx: CallContext, call_id: str, customer_id: str, options: RecordingOptions, activeflow_id: str,
        on_stopped: Callable[[CallRecording], None],
    ) -> None:
        self.ctx = ctx
        self.call_id = call_id
        self.options = options
        self._on_stopped = on_stopped
        now = ctx.clock.now()
        recording_id = new_id()
        self.row = Recording(
            id=recording_id,
            customer_id=customer_id,
            activeflow_id=activeflow_id,
            reference_type="call",
            reference_id=call_id,
            status="recording",
            format=options.format,
            recording_name=f"call_{call_id}_{now:%Y-%m-%dT%H:%M:%S}",
            filenames=[f"{recording_id}.wav"],
            on_end_flow_id=options.on_end_flow_id,
            tm_start=now,
            tm_create=now,
        )
        self._recorder: WavRecorder | None = None
        self._undo: list[Callable[[], None]] = []
        self._silent_ms = 0
        self.stopped = False

    async def start(self, endpoint: RtpEndpoint) -> None:
        path = self.ctx.files.recording(self.row)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._recorder = WavRecorder(path, "stereo")
        self._recorder.attach(endpoint)
        self._watch_limits(endpoint)
        if self.options.beep_start:
            endpoint.play(_beep())
        async with self.ctx.store.transaction() as tx:
            tx.session.add(self.row)
            announce(tx, self.row, "recording_started")
            call = await tx.session.get(Call, self.call_id)
            if call is not None:
                call.recording_id = self.row.id
                call.recording_ids = [*call.recording_ids, self.row.id]
                call.tm_update = tx.clock.now()
        if self.stopped:  # stopped (the call hung up) before the row existed to record it
            await self._record_end()

    async def stop(self) -> None:
        """Close the file and record the end (status ended); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self._on_stopped(self)
        for undo in self._undo:
            undo()
        if self._recorder is not None:
            self._recorder.close()
        await self._record_end()

    async def _record_end(self) -> None:
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(Recording, self.row.id)
            if row is not None and row.status != "ended":
                row.status, row.tm_end = "ended", tx.clock.now()
                row.tm_update = row.tm_end
                announce(tx, row, "recording_finished")
                self.row = row
            call = await tx.session.get(Call, self.call_id)
            if call is not None and call.recording_id == self.row.id:
                call.recording_id = ""  # VoIPBIN clears it once the recording is over; recording_ids keeps it
                call.tm_update = tx.clock.now()

    def _watch_limits(self, endpoint: RtpEndpoint) -> None:
        options = self.options
        if options.duration > 0:
            timer = asyncio.get_running_loop().call_later(options.duration, self._stop_soon)
            self._undo.append(timer.cancel)
        if options.end_of_silence > 0:
            self._undo.append(endpoint.add_tap("in", self._on_heard))
        if options.end_of_key not in ("", "none"):
            self._chain_dtmf(endpoint)

    def _chain_dtmf(self, endpoint: RtpEndpoint) -> None:
        # The endpoint has one DTMF callback (the flow's); keys still reach it, and end the recording too.
        previous = endpoint.on_dtmf

        def on_key(digit: str) -> None:
            if previous is not None:
                previous(digit)
            if self.options.ends_on(digit):
                self._stop_soon()

        def restore() -> None:
            if endpoint.on_dtmf is on_key:
                endpoint.on_dtmf = previous

        endpoint.on_dtmf = on_key
        self._undo.append(restore)

    def _on_heard(self, pcm: bytes) -> None:
        quiet = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)).mean() < SILENCE_LEVEL
        self._silent_ms = self._silent_ms + FRAME_MS if quiet else 0
        if self._silent_ms >= self.options.end_of_silence * 1000:
            self._stop_soon()

    def _stop_soon(self) -> None:
        """A limit was reached (in a timer or media callback): stop from a task."""
        if not self.stopped:
            self.ctx.spawn(self.stop())


def _beep(seconds: float = 0.25, frequency: float = 1000.0) -> bytes:
    t = np.arange(int(SAMPLE_RATE_8K * seconds)) / SAMPLE_RATE_8K
    return (np.sin(2 * np.pi * frequency * t) * 0.3 * 32767).astype("<i2").tobytes()
