"""Placing, tracking and ending calls: VoIPBIN's calls and groupcalls on our SIP user agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sqlalchemy import func, or_, select, update

from voipbin.accounts.defaults import ADMIN_USERNAME, default_password_in_use
from voipbin.calls import records
from voipbin.calls.addresses import (
    CallRequestError,
    Destination,
    check_source,
    display_name,
    resolve_destination,
    trunk_caller,
)
from voipbin.calls.live import CallChain, LiveCall
from voipbin.calls.runner import FlowRunner
from voipbin.calls.speaking import SpeakingSession
from voipbin.core.egress import EgressBlocked
from voipbin.core.ids import new_id
from voipbin.core.phone import is_e164
from voipbin.flows.engine import CallHungUp
from voipbin.sip.location import Binding
from voipbin.sip.message import Address, Request
from voipbin.sip.ua import CallState, SipCall
from voipbin.sip.uri import SipUri, escape_user
from voipbin.store.models import Activeflow, Call, Extension, Flow, Groupcall, Number, Provider, Recording
from voipbin.views import announce

if TYPE_CHECKING:
    from voipbin.runtime import Platform

log = logging.getLogger(__name__)

LIVE_STATES = ("dialing", "ringing", "progressing", "terminating", "canceling")
# Carries a call's chain on the INVITEs of the legs it causes (see calls.live.CallChain).
CHAIN_HEADER = "X-Voipbin-Chain"
DEFAULT_MAX_FORWARDS = 70


@dataclass(frozen=True)
class Placed:
    calls: list[Call]
    groupcalls: list[Groupcall]


class CallManager:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = platform.store
        self.clock = platform.clock
        self.live: dict[str, LiveCall] = {}
        self.speakings: dict[str, SpeakingSession] = {}
        # Chains of live calls by id (a chain goes once its last call does), for calls that come back.
        self._chains: weakref.WeakValueDictionary[str, CallChain] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def node_id(self) -> str:
        return self.platform.nodes.id

    async def end_calls_of(self, node_ids: list[str]) -> None:
        """Calls of nodes that died cannot go on: record them as ended (failed)."""
        async with self.store.session() as session:
            stuck_ids = (await session.scalars(
                select(Call.id).where(Call.status.in_(LIVE_STATES), Call.node_id.in_(node_ids))
            )).all()
            open_groups = await session.scalar(
                select(func.count()).select_from(Groupcall).where(Groupcall.status != "hangup", Groupcall.node_id.in_(node_ids))
            )
        if not stuck_ids and not open_groups:
            return  # the usual case, checked on every heartbeat: no write
        now = self.clock.now()
        async with self.store.transaction() as tx:
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
                update(Recording)
                .where(Recording.status != "ended", Recording.reference_id.in_(stuck_ids))
                .values(status="ended", tm_end=now, tm_update=now)
            )

    async def stop(self) -> None:
        await asyncio.gather(*(live.hangup("normal") for live in list(self.live.values())), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- placing calls ---------------------------------------------------------------------

    async def place(
        self,
        customer_id: str,
        source: dict[str, Any],
        destinations: list[dict[str, Any]],
        actions: list[dict[str, Any]],
        flow_id: str = "",
        master: LiveCall | None = None,
    ) -> Placed:
        """Dial each destination; with ``master``, the calls are legs a flow's connect bridges
        to that call (they run no flow, and their caller id may be the master's caller)."""
        if not destinations:
            raise CallRequestError("destinations must list at least one address to call.")
        async with self.store.session() as session:
            caller = source if master is not None else await check_source(session, customer_id, source)
            targets = [await resolve_destination(session, customer_id, i, d) for i, d in enumerate(destinations)]
            await self._check_room(session, customer_id, len(targets), master)
            for target in targets:
                if target.sip_uri and (problem := self.platform.egress.literal_problem(SipUri.parse(target.sip_uri).host)):
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

    async def _check_room(self, session: Any, customer_id: str, adding: int, master: LiveCall | None) -> None:
        """Refuse calls beyond the customer's, or the calling chain's, bound of live calls."""
        settings = self.platform.settings
        if master is not None and master.hops_left <= 1:
            raise CallRequestError("This call has come through too many hops (Max-Forwards) to place another.", "CALL_CHAIN_LIMIT")
        if master is not None and len(master.chain.call_ids) + adding > settings.max_calls_per_chain:
            raise CallRequestError(
                f"This call already caused {len(master.chain.call_ids) - 1} others; a chain of calls holds at most "
                f"{settings.max_calls_per_chain} (does a flow call its own number?).",
                "CALL_CHAIN_LIMIT",
            )
        if await self._live_calls_of(session, customer_id) + adding > settings.max_live_calls_per_customer:
            raise CallRequestError(
                f"Your account has {settings.max_live_calls_per_customer} live calls, its limit; hang some up first.",
                "CALL_LIMIT",
            )

    async def _live_calls_of(self, session: Any, customer_id: str) -> int:
        count = await session.scalar(
            select(func.count()).select_from(Call).where(Call.customer_id == customer_id, Call.status.in_(LIVE_STATES))
        )
        return int(count or 0)

    async def _check_trunk_open(self) -> None:
        if await default_password_in_use(self.store):
            raise CallRequestError(
                f"Calls to phone numbers are off while {ADMIN_USERNAME} has its published password "
                "(anyone could log in and place paid calls); the operator must change it first.",
                "DEFAULT_CREDENTIALS",
            )

    async def _flow_actions(self, session: Any, customer_id: str, flow_id: str) -> list[dict[str, Any]]:
        flow = await session.scalar(
            select(Flow).where(Flow.id == flow_id, Flow.customer_id == customer_id, Flow.tm_delete.is_(None))
        )
        if flow is None:
            raise CallRequestError(f"flow_id {flow_id} is not a flow of your account.", "FLOW_NOT_FOUND")
        return list(flow.actions)

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
            node_id=self.node_id,
            tm_create=self.clock.now(),
        )

    async def _ring_extension(
        self, customer_id: str, caller: dict[str, Any], target: Destination, actions: list[dict[str, Any]], flow_id: str,
        master: LiveCall | None,
    ) -> Groupcall:
        assert target.extension is not None
        extension = target.extension
        bindings = self.platform.sip.registrations(customer_id, extension.extension)
        group = Groupcall(
            id=new_id(),
            customer_id=customer_id,
            status="progressing",
            flow_id=flow_id,
            source=caller,
            destinations=[target.address],
            ring_method="ring_all",
            answer_method="hangup_others",
            node_id=self.node_id,
            tm_create=self.clock.now(),
        )
        destination = {**target.address, "target": extension.extension, "target_name": extension.name}
        # One call per registered phone; with none, one call that fails at once (VoIPBIN's way).
        calls = [self._new_call(customer_id, caller, destination, flow_id, master, group.id) for _ in bindings or [None]]
        group.call_ids = [c.id for c in calls]
        group.call_count = len(calls)
        async with self.store.transaction() as tx:
            tx.session.add(group)
            announce(tx, group, "groupcall_created")
            for call in calls:
                tx.session.add(call)
                announce(tx, call, "call_created")
        callee = f"sip:{extension.extension}@{self.platform.settings.registrar_domain(customer_id)}"
        hops = self._onward(master)
        for call, binding in zip(calls, bindings or [None]):
            dial_to = [binding] if binding is not None else []
            self._start(call, actions, master,
                        lambda b=dial_to: self.platform.sip.ua.call(b, self._caller_address(caller), callee, **hops))
        return group

    async def _dial(
        self, customer_id: str, caller: dict[str, Any], target: Destination, actions: list[dict[str, Any]], flow_id: str,
        master: LiveCall | None,
    ) -> Call:
        call = self._new_call(customer_id, caller, target.address, flow_id, master)
        await records.add(self.store, call, "call_created")
        hops = self._onward(master)
        self._start(call, actions, master, lambda: self._dial_uri(caller, target, hops))
        return call

    @staticmethod
    def _onward(master: LiveCall | None) -> dict[str, Any]:
        """What a leg placed for ``master`` tells the next hop: the hops left, and the chain it
        belongs to, so that a call which comes back to us joins its chain (and its bound)."""
        if master is None:
            return {}
        return {"max_forwards": master.hops_left - 1, "headers": [(CHAIN_HEADER, master.chain.id)]}

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
        return await self.platform.sip.ua.call([binding], self._caller_address(caller), uri, auth=auth, **hops)

    async def _sip_destination(self, uri: SipUri) -> str:
        """The address a customer's ``sip:`` destination may be called at: a permitted one, not a trunk's."""
        kind = socket.SOCK_STREAM if uri.transport == "tcp" else socket.SOCK_DGRAM
        address = (await self.platform.egress.resolve(uri.host, uri.port or 5060, kind))[0]
        async with self.store.session() as session:
            trunks = (await session.scalars(select(Provider.hostname).where(Provider.tm_delete.is_(None)))).all()
        for host in trunks:
            with contextlib.suppress(OSError):
                if address == await _resolve(host):
                    raise EgressBlocked(f"{uri.host} is a trunk of this platform; call phone numbers as 'tel' destinations")
        return address

    def _start(self, call: Call, actions: list[dict[str, Any]], master: LiveCall | None, dial: Any) -> None:
        live = LiveCall(self, call, actions)
        if master is not None:  # a connect's leg, bridged to its master and ending with it
            live.master = master
            live.hops_left = master.hops_left - 1
            live.join_chain(master.chain)
            master.children.append(live)
        self._chains[live.chain.id] = live.chain
        self.live[call.id] = live
        task = asyncio.create_task(live.run(dial), name=f"call-{call.id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    # -- incoming calls ---------------------------------------------------------------------------

    async def incoming(self, leg: SipCall, request: Request) -> None:
        """A call to one of our numbers runs the number's call flow (VoIPBIN's inbound path).
        One of our phones dialling another extension of its customer is connected to it; dialling
        a phone number, it reaches that number's flow when it is ours, or goes out through the
        trunk with its customer's first number as caller id."""
        dialed = unquote(request.sip_uri.user or "")
        if leg.identity is not None:
            route = await self._extension_route(leg.identity, dialed) or await self._phone_dials_number(leg.identity, dialed)
        else:
            route = await self._number_route(request.from_addr, dialed)
        if route is None:
            leg.reject(404, "No Such Number")
            return
        call, actions = route
        settings = self.platform.settings
        chain = self._chains.get(request.headers.get(CHAIN_HEADER) or "")
        if chain is not None and len(chain.call_ids) >= settings.max_calls_per_chain:
            leg.reject(482, "Loop Detected")  # a flow calling its own number, round and round
            return
        async with self.store.session() as session:
            busy = await self._live_calls_of(session, call.customer_id) >= settings.max_live_calls_per_customer
        if busy:
            leg.reject(486, "Busy Here")
            return
        await records.add(self.store, call, "call_created")
        live = LiveCall(self, call, actions)
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

    def _incoming_call(self, customer_id: str, flow_id: str, source: dict[str, Any], destination: dict[str, Any]) -> Call:
        blank = {"type": "", "target": "", "target_name": "", "name": "", "detail": ""}
        return Call(
            id=new_id(),
            customer_id=customer_id,
            flow_id=flow_id,
            type="flow",
            source={**blank, **source},
            destination={**blank, **destination},
            status="ringing",
            direction="incoming",
            node_id=self.node_id,
            tm_create=self.clock.now(),
        )

    async def _number_route(self, caller: Address, dialed: str) -> tuple[Call, list[dict[str, Any]]] | None:
        number_text = dialed if dialed.startswith("+") else f"+{dialed}"
        async with self.store.session() as session:
            number = await session.scalar(select(Number).where(Number.number == number_text, Number.tm_delete.is_(None)))
            if number is None or not number.call_flow_id:
                return None
            flow = await session.scalar(
                select(Flow).where(Flow.id == number.call_flow_id, Flow.customer_id == number.customer_id, Flow.tm_delete.is_(None))
            )
        if flow is None:
            return None
        source = {"type": "tel", "target": caller.sip_uri.user or "", "target_name": caller.display_name}
        destination = {"type": "tel", "target": number.number, "target_name": number.name}
        return self._incoming_call(number.customer_id, flow.id, source, destination), list(flow.actions)

    async def _extension_route(self, identity: tuple[str, str], dialed: str) -> tuple[Call, list[dict[str, Any]]] | None:
        customer_id, extension = identity
        async with self.store.session() as session:
            target = await session.scalar(
                select(Extension).where(
                    Extension.customer_id == customer_id,
                    Extension.tm_delete.is_(None),
                    or_(Extension.extension == dialed, Extension.name == dialed),
                )
            )
        if target is None:
            return None
        source = {"type": "extension", "target": extension}
        destination = {"type": "extension", "target": target.extension, "target_name": target.name}
        # A built-in flow: ring the dialled extension's phones and bridge the first to answer.
        actions = [{"type": "connect", "option": {"destinations": [{"type": "extension", "target_name": target.name}]}}]
        return self._incoming_call(customer_id, "", source, destination), actions

    async def _phone_dials_number(self, identity: tuple[str, str], dialed: str) -> tuple[Call, list[dict[str, Any]]] | None:
        number = dialed_number(dialed)
        if number is None:
            return None
        customer_id, extension = identity
        caller = Address(f"sip:{extension}@{self.platform.settings.domain}")
        if (ours := await self._number_route(caller, number)) is not None:
            call, actions = ours
            if call.customer_id == customer_id:  # within one account the caller is its extension
                call.source = {**call.source, "type": "extension", "target": extension}
            return call, actions
        async with self.store.session() as session:
            caller_id = await session.scalar(
                select(Number.number)
                .where(Number.customer_id == customer_id, Number.tm_delete.is_(None))
                .order_by(Number.tm_create)
                .limit(1)
            )
        if caller_id is None:
            return None  # no number to show the called party
        source = {"type": "extension", "target": extension}
        destination = {"type": "tel", "target": number}
        actions = [{"type": "connect", "option": {"source": {"type": "tel", "target": caller_id},
                                                  "destinations": [destination]}}]
        return self._incoming_call(customer_id, "", source, destination), actions

    # -- what live calls report ----------------------------------------------------------------

    def on_answered(self, live: LiveCall) -> None:
        if live.groupcall_id:
            self.spawn(self._groupcall_answered(live))
        if live.runner is None and live.master is None:  # a connect's leg is bridged, not flowed
            self._start_flow(live)

    def _start_flow(self, live: LiveCall) -> None:
        live.runner = FlowRunner(live, live.flow_id)
        self.spawn(live.runner.run())

    async def on_hangup(self, live: LiveCall) -> None:
        self.live.pop(live.id, None)
        if live.runner is not None:
            live.runner.post(CallHungUp())
        for speaking in live.speakings:
            self.speakings.pop(speaking.row.id, None)
            await speaking.stop()
        await live.stop_recording()
        for child in live.children:  # legs connected to this call end with it
            self.spawn(child.hangup("normal"))
        if live.groupcall_id:
            await self._groupcall_maybe_over(live.groupcall_id)

    async def _groupcall_answered(self, live: LiveCall) -> None:
        group = await records.change(self.store, Groupcall, live.groupcall_id, None, answer_call_id=live.id)
        if group is None:
            return
        # answer_method hangup_others: the other phones stop ringing.
        others = [self.live[c] for c in group.call_ids if c != live.id and c in self.live]
        await asyncio.gather(*(other.hangup("normal") for other in others), return_exceptions=True)

    async def _groupcall_maybe_over(self, groupcall_id: str) -> None:
        async with self.store.session() as session:
            group = await session.get(Groupcall, groupcall_id)
        if group is None or group.status == "hangup" or any(c in self.live for c in group.call_ids):
            return
        await records.change(self.store, Groupcall, groupcall_id, "groupcall_hangup", status="hangup")

    async def hangup(self, call_id: str) -> bool:
        """Hang up a live call; False when it is not live here."""
        live = self.live.get(call_id)
        if live is None:
            return False
        await live.hangup("normal")
        await asyncio.wait_for(live.ended.wait(), 15)
        return True

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
        else:
            await records.change(self.store, Activeflow, activeflow.id, "activeflow_updated", status="ended", current_action={})

    def _caller_address(self, caller: dict[str, Any]) -> Address:
        user = escape_user(caller.get("target") or "anonymous")
        name = display_name(caller.get("name") or caller.get("target_name") or "")
        return Address(f"sip:{user}@{self.platform.settings.domain}", name)

    def spawn(self, coro: Any) -> None:
        """Run in the background for as long as the platform runs; failures are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())


async def _resolve(host: str) -> str:
    """An IP for a trunk's host name (RTP and SIP sockets need addresses)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])


def dialed_number(dialed: str) -> str | None:
    """What a phone dialled, as E.164 when it is a phone number: +CC…, 00CC… or 7+ plain digits."""
    compact = "".join(ch for ch in dialed if ch not in " -.()")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.isdigit() and len(compact) >= 7:
        compact = "+" + compact
    return compact if is_e164(compact) else None
