"""The user agent: calls to and from phones, each with its own RTP endpoint.

Outgoing calls ring every registered contact of an extension at once; the first to answer wins
and the others are cancelled. Incoming INVITEs become calls handed to the application, which
answers or rejects them. In-dialog BYE, re-INVITE (hold), UPDATE, OPTIONS and CANCEL are handled here.

A call always ends, whatever the far end does: one watchdog checks every call in progress, and
hangs up (``failed``, with a ``hangup_cause``) a call whose peer stopped sending media
(``media_timeout``), whose session timer ran out (RFC 4028: ``session_expired``, or a refresh of
ours refused: ``session_refresh_failed``), whose TCP flow closed (``connection_lost``), or whose
media port the same phone now uses for another call (``media_taken``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from voipbin.core.aio import wait_event
from voipbin.media.endpoint import MediaEngine, RtpEndpoint
from voipbin.media.sdp import (
    Negotiation,
    SdpError,
    SessionDescription,
    build_offer,
    negotiate,
    parse_answer,
    parse_sdp,
    reverse_direction,
)
from voipbin.sip.dialog import Dialog, new_call_id, new_tag
from voipbin.sip.digest import authorization_for, select_challenge
from voipbin.sip.location import Binding, Peer
from voipbin.sip.message import Address, Headers, Request, Response, make_response
from voipbin.sip.session_timer import (
    Agreed,
    SessionTimer,
    SessionTimerPolicy,
    TooSmall,
    answer_invite,
    from_answer,
    min_se,
    offer_headers,
)
from voipbin.sip.stack import Incoming, Outgoing, SipStack

log = logging.getLogger(__name__)

T1 = 0.5
RING_TIMEOUT_S = 60.0
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
REFRESH_RETRY_S = 5.0


@dataclass(frozen=True)
class Liveness:
    """How the user agent notices that a call's far end is gone without saying so."""

    media_timeout_s: float = 30.0  # 0: never
    session: SessionTimerPolicy = SessionTimerPolicy()
    check_every_s: float = 0.5


class CallState(enum.StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    PROGRESSING = "progressing"
    TERMINATING = "terminating"
    CANCELING = "canceling"
    HANGUP = "hangup"


# Final responses to an INVITE, as VoIPBIN's hangup reasons.
def reason_for_status(status_code: int) -> str:
    if status_code in (486, 600):
        return "busy"
    if status_code in (408, 480, 603):
        return "noanswer"
    if status_code == 487:
        return "cancel"
    return "failed"


@dataclass(eq=False)
class SipCall:
    """One call leg between the platform and a phone (or trunk)."""

    ua: UserAgent
    direction: str
    endpoint: RtpEndpoint
    local_uri: str
    remote_uri: str
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    # Our tag in the dialog of an incoming call (outgoing calls take theirs from the INVITE).
    tag: str = field(default_factory=new_tag)
    state: CallState = CallState.DIALING
    hangup_by: str = ""
    hangup_reason: str = ""
    dialog: Dialog | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: list[Callable[[SipCall], None]] = field(default_factory=list)
    # Outgoing: pending forks (one INVITE per contact) until one answers.
    _forks: dict[str, Outgoing] = field(default_factory=dict)
    # Incoming from one of our phones: (customer_id, extension) it proved with digest.
    identity: tuple[str, str] | None = None
    # Outgoing to a trunk: (username, password) for its digest challenge.
    auth: tuple[str, str] | None = None
    # Incoming: the INVITE we answer, and our 2xx until the ACK comes.
    _incoming: Incoming | None = None
    _answer_ack: asyncio.Event = field(default_factory=asyncio.Event)
    # Why a call ended beyond its hangup reason, when the platform ended it (Liveness).
    hangup_cause: str = ""
    # RFC 4028, once the call is up; our SDP, which a refresh repeats.
    session: SessionTimer | None = None
    local_sdp: bytes = b""
    _session_answer: Agreed | None = None
    _next_refresh: float = 0.0
    _refreshing: bool = False

    def _set_state(self, state: CallState) -> None:
        if self.state is CallState.HANGUP or self.state is state:
            return
        self.state = state
        if state is CallState.PROGRESSING:
            self.answered.set()
        for listener in list(self.listeners):
            listener(self)

    async def hangup(self, reason: str = "normal", cause: str = "") -> None:
        """End the call from our side, whatever its state; ``cause`` says why the platform did."""
        if self.state is CallState.HANGUP:
            return
        self.hangup_cause = self.hangup_cause or cause
        if self.dialog is not None and self.state is CallState.PROGRESSING:
            self._set_state(CallState.TERMINATING)
            peer = self.dialog.peer
            bye = self.dialog.request("BYE", self.ua.stack.via(_via_transport(peer)), self.ua.contact_uri(peer))
            # The call is over once the BYE is sent; its transaction retransmits on its own,
            # and a phone that never answers it holds up nobody.
            self.ua.stack.request(bye, peer)
            await self._finish("local", reason)
        elif self.direction == "outgoing":
            self._set_state(CallState.CANCELING)
            await self.ua._cancel_forks(self)
            await self._finish("local", "cancel")
        else:
            if self._incoming is not None:
                self._incoming.reply(603 if reason == "normal" else 480, to_tag=self.tag)
            await self._finish("local", reason)

    def reject(self, status_code: int, reason: str | None = None) -> None:
        """Refuse an incoming call that has not been answered."""
        if self._incoming is not None and self.state in (CallState.DIALING, CallState.RINGING):
            self._incoming.reply(status_code, reason, to_tag=self.tag)
            self.ua._spawn(self._finish("local", "noanswer"))

    async def answer(self) -> None:
        """Answer an incoming call: 200 OK with our SDP, retransmitted until the ACK."""
        assert self._incoming is not None and self.direction == "incoming"
        if self.state is not CallState.RINGING and self.state is not CallState.DIALING:
            return
        invite = self._incoming.request
        try:
            agreed = negotiate(parse_sdp(invite.body), self.ua.advertised_host, self.endpoint.local_port)
        except SdpError as error:
            self._incoming.reply(488, f"Not Acceptable Here: {error}"[:120], to_tag=self.tag)
            await self._finish("local", "failed")
            return
        self.ua._apply(self, agreed, _audio_direction(agreed.answer), self._incoming.source)
        self.dialog = Dialog.as_callee(invite, self.tag, self._incoming.source)
        ok = make_response(invite, 200, to_tag=self.tag)
        ok.headers.add("Contact", f"<{self.ua.contact_uri(self._incoming.source)}>")
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Content-Type", "application/sdp")
        if self._session_answer is not None:
            for name, value in self._session_answer.headers:
                ok.headers.add(name, value)
            self.session = self._session_answer.timer
            if self.session is not None:
                self.session.refreshed(self.ua.now())
        self.local_sdp = ok.body = agreed.answer.serialize().encode()
        self._incoming.respond(ok)
        self.ua.dialogs[self.dialog.key] = self
        self._set_state(CallState.PROGRESSING)
        self.ua._spawn(self._retransmit_until_ack(ok, self._incoming.source))

    async def _retransmit_until_ack(self, ok: Response, peer: Peer) -> None:
        """RFC 3261 13.3.1.4: the UAS core resends its 2xx at T1 doubling until the ACK arrives."""
        if peer[0] != "udp":
            return
        interval, waited = T1, 0.0
        while waited < 64 * T1 and self.state is CallState.PROGRESSING:
            if await wait_event(self._answer_ack, interval):
                return
            waited += interval
            interval = min(interval * 2, 4.0)
            self.ua.stack.send_stateless(ok, peer)
        if not self._answer_ack.is_set() and self.state is CallState.PROGRESSING:
            log.info("no ACK for our 200 on call %s; hanging up", self.id)
            await self.hangup("failed")

    async def _finish(self, by: str, reason: str) -> None:
        if self.state is CallState.HANGUP:
            return
        self.hangup_by, self.hangup_reason = by, reason
        self._set_state(CallState.HANGUP)
        self.ended.set()
        if self.dialog is not None:
            self.ua.dialogs.pop(self.dialog.key, None)
        await self.endpoint.close()
        self.ua.calls.discard(self)


IncomingHandler = Callable[[SipCall, Request], Awaitable[None]]


class UserAgent:
    def __init__(self, stack: SipStack, media: MediaEngine, advertised_host: str, liveness: Liveness = Liveness()) -> None:
        self.stack = stack
        self.media = media
        self.advertised_host = advertised_host
        self.liveness = liveness
        self.now = media.clock
        self.dialogs: dict[tuple[str, str, str], SipCall] = {}
        self.calls: set[SipCall] = set()
        self.on_incoming: IncomingHandler | None = None
        self._pending_invites: dict[str, SipCall] = {}  # incoming INVITE server tx → call
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        stack.on_ack = self._on_ack
        stack.on_stray_response = self._on_stray_response

    def start(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="sip-call-watchdog")

    def contact_uri(self, peer: Peer | None = None) -> str:
        """Our Contact for a dialog whose flow is ``peer``: it names TCP when that flow is TCP, or
        a phone registered over TCP only would send its BYE (and any in-dialog request) over UDP."""
        uri = f"sip:voipbin@{self.advertised_host}:{self.stack.port}"
        return f"{uri};transport=tcp" if peer is not None and peer[0] == "tcp" else uri

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        for call in list(self.calls):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call.hangup(), 5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def options_request(self, target: str, peer: Peer) -> Request:
        """An out-of-dialog OPTIONS to ``target`` through ``peer`` (a keepalive)."""
        headers = Headers([
            ("Via", self.stack.via(_via_transport(peer))),
            ("Max-Forwards", "70"),
            ("From", str(Address(f"sip:voipbin@{self.advertised_host}", params={"tag": new_tag()}))),
            ("To", f"<{target}>"),
            ("Call-ID", new_call_id(self.advertised_host)),
            ("CSeq", "1 OPTIONS"),
            ("Contact", f"<{self.contact_uri(peer)}>"),
            ("Allow", ALLOW),
        ])
        return Request("OPTIONS", target, headers)

    # -- liveness ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Every call in progress, a few times a second: is its far end still there?"""
        while True:
            await asyncio.sleep(self.liveness.check_every_s)
            now = self.now()
            for call in list(self.calls):
                if call.state is CallState.PROGRESSING:
                    try:
                        self._check(call, now)
                    except Exception:
                        log.exception("checking call %s failed", call.id)

    def _check(self, call: SipCall, now: float) -> None:
        timeout = self.liveness.media_timeout_s
        if timeout > 0 and call.endpoint.expects_media and call.endpoint.silent_for(now) > timeout:
            log.info("call %s: no media for %.0f s; hanging up", call.id, timeout)
            self._spawn(call.hangup("failed", "media_timeout"))
            return
        session = call.session
        if session is None:
            return
        if now >= session.expires_at:
            log.info("call %s: its session expired (no refresh in %d s); hanging up", call.id, session.interval_s)
            self._spawn(call.hangup("failed", "session_expired"))
        elif session.we_refresh and now >= max(session.refresh_due, call._next_refresh) and not call._refreshing:
            self._spawn(self._refresh(call))

    async def _refresh(self, call: SipCall) -> None:
        """Repeat the session (a re-INVITE with our SDP): RFC 4028's refresh."""
        dialog, session = call.dialog, call.session
        if dialog is None or session is None:
            return
        call._refreshing = True
        try:
            peer = dialog.peer
            invite = dialog.request("INVITE", self.stack.via(_via_transport(peer)), self.contact_uri(peer),
                                    call.local_sdp, "application/sdp")
            refresher = "uac" if call.direction == "outgoing" else "uas"
            invite.headers.add("Session-Expires", f"{session.interval_s};refresher={refresher}")
            invite.headers.add("Supported", "timer")
            invite.headers.add("Allow", ALLOW)
            response = await self.stack.request(invite, peer).final()
        finally:
            call._refreshing = False
        if 200 <= response.status_code < 300:
            self.stack.send_stateless(dialog.ack(invite.cseq.number, self.stack.via(_via_transport(peer)), self.contact_uri(peer)), peer)
            agreed = from_answer(response.headers, self.now())
            session.refreshed(self.now(), agreed.interval_s if agreed else None)
        elif response.status_code in (408, 481):  # RFC 4028 10: the session is gone
            await call.hangup("failed", "session_refresh_failed")
        else:  # refused for now (491 glare, 500...): try again until the session expires
            call._next_refresh = self.now() + REFRESH_RETRY_S

    def flow_closed(self, peer: Peer) -> None:
        """A TCP connection closed: the calls whose dialog used it have lost their phone."""
        for call in list(self.calls):
            if call.state is CallState.PROGRESSING and call.dialog is not None and call.dialog.peer == peer:
                log.info("call %s: its TCP connection closed; hanging up", call.id)
                self._spawn(call.hangup("failed", "connection_lost"))

    def _apply(self, call: SipCall, agreed: Negotiation, direction: str, peer: Peer) -> None:
        _apply(call.endpoint, agreed, direction, peer)
        # A phone in a new call on the RTP port an old call still sends to has left the old
        # call without a word: end it, or its audio would reach the new call's port and the old
        # call's listeners.
        remote = call.endpoint.remote
        for other in list(self.calls):
            if other is not call and other.state is CallState.PROGRESSING and other.endpoint.remote == remote:
                log.info("call %s: its phone now uses its media address %s for another call; hanging up", other.id, remote)
                self._spawn(other.hangup("failed", "media_taken"))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        endpoint = await self.media.open_endpoint()
        call = SipCall(self, "outgoing", endpoint, caller.uri, callee_uri)
        self.calls.add(call)
        if not bindings:
            await call._finish("local", "failed")
            return call
        offer = build_offer(self.advertised_host, endpoint.local_port)
        call.local_sdp = offer.serialize().encode()
        for binding in bindings:
            invite = self._invite(binding, caller, callee_uri, offer.serialize().encode(), max_forwards, headers)
            call._forks[invite.call_id] = self.stack.request(invite, binding.source)
        call.auth = auth
        self._spawn(self._drive_outgoing(call, offer, ring_timeout))
        return call

    def _invite(
        self,
        binding: Binding,
        caller: Address,
        callee_uri: str,
        sdp: bytes,
        max_forwards: int,
        extra: Sequence[tuple[str, str]],
    ) -> Request:
        headers = Headers(
            [
                ("Via", self.stack.via(_via_transport(binding.source))),
                ("Max-Forwards", str(max_forwards)),
                ("From", str(Address(caller.uri, caller.display_name, {"tag": new_tag()}))),
                ("To", f"<{callee_uri}>"),
                ("Call-ID", new_call_id(self.advertised_host)),
                ("CSeq", "1 INVITE"),
                ("Contact", f"<{self.contact_uri(binding.source)}>"),
                ("Allow", ALLOW),
                ("User-Agent", "voipbin"),
                *offer_headers(self.liveness.session),
                *extra,
                ("Content-Type", "application/sdp"),
            ]
        )
        return Request("INVITE", binding.contact, headers, sdp)

    async def _drive_outgoing(self, call: SipCall, offer: SessionDescription, ring_timeout: float) -> None:
        forks = list(call._forks.values())
        results = [asyncio.ensure_future(self._follow_fork(call, fork, offer)) for fork in forks]
        try:
            _, ringing = await asyncio.wait(results, timeout=ring_timeout)
        finally:
            for result in results:
                result.cancel()  # plain tasks, not a gather: nothing is left for nobody to retrieve
        if ringing:
            if call.state is not CallState.PROGRESSING:
                await self._cancel_forks(call)
                await call._finish("local", "dialout")
            return
        for result in results:
            result.result()  # a fork that failed fails the call
        if call.dialog is None and call.state is not CallState.HANGUP:  # nobody answered
            finals = [r.result() for r in results if r.result() is not None]
            await call._finish("remote", reason_for_status(min(finals) if finals else 500))

    async def _follow_fork(self, call: SipCall, fork: Outgoing, offer: SessionDescription) -> int | None:
        authenticated = longer = False
        while True:
            response = await self._final_of(call, fork)
            code = response.status_code
            call._forks.pop(fork.request.call_id, None)
            retry = None
            if code in (401, 407) and call.auth and not authenticated and call.state is not CallState.HANGUP:
                retry = self._authenticated(fork.request, response, call.auth)
                authenticated = True
            elif code == 422 and not longer and call.state is not CallState.HANGUP:
                retry = self._with_interval(fork.request, min_se(response.headers))
                longer = True
            if retry is not None:
                fork = self.stack.request(retry, fork.destination)
                call._forks[retry.call_id] = fork
                continue
            if code >= 300:
                return code
            await self._on_fork_answered(call, fork, response, offer)
            return code

    async def _final_of(self, call: SipCall, fork: Outgoing) -> Response:
        async for response in fork.responses():
            if response.status_code >= 200:
                return response
            if response.status_code in (180, 183) and call.state is CallState.DIALING:
                call._set_state(CallState.RINGING)
        raise AssertionError("unreachable: responses() ends with a final response")

    def _with_interval(self, invite: Request, wanted: int | None) -> Request | None:
        """The INVITE again with the session interval a 422 asked for (new branch, next CSeq)."""
        if wanted is None:
            return None
        retry = Request(invite.method, invite.uri, invite.headers.copy(), invite.body)
        retry.headers.set("Via", self.stack.via(invite.vias[0].transport))
        retry.headers.set("CSeq", f"{invite.cseq.number + 1} INVITE")
        retry.headers.set("Session-Expires", str(wanted))
        retry.headers.set("Min-SE", str(wanted))
        return retry

    def _authenticated(self, invite: Request, challenge: Response, auth: tuple[str, str]) -> Request | None:
        """The INVITE again, answering a 401/407 (new branch, next CSeq)."""
        header = "WWW-Authenticate" if challenge.status_code == 401 else "Proxy-Authenticate"
        chosen = select_challenge(challenge.headers.get_all(header))
        if chosen is None:
            return None
        retry = Request(invite.method, invite.uri, invite.headers.copy(), invite.body)
        retry.headers.set("Via", self.stack.via(invite.vias[0].transport))
        retry.headers.set("CSeq", f"{invite.cseq.number + 1} INVITE")
        try:
            value = authorization_for(chosen, "INVITE", invite.uri, auth[0], auth[1], cnonce=secrets.token_hex(8))
        except ValueError:
            return None
        retry.headers.set("Authorization" if challenge.status_code == 401 else "Proxy-Authorization", value)
        return retry

    async def _on_fork_answered(
        self, call: SipCall, fork: Outgoing, response: Response, offer: SessionDescription
    ) -> None:
        dialog = Dialog.as_caller(fork.request, response, fork.destination)
        peer = fork.destination
        self.stack.send_stateless(
            dialog.ack(fork.request.cseq.number, self.stack.via(_via_transport(peer)), self.contact_uri(peer)), peer
        )
        if call.dialog is not None or call.state is CallState.HANGUP:
            # Another phone answered first (or we gave up): this one is released at once.
            bye = dialog.request("BYE", self.stack.via(_via_transport(peer)), self.contact_uri(peer))
            self.stack.request(bye, peer)
            return
        try:
            agreed = parse_answer(parse_sdp(response.body), offer)
        except SdpError as error:
            log.info("unusable SDP answer on call %s: %s", call.id, error)
            call.dialog = dialog
            call._set_state(CallState.PROGRESSING)
            await call.hangup("failed")
            return
        self._apply(call, agreed, reverse_direction(_audio_direction(agreed.answer)), fork.destination)
        call.dialog = dialog
        call.session = from_answer(response.headers, self.now())
        self.dialogs[dialog.key] = call
        call._set_state(CallState.PROGRESSING)
        await self._cancel_forks(call)

    async def _cancel_forks(self, call: SipCall) -> None:
        for fork in list(call._forks.values()):
            try:
                cancel = self.stack.transactions.cancel_request_for(fork.transaction_id)
            except KeyError:
                continue  # that fork already got its final response
            self.stack.request(cancel, fork.destination)
        call._forks.clear()

    async def _on_stray_response(self, response: Response) -> None:
        """A retransmitted 2xx: our ACK was lost, so send it again."""
        call = self.dialogs.get((response.call_id, response.from_addr.tag or "", response.to_addr.tag or ""))
        if call is not None and call.dialog is not None and response.cseq.method == "INVITE":
            peer = call.dialog.peer
            ack = call.dialog.ack(response.cseq.number, self.stack.via(_via_transport(peer)), self.contact_uri(peer))
            self.stack.send_stateless(ack, call.dialog.peer)

    # -- incoming ------------------------------------------------------------------------------

    async def handle(self, incoming: Incoming, identity: tuple[str, str] | None = None) -> bool:
        """Take the requests that belong to calls; False for those it does not handle."""
        request = incoming.request
        method = request.method
        if method == "INVITE":
            if request.to_addr.tag:
                await self._reinvite(incoming)
            else:
                await self._new_incoming(incoming, identity)
        elif method == "BYE":
            await self._bye(incoming)
        elif method == "UPDATE":
            await self._update(incoming)
        elif method == "CANCEL":
            self._cancel(incoming)
        elif method == "OPTIONS":
            ok = make_response(request, 200)
            ok.headers.add("Allow", ALLOW)
            incoming.respond(ok)
        elif method == "INFO":
            incoming.reply(200 if self._dialog_call(request) else 481)
        else:
            return False
        return True

    def _dialog_call(self, request: Request) -> SipCall | None:
        return self.dialogs.get((request.call_id, request.to_addr.tag or "", request.from_addr.tag or ""))

    async def _new_incoming(self, incoming: Incoming, identity: tuple[str, str] | None) -> None:
        request = incoming.request
        if self.on_incoming is None:
            incoming.reply(480, "No Route For This Call")
            return
        session = answer_invite(request.headers, self.liveness.session, self.now())
        if isinstance(session, TooSmall):
            too_small = make_response(request, 422)
            too_small.headers.add("Min-SE", str(session.min_se_s))
            incoming.respond(too_small)
            return
        incoming.reply(100)
        endpoint = await self.media.open_endpoint()
        call = SipCall(self, "incoming", endpoint, request.to_addr.uri, request.from_addr.uri)
        call._incoming = incoming
        call.identity = identity
        call._session_answer = session
        self.calls.add(call)
        self._pending_invites[incoming.transaction_id] = call
        ringing = make_response(request, 180, to_tag=call.tag)
        ringing.headers.add("Contact", f"<{self.contact_uri(incoming.source)}>")
        incoming.respond(ringing)
        call._set_state(CallState.RINGING)
        try:
            await self.on_incoming(call, request)
        finally:
            self._pending_invites.pop(incoming.transaction_id, None)
        if call.state is CallState.RINGING:
            # The application neither answered nor rejected: nobody is there to take it.
            await call.hangup("noanswer")

    async def _reinvite(self, incoming: Incoming) -> None:
        call = self._dialog_call(incoming.request)
        if call is None or call.dialog is None:
            incoming.reply(481)
            return
        try:
            agreed = negotiate(parse_sdp(incoming.request.body), self.advertised_host, call.endpoint.local_port)
        except SdpError:
            incoming.reply(488)
            return
        self._apply(call, agreed, _audio_direction(agreed.answer), incoming.source)
        ok = make_response(incoming.request, 200)
        ok.headers.add("Contact", f"<{self.contact_uri(incoming.source)}>")
        ok.headers.add("Content-Type", "application/sdp")
        self._session_refreshed(call, incoming.request, ok)
        call.local_sdp = ok.body = agreed.answer.serialize().encode()
        incoming.respond(ok)

    async def _update(self, incoming: Incoming) -> None:
        """UPDATE (RFC 3311) in a call: a session refresh, or a new offer for its media."""
        call = self._dialog_call(incoming.request)
        if call is None or call.dialog is None:
            incoming.reply(481)
            return
        ok = make_response(incoming.request, 200)
        ok.headers.add("Contact", f"<{self.contact_uri(incoming.source)}>")
        if incoming.request.body:
            try:
                agreed = negotiate(parse_sdp(incoming.request.body), self.advertised_host, call.endpoint.local_port)
            except SdpError:
                incoming.reply(488)
                return
            self._apply(call, agreed, _audio_direction(agreed.answer), incoming.source)
            ok.headers.add("Content-Type", "application/sdp")
            call.local_sdp = ok.body = agreed.answer.serialize().encode()
        self._session_refreshed(call, incoming.request, ok)
        incoming.respond(ok)

    def _session_refreshed(self, call: SipCall, request: Request, ok: Response) -> None:
        """The peer repeated the session: the timer starts over, on the interval agreed now."""
        verdict = answer_invite(request.headers, self.liveness.session, self.now())
        if isinstance(verdict, Agreed) and verdict.timer is not None:
            for name, value in verdict.headers:
                ok.headers.add(name, value)
            call.session = verdict.timer
        elif call.session is not None:
            call.session.refreshed(self.now())

    async def _bye(self, incoming: Incoming) -> None:
        call = self._dialog_call(incoming.request)
        if call is None:
            incoming.reply(481)
            return
        incoming.reply(200)
        await call._finish("remote", "normal")

    def _cancel(self, incoming: Incoming) -> None:
        invite_tx = self.stack.transactions.find_invite_server_transaction_for_cancel(incoming.request)
        call = self._pending_invites.get(invite_tx) if invite_tx else None
        if call is None or call._incoming is None:
            incoming.reply(481)
            return
        incoming.reply(200)
        call._incoming.reply(487, to_tag=call.tag)
        self._spawn(call._finish("remote", "cancel"))

    async def _on_ack(self, request: Request, source: Peer) -> None:
        call = self._dialog_call(request)
        if call is not None:
            call._answer_ack.set()


def _via_transport(peer: Peer) -> str:
    return peer[0].upper()


def _audio_direction(sdp: SessionDescription) -> str:
    """The audio stream's direction as this SDP states it (in our own answer: ours)."""
    audio = sdp.audio
    return audio.direction if audio is not None else "sendrecv"


def _apply(endpoint: RtpEndpoint, agreed: Negotiation, direction: str, peer: Peer) -> None:
    """Point the endpoint at the negotiated stream; a non-IP SDP address falls back to the peer's."""
    host, port = agreed.remote
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = peer[1]
    endpoint.set_remote(host, port, agreed.codec, agreed.telephone_event_pt, direction=direction)  # type: ignore[arg-type]
