"""The user agent: calls to and from phones, each with its own RTP endpoint.

Outgoing calls ring every registered contact of an extension at once; the first to answer wins
and the others are cancelled. Incoming INVITEs become calls handed to the application, which
answers or rejects them. What each call does is decided by its :class:`~voipbin.sip.leg.CallLeg`
(sans-IO); this module is its asyncio wing: it routes what arrives to the right leg, carries out
what the leg decides through the :class:`SipStack`, and runs the leg's timers on the event loop.

A call always ends, whatever the far end does: the leg hangs up (``failed``, with a
``hangup_cause``) a call whose session timer ran out (RFC 4028: ``session_expired``, or a refresh
of ours refused: ``session_refresh_failed``); here a watchdog hangs up a call whose peer stopped
sending media (``media_timeout``), whose TCP flow closed (``connection_lost``), or whose media
port the same phone now uses for another call (``media_taken``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from voipbin.media.endpoint import MediaEngine, RtpEndpoint
from voipbin.sip.dialog import Dialog
from voipbin.sip.leg import (
    ALLOW,
    RING_TIMEOUT_S,
    Action,
    CallLeg,
    CallState,
    Local,
    MediaAgreed,
    Respond,
    Send,
    StateChanged,
    Transact,
    dialog_id_of,
    reason_for_status,
)
from voipbin.sip.location import Binding, Peer
from voipbin.sip.message import Address, Request, Response, make_response
from voipbin.sip.session_timer import SessionTimer, SessionTimerPolicy
from voipbin.sip.stack import Incoming, Outgoing, SipStack

__all__ = ["ALLOW", "CallState", "IncomingHandler", "Liveness", "SipCall", "UserAgent", "reason_for_status"]

log = logging.getLogger(__name__)

Step = Callable[[float], list[Action]]
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


@dataclass(frozen=True)
class Liveness:
    """How the user agent notices that a call's far end is gone without saying so."""

    media_timeout_s: float = 30.0  # 0: never
    session: SessionTimerPolicy = field(default_factory=SessionTimerPolicy)
    check_every_s: float = 0.5


class SipCall:
    """One call leg between the platform and a phone (or trunk), as the application sees it.

    ``state`` moves through each state the leg announces, in order, and ``listeners`` are told
    of every one. ``hangup_by``, ``hangup_reason`` and ``hangup_cause`` are the leg's. Everything
    the call does goes through :meth:`feed`; the user agent it belongs to is told after each step
    (``stepped``), and it knows nothing else of it.
    """

    def __init__(
        self,
        leg: CallLeg,
        endpoint: RtpEndpoint,
        stack: SipStack,
        clock: Callable[[], float],
        spawn: Spawn,
        stepped: Callable[[SipCall, list[Action]], None],
        *,
        identity: tuple[str, str] | None = None,
        invite: Incoming | None = None,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.leg = leg
        self.endpoint = endpoint
        # Incoming from one of our phones: (customer_id, extension) it proved with digest.
        self.identity = identity
        self.state = CallState.DIALING
        self.listeners: list[Callable[[SipCall], None]] = []
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()
        self._stack = stack
        self._clock = clock
        self._spawn = spawn
        self._stepped = stepped  # the user agent's part: routing, and what concerns other calls
        self._invite = invite  # the server transaction of an incoming call's INVITE
        self._follows: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None

    @property
    def direction(self) -> Literal["outgoing", "incoming"]:
        return self.leg.direction

    @property
    def hangup_by(self) -> str:
        return self.leg.hangup_by

    @property
    def hangup_reason(self) -> str:
        return self.leg.hangup_reason

    @property
    def hangup_cause(self) -> str:
        return self.leg.hangup_cause

    @property
    def dialog(self) -> Dialog | None:
        return self.leg.dialog

    @property
    def session(self) -> SessionTimer | None:
        return self.leg.session

    async def hangup(self, reason: str = "normal", cause: str = "") -> None:
        """End the call from our side, whatever its state; ``cause`` says why the platform did."""
        self.feed(lambda now: self.leg.hangup(reason, cause, now))
        await self._released()

    def reject(self, status_code: int, reason: str | None = None) -> None:
        """Refuse an incoming call that has not been answered."""
        self.feed(lambda now: self.leg.reject(status_code, reason, now))

    async def answer(self) -> None:
        """Answer an incoming call: 200 OK with our SDP, retransmitted until the ACK."""
        self.feed(self.leg.answer)
        await self._released()

    def feed(self, step: Step, incoming: Incoming | None = None) -> None:
        """Give the leg one input (``step`` at the time now) and carry out what it decides;
        ``incoming`` is the server transaction of the request it was given, if any."""
        actions = step(self._clock())
        for action in actions:
            self._carry_out(action, incoming)
        if self.leg.finished:
            current = asyncio.current_task()
            for task in self._follows - {current}:  # transactions whose outcome no longer matters
                task.cancel()
        self._stepped(self, actions)

    def _carry_out(self, action: Action, incoming: Incoming | None) -> None:
        if isinstance(action, Send):
            self._stack.send_stateless(action.message, action.peer)
        elif isinstance(action, Transact):
            task = self._spawn(self._follow(self._stack.request(action.request, action.peer)))
            self._follows.add(task)
            task.add_done_callback(self._follows.discard)
        elif isinstance(action, Respond):
            server = incoming if incoming is not None and incoming.request is action.request else self._invite
            assert server is not None and server.request is action.request, "the leg answers only what it was given"
            server.respond(action.response)
        elif isinstance(action, MediaAgreed):
            _apply(self.endpoint, action)
        elif isinstance(action, StateChanged):
            self._enter(action.state)

    def _enter(self, state: CallState) -> None:
        self.state = state
        if state is CallState.PROGRESSING:
            self.answered.set()
        for listener in list(self.listeners):
            listener(self)
        if state is CallState.HANGUP:
            self.ended.set()
            self._closing = self._spawn(self.endpoint.close())

    async def _follow(self, outgoing: Outgoing) -> None:
        async for response in outgoing.responses():
            self.feed(functools.partial(self.leg.receive_response, response))

    async def _released(self) -> None:
        """Once ended, its RTP port is free again when this returns."""
        if self._closing is not None:
            await asyncio.shield(self._closing)  # a cancelled caller must not cancel the closing


IncomingHandler = Callable[[SipCall, Request], Awaitable[None]]


class UserAgent:
    """Every call of one SIP stack: it places and takes them, and routes to each what is its own."""

    def __init__(self, stack: SipStack, media: MediaEngine, advertised_host: str, liveness: Liveness = Liveness()) -> None:
        self.stack = stack
        self.media = media
        self.advertised_host = advertised_host
        self.liveness = liveness
        self.now = media.clock
        self.calls: set[SipCall] = set()  # those not hung up yet
        self.on_incoming: IncomingHandler | None = None
        # Routes to the legs that are not finished: by the dialog in-dialog requests name, by
        # (Call-ID, our tag) that a stray 2xx names, and by an INVITE server transaction a CANCEL names.
        self._dialogs: dict[tuple[str, str, str], SipCall] = {}
        self._senders: dict[tuple[str, str], SipCall] = {}
        self._invites: dict[str, SipCall] = {}
        self._timers: dict[SipCall, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        stack.on_ack = self._on_ack
        stack.on_stray_response = self._on_stray_response

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="sip-call-watchdog")

    def contact_uri(self, peer: Peer | None = None) -> str:
        """Our Contact for a dialog whose flow is ``peer`` (it names TCP when that flow is TCP)."""
        return self._local().contact(peer)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        for call in list(self.calls):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.hangup(), 5)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task the user agent cancels when it closes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def options_request(self, target: str, peer: Peer) -> Request:
        """An out-of-dialog OPTIONS to ``target`` through ``peer`` (a keepalive)."""
        return self._local().request("OPTIONS", target, target, peer, Address(f"sip:voipbin@{self.advertised_host}"))

    def flow_closed(self, peer: Peer) -> None:
        """A TCP connection closed: the calls whose dialog used it have lost their phone."""
        for call in list(self.calls):
            if call.state is CallState.PROGRESSING and call.dialog is not None and call.dialog.peer == peer:
                log.info("call %s: its TCP connection closed; hanging up", call.id)
                self.spawn(call.hangup("failed", "connection_lost"))

    def _local(self) -> Local:
        return Local(self.advertised_host, self.stack.port)  # the port is known once the stack started

    # -- outgoing ------------------------------------------------------------------------------

    async def call(
        self,
        bindings: list[Binding],
        caller: Address,
        callee_uri: str,
        ring_timeout: float = RING_TIMEOUT_S,
        auth: tuple[str, str] | None = None,
        max_forwards: int = 70,
        headers: Sequence[tuple[str, str]] = (),
    ) -> SipCall:
        """Ring every binding at once; returns the call in ``dialing`` state at once.

        ``auth`` (username, password) answers a trunk's digest challenge to the INVITE. A call
        placed on behalf of another (a flow's connect) passes on that call's ``max_forwards``,
        less one, so calls that loop back to us die out; ``headers`` are added to each INVITE.
        """
        call = self._new_call("outgoing", await self.media.open_endpoint())
        targets = [(binding.contact, binding.source) for binding in bindings]
        call.feed(lambda now: call.leg.dial(targets, caller, callee_uri, now, ring_timeout=ring_timeout, auth=auth,
                                            max_forwards=max_forwards, headers=headers))
        return call

    async def _on_stray_response(self, response: Response) -> None:
        """A 2xx to an INVITE whose transaction is over: a retransmission, or another fork answering."""
        call = self._senders.get((response.call_id, response.from_addr.tag or ""))
        if call is not None:
            call.feed(functools.partial(call.leg.receive_response, response))

    # -- incoming ------------------------------------------------------------------------------

    async def handle(self, incoming: Incoming, identity: tuple[str, str] | None = None) -> bool:
        """Take the requests that belong to calls; False for those it does not handle."""
        request = incoming.request
        method = request.method
        if method == "INVITE" and not request.to_addr.tag:
            await self._new_incoming(incoming, identity)
            return True
        if method == "OPTIONS":
            ok = make_response(request, 200)
            ok.headers.add("Allow", ALLOW)
            incoming.respond(ok)
            return True
        if method == "CANCEL":
            invite = self.stack.transactions.find_invite_server_transaction_for_cancel(request)
            call = self._invites.get(invite) if invite else None
        elif method in ("INVITE", "BYE", "UPDATE", "INFO"):
            call = self._dialogs.get(dialog_id_of(request))
        else:
            return False
        if call is None:
            incoming.reply(481)
        else:
            call.feed(lambda now: call.leg.receive_request(request, incoming.source, now), incoming)
        return True

    async def _new_incoming(self, incoming: Incoming, identity: tuple[str, str] | None) -> None:
        request = incoming.request
        if self.on_incoming is None:
            incoming.reply(480, "No Route For This Call")
            return
        call = self._new_call("incoming", await self.media.open_endpoint(), identity, incoming)
        self._invites[incoming.transaction_id] = call
        call.feed(lambda now: call.leg.invited(request, incoming.source, now), incoming)
        if call.state is CallState.HANGUP:
            return  # refused at once (422)
        try:
            await self.on_incoming(call, request)
        finally:
            if call.state is CallState.RINGING:
                # The application neither answered nor rejected: nobody is there to take it.
                await call.hangup("noanswer")

    async def _on_ack(self, request: Request, source: Peer) -> None:
        call = self._dialogs.get(dialog_id_of(request))
        if call is not None:
            call.feed(lambda now: call.leg.receive_request(request, source, now))

    # -- the legs ------------------------------------------------------------------------------

    def _new_call(
        self,
        direction: Literal["outgoing", "incoming"],
        endpoint: RtpEndpoint,
        identity: tuple[str, str] | None = None,
        invite: Incoming | None = None,
    ) -> SipCall:
        leg = CallLeg(direction, self._local(), self.liveness.session, endpoint.local_port)
        call = SipCall(leg, endpoint, self.stack, self.now, self.spawn, self._stepped, identity=identity, invite=invite)
        self.calls.add(call)
        return call

    def _stepped(self, call: SipCall, actions: list[Action]) -> None:
        """After each step of a call's leg: route to it what now names it, run its timer, and end
        the calls a new media address of its phone leaves behind."""
        leg = call.leg
        if call.state is CallState.HANGUP:
            self.calls.discard(call)
        timer = self._timers.pop(call, None)
        if timer is not None:
            timer.cancel()
        if leg.finished:
            self._unroute(call)
        else:
            if leg.dialog_id is not None:
                self._dialogs[leg.dialog_id] = call
            for sender in leg.local_ids:
                self._senders[sender] = call
            deadline = leg.next_deadline()
            if deadline is not None:
                delay = max(0.0, deadline - self.now())
                self._timers[call] = asyncio.get_running_loop().call_later(delay, self._fire, call)
        if any(isinstance(action, MediaAgreed) for action in actions):
            self._media_moved(call)

    def _fire(self, call: SipCall) -> None:
        self._timers.pop(call, None)
        call.feed(call.leg.on_timer)

    def _unroute(self, call: SipCall) -> None:
        leg = call.leg
        if leg.dialog_id is not None and self._dialogs.get(leg.dialog_id) is call:
            del self._dialogs[leg.dialog_id]
        for sender in leg.local_ids:
            if self._senders.get(sender) is call:
                del self._senders[sender]
        for transaction_id in [tid for tid, routed in self._invites.items() if routed is call]:
            del self._invites[transaction_id]

    def _media_moved(self, call: SipCall) -> None:
        # A phone in a new call on the RTP port an old call still sends to has left the old
        # call without a word: end it, or its audio would reach the new call's port and the old
        # call's listeners.
        remote = call.endpoint.remote
        for other in list(self.calls):
            if other is not call and other.state is CallState.PROGRESSING and other.endpoint.remote == remote:
                log.info("call %s: its phone now uses its media address %s for another call; hanging up", other.id, remote)
                self.spawn(other.hangup("failed", "media_taken"))

    # -- liveness ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Every call in progress, a few times a second: is its far end still sending media?"""
        timeout = self.liveness.media_timeout_s
        while True:
            await asyncio.sleep(self.liveness.check_every_s)
            now = self.now()
            for call in list(self.calls):
                endpoint = call.endpoint
                if (timeout > 0 and call.state is CallState.PROGRESSING and endpoint.expects_media
                        and endpoint.silent_for(now) > timeout):
                    log.info("call %s: no media for %.0f s; hanging up", call.id, timeout)
                    self.spawn(call.hangup("failed", "media_timeout"))


def _apply(endpoint: RtpEndpoint, media: MediaAgreed) -> None:
    """Point the endpoint at the negotiated stream; a non-IP SDP address falls back to the peer's."""
    agreed = media.negotiation
    host, port = agreed.remote
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = media.peer[1]
    endpoint.set_remote(host, port, agreed.codec, agreed.telephone_event_pt, direction=media.direction)
