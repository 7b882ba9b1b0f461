"""One call in progress: its SIP leg, its database record and events, and the flow it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from voipbin.calls import records
from voipbin.calls.recording import CallRecording, RecordingError, RecordingOptions
from voipbin.media.endpoint import RtpEndpoint
from voipbin.sip.ua import CallState, SipCall
from voipbin.store.models import Call, Recording

if TYPE_CHECKING:
    from voipbin.calls.manager import CallManager
    from voipbin.calls.runner import FlowRunner
    from voipbin.calls.speaking import SpeakingSession

log = logging.getLogger(__name__)

EVENT_FOR_STATE = {
    CallState.RINGING: "call_ringing",
    CallState.PROGRESSING: "call_progressing",
    CallState.TERMINATING: "call_terminating",
    CallState.CANCELING: "call_canceling",
    CallState.HANGUP: "call_hangup",
}

Dial = Callable[[], Awaitable[SipCall]]


class LiveCall:
    """Keeps a Call row in step with its SIP leg, in order, and runs its flow once answered."""

    def __init__(self, manager: CallManager, row: Call, actions: list[dict[str, Any]]) -> None:
        self.manager = manager
        self.id = row.id
        self.customer_id = row.customer_id
        self.groupcall_id = row.groupcall_id
        self.source = dict(row.source)
        self.destination = dict(row.destination)
        self.direction = row.direction
        self.actions = actions
        self.flow_id = row.flow_id
        self.runner: FlowRunner | None = None
        self.speakings: list[SpeakingSession] = []
        self.recording: CallRecording | None = None
        # connect: the call whose flow dialled this one, and the legs this call's flow dialled.
        self.master: LiveCall | None = None
        self.children: list[LiveCall] = []
        self.answered = asyncio.Event()
        self.sip: SipCall | None = None
        self.status = CallState.DIALING
        self.ended = asyncio.Event()
        self._changes: asyncio.Queue[CallState] = asyncio.Queue()

    @property
    def endpoint(self) -> RtpEndpoint | None:
        return self.sip.endpoint if self.sip else None

    async def run(self, dial: Dial) -> None:
        """Dial (or take an answered incoming leg), follow it to the end, and record the end."""
        try:
            self.sip = await dial()
        except Exception:
            log.exception("dialling call %s failed", self.id)
            await self._record(CallState.HANGUP, by="local", reason="failed")
            return
        self.sip.listeners.append(lambda leg: self._changes.put_nowait(leg.state))
        self._changes.put_nowait(self.sip.state)
        while True:
            state = await self._changes.get()
            if state is self.status and state is not CallState.HANGUP:
                continue
            await self._record(state, by=self.sip.hangup_by, reason=self.sip.hangup_reason)
            if state is CallState.PROGRESSING:
                self.manager.on_answered(self)
            if state is CallState.HANGUP:
                return

    async def hangup(self, reason: str = "normal") -> None:
        if self.sip is not None:
            await self.sip.hangup(reason)

    async def start_recording(self, options: RecordingOptions) -> Recording:
        """Record the call until stopped, a limit, or hangup; one recording at a time."""
        endpoint = self.endpoint
        if endpoint is None:
            raise RecordingError(f"Call {self.id} has no media to record.", "CALL_STATE_INVALID")
        if self.recording is not None:
            raise RecordingError(f"Call {self.id} is already being recorded.", "RECORDING_ALREADY_ACTIVE")
        recording = self.recording = CallRecording(self, options, self.runner.id if self.runner else "")
        try:
            await recording.start(endpoint)
        except BaseException:
            await recording.stop()
            raise
        return recording.row

    async def stop_recording(self) -> None:
        if self.recording is not None:
            await self.recording.stop()

    async def _record(self, state: CallState, by: str, reason: str) -> None:
        if self.status is CallState.HANGUP:
            return
        self.status = state
        now = self.manager.clock.now()
        values: dict[str, Any] = {"status": state.value}
        if state is CallState.RINGING:
            values["tm_ringing"] = now
        elif state is CallState.PROGRESSING:
            values["tm_progressing"] = now
            self.answered.set()
        elif state is CallState.HANGUP:
            values.update(tm_hangup=now, hangup_by=by, hangup_reason=reason or "normal", action={})
        event = EVENT_FOR_STATE.get(state)
        await records.change(self.manager.store, Call, self.id, event, **values)
        if state is CallState.HANGUP:
            await self.manager.on_hangup(self)
            self.ended.set()

    async def set_action(self, action: dict[str, Any]) -> None:
        """The flow moved on: the call's current action, announced as call_updated."""
        with contextlib.suppress(Exception):
            await records.change(self.manager.store, Call, self.id, "call_updated", action=action)
