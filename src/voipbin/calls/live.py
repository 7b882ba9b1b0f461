"""One call in progress: its SIP leg, its database record and events, and the flow it runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voipbin.calls import records
from voipbin.calls.context import CallContext
from voipbin.calls.errors import RecordingError
from voipbin.calls.recording import CallRecording, RecordingOptions
from voipbin.core.egress import EgressBlocked
from voipbin.core.ids import new_id
from voipbin.flows.actions import Action
from voipbin.media.endpoint import RtpEndpoint
from voipbin.sip.ua import CallState, SipCall
from voipbin.store.models import Call, Recording

if TYPE_CHECKING:
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
# What a live call reports to whoever keeps the live calls: it was answered; it has ended.
Answered = Callable[["LiveCall"], None]
HungUp = Callable[["LiveCall"], Awaitable[None]]


@dataclass(eq=False)
class CallChain:
    """Calls that caused one another: a flow's connect legs, and calls of ours that reached us
    again through SIP. Bounded as a whole, so a number whose flow calls itself cannot multiply."""

    id: str = field(default_factory=new_id)
    call_ids: set[str] = field(default_factory=set)


class LiveCall:
    """Keeps a Call row in step with its SIP leg, in order, and runs its flow once answered."""

    def __init__(
        self, ctx: CallContext, row: Call, actions: Sequence[Action], on_answered: Answered, on_hangup: HungUp
    ) -> None:
        self.ctx = ctx
        self._on_answered = on_answered
        self._on_hangup = on_hangup
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
        self.chain = CallChain()
        self.chain.call_ids.add(self.id)
        # Max-Forwards of the INVITE that brought the call (legs it causes carry one less).
        self.hops_left = 70
        self._time_limit: asyncio.TimerHandle | None = None
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
        except EgressBlocked as refusal:
            log.info("call %s not dialled: %s", self.id, refusal)
            await self._record(CallState.HANGUP, by="local", reason="failed")
            return
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
            await self._record(state, by=self.sip.hangup_by, reason=self.sip.hangup_reason, cause=self.sip.hangup_cause)
            if state is CallState.PROGRESSING:
                self._limit_duration()
                self._on_answered(self)
            if state is CallState.HANGUP:
                return

    async def hangup(self, reason: str = "normal", cause: str = "") -> None:
        if self.sip is not None:
            await self.sip.hangup(reason, cause)

    def join_chain(self, chain: CallChain) -> None:
        self.chain.call_ids.discard(self.id)
        self.chain = chain
        chain.call_ids.add(self.id)

    def _limit_duration(self) -> None:
        """However long a flow sleeps or a bridge lasts, the call ends at the platform's maximum."""
        limit = self.ctx.settings.max_call_duration_s
        if limit > 0 and self._time_limit is None:
            self._time_limit = asyncio.get_running_loop().call_later(
                limit, lambda: self.ctx.spawn(self.hangup("timeout", "max_duration"))
            )

    async def start_recording(self, options: RecordingOptions) -> Recording:
        """Record the call until stopped, a limit, or hangup; one recording at a time."""
        endpoint = self.endpoint
        if endpoint is None:
            raise RecordingError(f"Call {self.id} has no media to record.", "CALL_STATE_INVALID")
        if self.recording is not None:
            raise RecordingError(f"Call {self.id} is already being recorded.", "RECORDING_ALREADY_ACTIVE")
        activeflow_id = self.runner.id if self.runner else ""
        recording = CallRecording(self.ctx, self.id, self.customer_id, options, activeflow_id, self._recording_stopped)
        self.recording = recording
        try:
            await recording.start(endpoint)
        except BaseException:
            await recording.stop()
            raise
        return recording.row

    async def stop_recording(self) -> None:
        if self.recording is not None:
            await self.recording.stop()

    def _recording_stopped(self, recording: CallRecording) -> None:
        if self.recording is recording:  # stopped by a limit, or by us: the call may record again
            self.recording = None

    async def _record(self, state: CallState, by: str, reason: str, cause: str = "") -> None:
        if self.status is CallState.HANGUP:
            return
        self.status = state
        now = self.ctx.clock.now()
        values: dict[str, Any] = {"status": state.value}
        if state is CallState.RINGING:
            values["tm_ringing"] = now
        elif state is CallState.PROGRESSING:
            values["tm_progressing"] = now
            self.answered.set()
        elif state is CallState.HANGUP:
            values.update(tm_hangup=now, hangup_by=by, hangup_reason=reason or "normal", action={})
            if cause:  # what VoIPBIN's reasons cannot say: media_timeout, session_expired...
                values["call_metadata"] = {"hangup_cause": cause}
        event = EVENT_FOR_STATE.get(state)
        await records.change(self.ctx.store, Call, self.id, event, **values)
        if state is CallState.HANGUP:
            if self._time_limit is not None:
                self._time_limit.cancel()
            self.chain.call_ids.discard(self.id)
            await self._on_hangup(self)
            self.ended.set()
