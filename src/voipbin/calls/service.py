"""The calls service: the one front door to calls, groupcalls, their flows, recordings and speakings.

The API and feature packages (conferences, queues, AI) place and drive calls only through
``CallService``; it keeps the registries of live calls and speakings, and refuses what it cannot
do with a :class:`CallError` that names the API's reason and HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.accounts.defaults import ADMIN_USERNAME, default_password_in_use
from voipbin.calls import inbound, records
from voipbin.calls.addresses import Destination, check_source, display_name, resolve_destination, trunk_caller
from voipbin.calls.context import (
    AiTalkRefused,
    AiTalkRequest,
    AiTalkResult,
    CallContext,
    ConferenceJoinRequest,
    ConferenceRefused,
    SummaryRefused,
    SummaryRequest,
)
from voipbin.calls.detached import DetachedFlows, TooManyFlows
from voipbin.calls.errors import CallError, CallRequestError, CallStateError, RecordingError
from voipbin.calls.links import LINK_HEADER, ConferenceLink
from voipbin.calls.live import CallChain, LiveCall
from voipbin.calls.recording import RecordingOptions
from voipbin.calls.runner import FlowRunner, prefetch_greeting
from voipbin.calls.speaking import SpeakingSession
from voipbin.core.egress import EgressBlocked
from voipbin.core.ids import new_id
from voipbin.flows.actions import Action, FlowError, parse_actions
from voipbin.flows.engine import CallHungUp
from voipbin.media.endpoint import bridge
from voipbin.sip.location import Binding
from voipbin.sip.message import Address, Request
from voipbin.sip.ua import CallState, SipCall
from voipbin.sip.uri import SipUri, escape_user
from voipbin.speech.stt import SttError
from voipbin.speech.tts import TtsError
from voipbin.store.models import Activeflow, Call, Flow, Groupcall, Provider, Recording, Speaking, Transcribe
from voipbin.views import announce

# AiTalk*: what a feature package taking over a call (ai_talk) is handed and hands back;
# Summary*: what an ai_summary asks of the AI package; Conference*: what conference_join asks of conferences.
__all__ = [
    "AiTalkRefused", "AiTalkRequest", "AiTalkResult", "CallError", "CallRequestError", "CallService",
    "CallStateError", "ConferenceJoinRequest", "ConferenceRefused", "Placed", "RecordingError", "RecordingOptions",
    "SummaryRefused", "SummaryRequest",
]  # fmt: skip

log = logging.getLogger(__name__)

LIVE_STATES = ("dialing", "ringing", "progressing", "terminating", "canceling")
# Carries a call's chain on the INVITEs of the legs it causes (see calls.live.CallChain).
CHAIN_HEADER = "X-Voipbin-Chain"
DEFAULT_MAX_FORWARDS = 70
HANGUP_WAIT_S = 15


@dataclass(frozen=True)
class Placed:
    calls: list[Call]
    groupcalls: list[Groupcall]


class CallService:
    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.live: dict[str, LiveCall] = {}
        self.speakings: dict[str, SpeakingSession] = {}
        self.detached = DetachedFlows(ctx)
        # Chains of live calls by id (a chain goes once its last call does), for calls that come back.
        self._chains: weakref.WeakValueDictionary[str, CallChain] = weakref.WeakValueDictionary()

    async def stop(self) -> None:
        """Hang up every live call (their tasks, in the context's background, then end)."""
        await asyncio.gather(*(live.hangup("normal") for live in list(self.live.values())), return_exceptions=True)
        await self.detached.stop_all()

    async def end_calls_of(self, node_ids: list[str]) -> None:
        """Calls of nodes that died cannot go on: record them as ended (failed)."""
        store = self.ctx.store
        async with store.session() as session:
            stuck_ids = (await session.scalars(
                select(Call.id).where(Call.status.in_(LIVE_STATES), Call.node_id.in_(node_ids))
            )).all()
            open_groups = await session.scalar(
                select(func.count()).select_from(Groupcall).where(Groupcall.status != "hangup", Groupcall.node_id.in_(node_ids))
            )
        if not stuck_ids and not open_groups:
            return  # the usual case, checked on every heartbeat: no write
        now = self.ctx.clock.now()
        async with store.transaction() as tx:
            stuck = (await tx.session.scalars(select(Call).where(Call.id.in_(stuck_ids), Call.status.in_(LIVE_STATES)))).all()
            for call in stuck:
                call.status, call.hangup_by, call.hangup_reason = "hangup", "local", "failed"
                call.tm_hangup = call.tm_update = now
                announce(tx, call, "call_hangup")
            await tx.session.execute(
                update(Groupcall)
                .where(Groupcall.status != "hangup", Groupcall.node_id.in_(node_ids))
                .values(status="hangup", tm_update=now)
            )
            await tx.session.execute(
                update(Transcribe)
                .where(Transcribe.status == "progressing", Transcribe.reference_id.in_(stuck_ids))
                .values(status="done", tm_update=now)
            )
            await tx.session.execute(
                update(Recording)
                .where(Recording.status != "ended", Recording.reference_id.in_(stuck_ids))
                .values(status="ended", tm_end=now, tm_update=now)
            )

    # -- calls -----------------------------------------------------------------------------------

    async def place(
        self,
        customer_id: str,
        source: dict[str, Any],
        destinations: list[dict[str, Any]],
        actions: Sequence[Action],
        flow_id: str = "",
    ) -> Placed:
        """Dial each destination; each call runs ``actions`` (or the flow ``flow_id``) once answered."""
        return await self._place(customer_id, source, destinations, tuple(actions), flow_id, None)

    async def hangup(self, call_id: str) -> bool:
        """Hang up a live call and wait for its end; False when it is not live here."""
        live = self.live.get(call_id)
        if live is None:
            return False
        await live.hangup("normal")
        await asyncio.wait_for(live.ended.wait(), HANGUP_WAIT_S)
        return True

    async def start_recording(self, call: Call, options: RecordingOptions) -> None:
        """Record a call in progress to a stereo WAV; one recording at a time."""
        await self._in_progress(call, "recorded").start_recording(options)

    async def stop_call_recording(self, call: Call) -> None:
        live = self._in_progress(call, "recorded")
        if live.recording is None:
            raise RecordingError(f"Call {call.id} is not being recorded.", "RECORDING_NOT_ACTIVE")
        await live.stop_recording()

    async def stop_recording(self, recording: Recording) -> None:
        """End this recording if its call is still recording it here."""
        live = self.live.get(recording.reference_id)
        if live is not None and live.recording is not None and live.recording.row.id == recording.id:
            await live.stop_recording()

    async def stop_activeflow(self, activeflow: Activeflow) -> None:
        """End a flow now (``POST /activeflows/{id}/stop``); its call stays up.

        A flow running here is stopped by its runner; any other is only marked ended, which is
        all VoIPBIN's flow-manager does (its call-manager then finds no next action to run).
        """
        live = self.live.get(activeflow.reference_id)
        if live is not None and live.runner is not None and live.runner.id == activeflow.id:
            await live.runner.stop()
        elif (detached := self.detached.running.get(activeflow.id)) is not None:
            await detached.stop()
        else:
            await records.change(
                self.ctx.store, Activeflow, activeflow.id, "activeflow_updated", status="ended", current_action={}
            )

    async def ensure_transcribe(self, customer_id: str, call_id: str, language: str) -> str:
        """The id of the live call's transcription (both directions), started now if it has none."""
        live = self.live.get(call_id)
        if live is None or live.customer_id != customer_id or live.status is not CallState.PROGRESSING:
            raise CallStateError(f"Call {call_id} is not in progress on this node; only a live call can be transcribed.")
        if live.runner is None:
            raise CallStateError(f"Call {call_id} runs no flow to transcribe it.")
        try:
            return (await live.runner.ensure_transcribe(language)).row.id
        except SttError as error:
            raise CallError(str(error), "UNSUPPORTED_LANGUAGE") from None

    async def start_flow(
        self, customer_id: str, flow_id: str, variables: dict[str, str], reference: tuple[str, str]
    ) -> str:
        """Run the customer's flow without a call (calls.detached); the activeflow's id."""
        async with self.ctx.store.session() as session:
            actions = await self._flow_actions(session, customer_id, flow_id)
        try:
            return await self.detached.start(customer_id, flow_id, actions, variables, reference)
        except TooManyFlows as error:
            raise CallError(str(error), "TOO_MANY_FLOWS", 429) from None

    def _in_progress(self, call: Call, doing: str) -> LiveCall:
        live = self.live.get(call.id)
        if live is None or live.customer_id != call.customer_id or live.status is not CallState.PROGRESSING:
            raise CallStateError(f"Call {call.id} is {call.status}; only a call in progress can be {doing}.")
        return live

    # -- speakings -------------------------------------------------------------------------------

    async def open_speaking(
        self, customer_id: str, call_id: str, language: str, provider: str, voice_id: str, direction: str
    ) -> Speaking:
        """A TTS stream into an answered call; text is queued with :meth:`say`."""
        live = self.live.get(call_id)
        if live is None or live.customer_id != customer_id or live.status is not CallState.PROGRESSING:
            raise CallStateError(
                f"Call {call_id} is not in progress; a speaking needs an answered call (status progressing)."
            )
        session = SpeakingSession(self.ctx, live, language, provider, voice_id, direction)
        try:
            await session.start()
        except TtsError as error:
            raise CallError(str(error), "TTS_PROVIDER_UNAVAILABLE") from None
        self.speakings[session.row.id] = session
        live.speakings.append(session)
        return session.row

    def say(self, speaking: Speaking, text: str) -> Speaking:
        session = self._active_speaking(speaking)
        try:
            session.say(text)
        except asyncio.QueueFull:
            raise CallError("Too much text is waiting; flush or wait before saying more.", "SPEAKING_QUEUE_FULL", 429) from None
        return session.row

    def flush_speaking(self, speaking: Speaking) -> Speaking:
        """Drop queued text; what is being spoken finishes."""
        session = self._active_speaking(speaking)
        session.flush()
        return session.row

    def interrupt_speaking(self, speaking: Speaking) -> Speaking:
        """Cut off the current speech now, and drop the queue."""
        session = self._active_speaking(speaking)
        session.interrupt()
        return session.row

    async def close_speaking(self, speaking: Speaking) -> None:
        """End the stream for good, if it runs here."""
        session = self.speakings.pop(speaking.id, None)
        if session is not None:
            await session.stop()

    def _active_speaking(self, speaking: Speaking) -> SpeakingSession:
        session = self.speakings.get(speaking.id)
        if session is None or not session.active:
            raise CallStateError(
                f"Speaking {speaking.id} is {speaking.status}; open a new one on a call in progress.", "SPEAKING_STOPPED"
            )
        return session

    # -- placing calls ---------------------------------------------------------------------------

    async def _place(
        self,
        customer_id: str,
        source: dict[str, Any],
        destinations: list[dict[str, Any]],
        actions: tuple[Action, ...],
        flow_id: str,
        master: LiveCall | None,
    ) -> Placed:
        """With ``master``, the calls are legs a flow's connect bridges to that call (they run no
        flow, and their caller id may be the master's caller)."""
        if not destinations:
            raise CallRequestError("destinations must list at least one address to call.")
        async with self.ctx.store.session() as session:
            caller = source if master is not None else await check_source(session, customer_id, source)
            targets = [await resolve_destination(session, customer_id, i, d) for i, d in enumerate(destinations)]
            await self._check_room(session, customer_id, len(targets), master)
            for target in targets:
                if target.sip_uri and (problem := self.ctx.egress.literal_problem(SipUri.parse(target.sip_uri).host)):
                    raise CallRequestError(problem, "SIP_TARGET_REFUSED")
            trunk_identity = None
            if any(target.provider is not None for target in targets):
                await self._check_trunk_open()
                trunk_identity = await trunk_caller(session, customer_id, caller, master.destination if master else None)
            if flow_id:
                actions = await self._flow_actions(session, customer_id, flow_id)
        placed = Placed([], [])
        for target in targets:
            if target.kind == "extension":
                placed.groupcalls.append(await self._ring_extension(customer_id, caller, target, actions, flow_id, master))
            else:
                shown = trunk_identity if target.provider is not None and trunk_identity else caller
                placed.calls.append(await self._dial(customer_id, shown, target, actions, flow_id, master))
        return placed

    async def _dial_legs(self, master: LiveCall, source: dict[str, Any], destinations: list[dict[str, Any]]) -> list[LiveCall]:
        """A connect's legs: dialled for ``master``, bridged to it by its flow, ending with it."""
        placed = await self._place(master.customer_id, source, destinations, (), "", master)
        ids = [c.id for c in placed.calls] + [i for g in placed.groupcalls for i in g.call_ids]
        return [self.live[i] for i in ids if i in self.live]

    async def _check_room(self, session: AsyncSession, customer_id: str, adding: int, master: LiveCall | None) -> None:
        """Refuse calls beyond the customer's, or the calling chain's, bound of live calls."""
        settings = self.ctx.settings
        if master is not None and master.hops_left <= 1:
            raise CallRequestError("This call has come through too many hops (Max-Forwards) to place another.", "CALL_CHAIN_LIMIT")
        if master is not None and len(master.chain.call_ids) + adding > settings.max_calls_per_chain:
            raise CallRequestError(
                f"This call already caused {len(master.chain.call_ids) - 1} others; a chain of calls holds at most "
                f"{settings.max_calls_per_chain} (does a flow call its own number?).",
                "CALL_CHAIN_LIMIT",
            )
        if await _live_calls_of(session, customer_id) + adding > settings.max_live_calls_per_customer:
            raise CallRequestError(
                f"Your account has {settings.max_live_calls_per_customer} live calls, its limit; hang some up first.",
                "CALL_LIMIT",
            )

    async def _check_trunk_open(self) -> None:
        if await default_password_in_use(self.ctx.store):
            raise CallRequestError(
                f"Calls to phone numbers are off while {ADMIN_USERNAME} has its published password "
                "(anyone could log in and place paid calls); the operator must change it first.",
                "DEFAULT_CREDENTIALS",
            )

    async def _flow_actions(self, session: AsyncSession, customer_id: str, flow_id: str) -> tuple[Action, ...]:
        flow = await session.scalar(
            select(Flow).where(Flow.id == flow_id, Flow.customer_id == customer_id, Flow.tm_delete.is_(None))
        )
        if flow is None:
            raise CallRequestError(f"flow_id {flow_id} is not a flow of your account.", "FLOW_NOT_FOUND")
        try:
            return parse_actions(flow.actions)
        except FlowError as error:
            raise CallRequestError(f"flow {flow_id} cannot run: {error.message}", "INVALID_ACTION") from None

    def _new_call(
        self, customer_id: str, caller: dict[str, Any], destination: dict[str, Any], flow_id: str,
        master: LiveCall | None, groupcall_id: str = "",
    ) -> Call:
        return Call(
            id=new_id(),
            customer_id=customer_id,
            flow_id=flow_id,
            type="flow",
            master_call_id=master.id if master else "",
            groupcall_id=groupcall_id,
            source=caller,
            destination=destination,
            status="dialing",
            direction="outgoing",
            node_id=self.ctx.node_id,
            tm_create=self.ctx.clock.now(),
        )

    async def _ring_extension(
        self, customer_id: str, caller: dict[str, Any], target: Destination, actions: tuple[Action, ...], flow_id: str,
        master: LiveCall | None,
    ) -> Groupcall:
        assert target.extension is not None
        extension = target.extension
        bindings: list[Binding | None] = [*self.ctx.registrations(customer_id, extension.extension)]
        group = Groupcall(
            id=new_id(),
            customer_id=customer_id,
            status="progressing",
            flow_id=flow_id,
            source=caller,
            destinations=[target.address],
            ring_method="ring_all",
            answer_method="hangup_others",
            node_id=self.ctx.node_id,
            tm_create=self.ctx.clock.now(),
        )
        destination = {**target.address, "target": extension.extension, "target_name": extension.name}
        # One call per registered phone; with none, one call that fails at once (VoIPBIN's way).
        phones = bindings or [None]
        calls = [self._new_call(customer_id, caller, destination, flow_id, master, group.id) for _ in phones]
        group.call_ids = [c.id for c in calls]
        group.call_count = len(calls)
        async with self.ctx.store.transaction() as tx:
            tx.session.add(group)
            announce(tx, group, "groupcall_created")
            for call in calls:
                tx.session.add(call)
                announce(tx, call, "call_created")
        callee = f"sip:{extension.extension}@{self.ctx.settings.registrar_domain(customer_id)}"
        hops = _onward(master)
        for call, binding in zip(calls, phones):
            dial_to = [binding] if binding is not None else []
            self._start(call, actions, master,
                        lambda b=dial_to: self.ctx.ua.call(b, self._caller_address(caller), callee, **hops))
        return group

    async def _dial(
        self, customer_id: str, caller: dict[str, Any], target: Destination, actions: tuple[Action, ...], flow_id: str,
        master: LiveCall | None,
    ) -> Call:
        call = self._new_call(customer_id, caller, target.address, flow_id, master)
        await records.add(self.ctx.store, call, "call_created")
        hops = _onward(master)
        self._start(call, actions, master, lambda: self._dial_uri(caller, target, hops))
        return call

    async def _dial_uri(self, caller: dict[str, Any], target: Destination, hops: dict[str, Any]) -> SipCall:
        if target.provider is not None:
            provider = target.provider
            number = target.address["target"]
            uri = f"sip:{provider.tech_prefix}{number}{provider.tech_postfix}@{provider.hostname}:{provider.port}"
            peer = (provider.transport, await _resolve(provider.hostname), provider.port)
            auth = (provider.username, provider.password) if provider.username else None
        else:
            parsed = SipUri.parse(target.sip_uri)
            uri = target.sip_uri
            peer = (parsed.transport or "udp", await self._sip_destination(parsed), parsed.port or 5060)
            auth = None
        binding = Binding(customer_id="", extension="", contact=uri, source=peer, expires_at=float("inf"))
        return await self.ctx.ua.call([binding], self._caller_address(caller), uri, auth=auth, **hops)

    async def _sip_destination(self, uri: SipUri) -> str:
        """The address a customer's ``sip:`` destination may be called at: a permitted one, not a trunk's."""
        kind = socket.SOCK_STREAM if uri.transport == "tcp" else socket.SOCK_DGRAM
        address = (await self.ctx.egress.resolve(uri.host, uri.port or 5060, kind))[0]
        async with self.ctx.store.session() as session:
            trunks = (await session.scalars(select(Provider.hostname).where(Provider.tm_delete.is_(None)))).all()
        for host in trunks:
            with contextlib.suppress(OSError):
                if address == await _resolve(host):
                    raise EgressBlocked(f"{uri.host} is a trunk of this platform; call phone numbers as 'tel' destinations")
        return address

    def _caller_address(self, caller: dict[str, Any]) -> Address:
        user = escape_user(caller.get("target") or "anonymous")
        name = display_name(caller.get("name") or caller.get("target_name") or "")
        return Address(f"sip:{user}@{self.ctx.settings.domain}", name)

    def _start(self, call: Call, actions: tuple[Action, ...], master: LiveCall | None, dial: Any) -> None:
        live = self._live_call(call, actions)
        if master is not None:  # a connect's leg, bridged to its master and ending with it
            live.master = master
            live.hops_left = master.hops_left - 1
            live.join_chain(master.chain)
            master.children.append(live)
        self._chains[live.chain.id] = live.chain
        self.live[call.id] = live
        self.ctx.spawn(live.run(dial))

    def _live_call(self, call: Call, actions: Sequence[Action]) -> LiveCall:
        prefetch_greeting(self.ctx.tts, actions)
        return LiveCall(self.ctx, call, actions, self._on_answered, self._on_hangup)

    # -- incoming calls ----------------------------------------------------------------------------

    async def incoming(self, leg: SipCall, request: Request) -> None:
        """A call to us: run what its route says (``calls.inbound``), within the platform's bounds."""
        if (token := request.headers.get(LINK_HEADER)) is not None:
            await self._linked_participant(leg, token)
            return
        route = await inbound.route(self.ctx, leg.identity, request.from_addr, unquote(request.sip_uri.user or ""))
        if route is None:
            leg.reject(404, "No Such Number")
            return
        call, actions = route
        settings = self.ctx.settings
        chain = self._chains.get(request.headers.get(CHAIN_HEADER) or "")
        if chain is not None and len(chain.call_ids) >= settings.max_calls_per_chain:
            leg.reject(482, "Loop Detected")  # a flow calling its own number, round and round
            return
        async with self.ctx.store.session() as session:
            busy = await _live_calls_of(session, call.customer_id) >= settings.max_live_calls_per_customer
        if busy:
            leg.reject(486, "Busy Here")
            return
        await records.add(self.ctx.store, call, "call_created")
        live = self._live_call(call, actions)
        live.hops_left = request.max_forwards if request.max_forwards is not None else DEFAULT_MAX_FORWARDS
        if chain is not None:
            live.join_chain(chain)
        self._chains[live.chain.id] = live.chain
        live.status, live.sip = CallState.RINGING, leg
        self.live[call.id] = live
        self._start_flow(live)

        async def take_leg() -> SipCall:
            return leg

        await live.run(take_leg)

    # -- conferences mixed on other nodes (calls.links) ---------------------------------------------

    async def join_conference_on(self, request: ConferenceJoinRequest, node_id: str) -> bool:
        """Take a live call of this node into a conference mixed on node ``node_id``: a SIP leg to
        that node, bridged to the call until the participant leaves. False when it never joined."""
        live = self.live.get(request.call_id)
        address = await self.ctx.node_sip_address(node_id)
        if live is None or live.endpoint is None or address is None:
            return False
        host, port = address.rsplit(":", 1)
        uri = f"sip:conference@{host}:{port}"
        binding = Binding(customer_id="", extension="", contact=uri, source=("udp", await _resolve(host), int(port)),
                          expires_at=float("inf"))  # fmt: skip
        link = ConferenceLink(request.customer_id, request.conference_id, request.call_id, request.activeflow_id,
                              {name: bool(value) for name, value in request.options.items()})  # fmt: skip
        hops = _onward(live)
        headers = [*hops.pop("headers"), (LINK_HEADER, self.ctx.links.sign(link))]
        leg = await self.ctx.ua.call([binding], self._caller_address(live.source), uri, headers=headers, **hops)
        try:
            if not await _answered(leg):
                return False
            joined = bridge(live.endpoint, leg.endpoint)
            try:
                await leg.ended.wait()
            finally:
                joined.close()
        finally:
            if not leg.ended.is_set():  # the caller hung up, or its flow moved on
                self.ctx.spawn(leg.hangup("normal"))
        return True

    async def _linked_participant(self, leg: SipCall, token: str) -> None:
        """A call of another node joining a conference mixed here: a participant, with no flow of its own."""
        link = self.ctx.links.verify(token)
        if link is None:
            leg.reject(403, "Invalid Conference Link")
            return
        request = ConferenceJoinRequest(link.call_id, link.customer_id, link.activeflow_id, leg.endpoint,
                                        link.conference_id, dict(link.options))  # fmt: skip
        try:
            seat = await self.ctx.conference_join(request)
        except ConferenceRefused as refusal:
            log.info("call %s of another node did not join: %s", link.call_id, refusal)
            leg.reject(480, "Conference Unavailable")
            return
        await leg.answer()
        attending = asyncio.ensure_future(seat.attend())
        hung_up = asyncio.ensure_future(leg.ended.wait())
        try:
            await asyncio.wait([attending, hung_up], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (attending, hung_up):
                waiter.cancel()
            await asyncio.gather(attending, hung_up, return_exceptions=True)
        if not leg.ended.is_set():
            await leg.hangup("normal")

    # -- what live calls report ------------------------------------------------------------------

    def _on_answered(self, live: LiveCall) -> None:
        if live.groupcall_id:
            self.ctx.spawn(self._groupcall_answered(live))
        if live.runner is None and live.master is None:  # a connect's leg is bridged, not flowed
            self._start_flow(live)

    def _start_flow(self, live: LiveCall) -> None:
        live.runner = FlowRunner(self.ctx, live, live.flow_id, self._dial_legs)
        self.ctx.spawn(live.runner.run())

    async def _on_hangup(self, live: LiveCall) -> None:
        self.live.pop(live.id, None)
        if live.runner is not None:
            live.runner.post(CallHungUp())
        for speaking in live.speakings:
            self.speakings.pop(speaking.row.id, None)
            await speaking.stop()
        await live.stop_recording()
        for child in live.children:  # legs connected to this call end with it
            self.ctx.spawn(child.hangup("normal"))
        if live.groupcall_id:
            await self._groupcall_maybe_over(live.groupcall_id)

    async def _groupcall_answered(self, live: LiveCall) -> None:
        group = await records.change(self.ctx.store, Groupcall, live.groupcall_id, None, answer_call_id=live.id)
        if group is None:
            return
        # answer_method hangup_others: the other phones stop ringing.
        others = [self.live[c] for c in group.call_ids if c != live.id and c in self.live]
        await asyncio.gather(*(other.hangup("normal") for other in others), return_exceptions=True)

    async def _groupcall_maybe_over(self, groupcall_id: str) -> None:
        async with self.ctx.store.session() as session:
            group = await session.get(Groupcall, groupcall_id)
        if group is None or group.status == "hangup" or any(c in self.live for c in group.call_ids):
            return
        await records.change(self.ctx.store, Groupcall, groupcall_id, "groupcall_hangup", status="hangup")


async def _answered(leg: SipCall) -> bool:
    """Wait for an outgoing leg to answer; False when it ended first."""
    waiters = [asyncio.ensure_future(leg.answered.wait()), asyncio.ensure_future(leg.ended.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return leg.answered.is_set() and not leg.ended.is_set()


def _onward(master: LiveCall | None) -> dict[str, Any]:
    """What a leg placed for ``master`` tells the next hop: the hops left, and the chain it
    belongs to, so that a call which comes back to us joins its chain (and its bound)."""
    if master is None:
        return {}
    return {"max_forwards": master.hops_left - 1, "headers": [(CHAIN_HEADER, master.chain.id)]}


async def _live_calls_of(session: AsyncSession, customer_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Call).where(Call.customer_id == customer_id, Call.status.in_(LIVE_STATES))
    )
    return int(count or 0)


async def _resolve(host: str) -> str:
    """An IP for a trunk's host name (RTP and SIP sockets need addresses)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])
