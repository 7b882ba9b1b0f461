"""One call leg of the user agent as a sans-IO state machine.

:class:`CallLeg` holds everything RFC 3261 (and RFC 4028) asks of a user agent core for one
call: the INVITEs that ring every contact of an extension at once and the forks that answer
them, CANCEL and its races with a 200, re-INVITE and UPDATE (glare included), BYE in every
state, the 2xx retransmitted until its ACK, and the session timer. It never touches sockets,
clocks or tasks. Each input -- a response or request received, an intent of the application
(:meth:`~CallLeg.answer`, :meth:`~CallLeg.reject`, :meth:`~CallLeg.hangup`), or a timer -- takes
the current time ``now`` and returns the actions for the caller to carry out: send a message
outside any transaction, start a client transaction (whose responses are fed back to
:meth:`~CallLeg.receive_response`), respond on a server transaction, point the RTP endpoint at
the negotiated stream, announce a state. Timers are plain deadlines: the caller waits until
:meth:`~CallLeg.next_deadline` and calls :meth:`~CallLeg.on_timer`.

The leg reaches ``hangup`` as soon as the call is over for the application; what RFC 3261 still
asks of it afterwards (CANCEL a fork once it has sent a provisional, ACK and BYE a fork that
answers too late, send a BYE held back until the ACK of our 2xx) goes on until
:attr:`~CallLeg.finished`.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from voipbin.media.sdp import (
    Direction,
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
from voipbin.sip.location import Peer
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
from voipbin.sip.transactions import T1, T2, cancel_request, new_branch

__all__ = [
    "ALLOW",
    "Action",
    "CallLeg",
    "CallState",
    "Local",
    "MediaAgreed",
    "Respond",
    "Send",
    "StateChanged",
    "Transact",
    "dialog_id_of",
    "reason_for_status",
]

RING_TIMEOUT_S = 60.0
REFRESH_RETRY_S = 5.0
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


class CallState(enum.StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    PROGRESSING = "progressing"
    TERMINATING = "terminating"
    CANCELING = "canceling"
    HANGUP = "hangup"


def reason_for_status(status_code: int) -> str:
    """A final response to an INVITE, as VoIPBIN's hangup reason."""
    if status_code in (486, 600):
        return "busy"
    if status_code in (408, 480, 603):
        return "noanswer"
    if status_code == 487:
        return "cancel"
    return "failed"


def _refusal_for(reason: str) -> int:
    """An unanswered incoming call we end, as the final response the caller gets."""
    return {"normal": 603, "busy": 486}.get(reason, 480)


@dataclass(frozen=True)
class Local:
    """How the platform names itself in a leg's messages: our Via, our Contact, our SDP."""

    host: str
    port: int

    def via(self, peer: Peer) -> str:
        return f"SIP/2.0/{peer[0].upper()} {self.host}:{self.port};branch={new_branch()};rport"

    def contact(self, peer: Peer | None = None) -> str:
        """Our Contact for a dialog whose flow is ``peer``: it names TCP when that flow is TCP, or
        a phone registered over TCP only would send its BYE (and any in-dialog request) over UDP."""
        uri = f"sip:voipbin@{self.host}:{self.port}"
        return f"{uri};transport=tcp" if peer is not None and peer[0] == "tcp" else uri

    def request(
        self,
        method: str,
        uri: str,
        to: str,
        peer: Peer,
        sender: Address,
        *,
        max_forwards: int = 70,
        extra: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A request of ours outside any dialog (an INVITE, a keepalive OPTIONS): a fresh From tag,
        Call-ID and CSeq; ``extra`` headers follow the ones every such request carries."""
        headers = Headers(
            [
                ("Via", self.via(peer)),
                ("Max-Forwards", str(max_forwards)),
                ("From", str(Address(sender.uri, sender.display_name, {"tag": new_tag()}))),
                ("To", f"<{to}>"),
                ("Call-ID", new_call_id(self.host)),
                ("CSeq", f"1 {method}"),
                ("Contact", f"<{self.contact(peer)}>"),
                ("Allow", ALLOW),
                *extra,
            ]
        )
        return Request(method, uri, headers, body)


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``message`` outside any transaction: the ACK of a 2xx, or our 2xx again."""

    message: Request | Response
    peer: Peer


@dataclass(frozen=True)
class Transact:
    """Start a client transaction for ``request``; feed its responses to :meth:`CallLeg.receive_response`."""

    request: Request
    peer: Peer


@dataclass(frozen=True)
class Respond:
    """Send ``response`` on the server transaction of ``request`` (one the leg was given)."""

    request: Request
    response: Response


@dataclass(frozen=True)
class StateChanged:
    state: CallState


@dataclass(frozen=True)
class MediaAgreed:
    """Point the RTP endpoint at the stream just negotiated; ``direction`` is ours."""

    negotiation: Negotiation
    direction: Direction
    peer: Peer


Action = Send | Transact | Respond | StateChanged | MediaAgreed


# --- the leg ------------------------------------------------------------------------------------


@dataclass
class _Fork:
    """One INVITE we sent (one per contact rung), the latest of its retries."""

    invite: Request
    peer: Peer
    final: int = 0  # its final status; 0 while it is pending
    provisional: bool = False  # RFC 3261 9.1: only then may it be cancelled
    cancel: bool = False  # to be cancelled, as soon as it may be
    cancelled_at: float | None = None
    authenticated: bool = False
    lengthened: bool = False  # retried once with the interval a 422 asked for
    replaced: bool = False  # by its retry, whose final is the one that counts

    @property
    def branch(self) -> str:
        return self.invite.vias[0].branch or ""


@dataclass
class _Unacked:
    """Our 2xx to an incoming INVITE until its ACK comes: over UDP sent again at T1 doubling
    (RFC 3261 13.3.1.4); over a stream once, which delivers it or says it could not."""

    ok: Response
    peer: Peer
    since: float
    next_at: float
    interval: float = T1

    @property
    def gives_up_at(self) -> float:
        return self.since + 64 * T1


class CallLeg:
    """One call leg between the platform and a phone (or trunk): see the module docstring.

    Read its attributes freely; only its methods change them. ``hangup_by`` (``local`` or
    ``remote``), ``hangup_reason`` (VoIPBIN's reason) and ``hangup_cause`` (why the platform
    ended it, when it did) are set once the leg is in ``hangup``.
    """

    def __init__(
        self, direction: Literal["outgoing", "incoming"], local: Local, policy: SessionTimerPolicy, media_port: int
    ) -> None:
        self.direction = direction
        self.local = local
        self.policy = policy
        self.media_port = media_port
        self.state = CallState.DIALING
        self.hangup_by = ""
        self.hangup_reason = ""
        self.hangup_cause = ""
        self.dialog: Dialog | None = None
        self.session: SessionTimer | None = None
        self.local_sdp = b""  # our current session description, which a refresh repeats
        # Our tag in the dialog of an incoming call (outgoing calls put theirs in each INVITE).
        self.tag = new_tag()
        self._forks: dict[str, _Fork] = {}  # by branch, kept after their final to match a late 2xx
        self._offer: SessionDescription | None = None
        self._auth: tuple[str, str] | None = None
        self._ring_until: float | None = None
        self._released: set[str] = set()  # to-tags of forks that answered after the call was won or over
        # Incoming.
        self._invite: Request | None = None
        self._early_id: tuple[str, str, str] | None = None
        self._source: Peer | None = None
        self._session_answer: Agreed | None = None
        self._unacked: _Unacked | None = None
        self._bye_after_ack = False  # RFC 3261 15: no BYE of ours before the ACK of our 2xx
        self._offered_in_ok = False  # an offerless re-INVITE: the answer comes in its ACK
        # Either way.
        self._bye: Request | None = None  # ours, until its final response
        self._refresh: Request | None = None  # our re-INVITE in flight
        self._last_refresh: Request | None = None  # to ACK its 2xx again, if it comes again
        self._next_refresh = 0.0

    # -- what the leg is -------------------------------------------------------------------------

    @property
    def dialog_id(self) -> tuple[str, str, str] | None:
        """(Call-ID, local tag, remote tag) that in-dialog requests name: on an incoming leg known
        from its INVITE (the caller may BYE its early dialog), on an outgoing one from the answer."""
        if self._early_id is not None:
            return self._early_id
        return self.dialog.key if self.dialog is not None else None

    @property
    def local_ids(self) -> frozenset[tuple[str, str]]:
        """(Call-ID, From tag) of the requests this leg sends; a 2xx that no transaction took
        (a retransmission, or a second fork answering) names one."""
        ids = {(fork.invite.call_id, fork.invite.from_addr.tag or "") for fork in self._forks.values()}
        if self._invite is not None:
            ids.add((self._invite.call_id, self.tag))
        return frozenset(ids)

    @property
    def finished(self) -> bool:
        """Over, and nothing left in flight: no fork pending, no BYE unanswered, no 2xx unacknowledged."""
        return (
            self.state is CallState.HANGUP
            and not self._pending_forks()
            and self._bye is None
            and self._unacked is None
            and self._refresh is None
        )

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work, or None."""
        deadlines = [fork.cancelled_at + 64 * T1 for fork in self._pending_forks() if fork.cancelled_at is not None]
        if self._ring_until is not None and self.state in (CallState.DIALING, CallState.RINGING):
            deadlines.append(self._ring_until)
        if self._unacked is not None:
            deadlines.append(min(self._unacked.next_at, self._unacked.gives_up_at))
        session = self.session
        if session is not None and self.state is CallState.PROGRESSING:
            deadlines.append(session.expires_at)
            if session.we_refresh and self._refresh is None:
                deadlines.append(max(session.refresh_due, self._next_refresh))
        return min(deadlines, default=None)

    # -- outgoing --------------------------------------------------------------------------------

    def dial(
        self,
        targets: Sequence[tuple[str, Peer]],
        caller: Address,
        callee_uri: str,
        now: float,
        *,
        ring_timeout: float = RING_TIMEOUT_S,
        auth: tuple[str, str] | None = None,
        max_forwards: int = 70,
        headers: Sequence[tuple[str, str]] = (),
    ) -> list[Action]:
        """Ring every target (its Contact, and the flow it registered from) at once.

        ``auth`` (username, password) answers a digest challenge to the INVITE; ``headers`` are
        added to each INVITE. No target: the call fails at once.
        """
        if not targets:
            return self._end("local", "failed")
        self._offer = build_offer(self.local.host, self.media_port)
        self.local_sdp = self._offer.serialize().encode()
        self._auth = auth
        self._ring_until = now + ring_timeout
        out: list[Action] = []
        extra = [("User-Agent", "voipbin"), *offer_headers(self.policy), *headers, ("Content-Type", "application/sdp")]
        for contact, peer in targets:
            invite = self.local.request(
                "INVITE", contact, callee_uri, peer, caller, max_forwards=max_forwards, extra=extra, body=self.local_sdp
            )
            fork = _Fork(invite, peer)
            self._forks[fork.branch] = fork
            out.append(Transact(invite, peer))
        return out

    def receive_response(self, response: Response, now: float) -> list[Action]:
        """A response to a request of this leg, in its transaction or (a 2xx) after it ended."""
        if response.cseq.method != "INVITE":
            if self._bye is not None and _same_transaction(response, self._bye) and response.status_code >= 200:
                self._bye = None
            return []  # the call was over for us once the BYE or CANCEL went
        branch = response.vias[0].branch or ""
        fork = self._forks.get(branch)
        if fork is not None:
            return self._fork_response(fork, response, now)
        for refresh in (self._refresh, self._last_refresh):
            if refresh is not None and _same_transaction(response, refresh):
                return self._refresh_response(refresh, response, now)
        return []

    def _fork_response(self, fork: _Fork, response: Response, now: float) -> list[Action]:
        code = response.status_code
        if code < 200:
            if fork.final:
                return []
            fork.provisional = True
            out: list[Action] = []
            if fork.cancel:
                out += self._cancel(fork, now)
            if code in (180, 183) and self.state is CallState.DIALING:
                out += self._enter(CallState.RINGING)
            return out
        if fork.final:
            # The INVITE transaction ends on its first 2xx: later ones are retransmissions, or
            # another phone behind a forking proxy answering too.
            return self._late_answer(fork, response) if code < 300 else []
        fork.final = code
        if code >= 300:
            retry = self._retry(fork, response)
            if retry is not None:
                fork.replaced = True
                self._forks[retry.branch] = retry
                return [Transact(retry.invite, retry.peer)]
            return self._fork_failed()
        return self._answered(fork, response, now)

    def _answered(self, fork: _Fork, response: Response, now: float) -> list[Action]:
        dialog = Dialog.as_caller(fork.invite, response, fork.peer)
        out: list[Action] = [self._ack(dialog, fork.invite.cseq.number)]
        if self.dialog is not None or self.state is CallState.HANGUP:
            # Another phone answered first (or we gave up): this one is released at once.
            return out + self._release(dialog)
        assert self._offer is not None  # set by dial, the only way to have forks
        self.dialog = dialog
        try:
            agreed = parse_answer(parse_sdp(response.body), self._offer)
        except SdpError:
            return out + self._enter(CallState.PROGRESSING) + self.hangup("failed", "", now)
        out.append(MediaAgreed(agreed, reverse_direction(_audio_direction(agreed.answer)), fork.peer))
        self.session = from_answer(response.headers, now)
        out += self._enter(CallState.PROGRESSING)
        for other in self._pending_forks():
            out += self._cancel(other, now)
        return out

    def _late_answer(self, fork: _Fork, response: Response) -> list[Action]:
        to_tag = response.to_addr.tag or ""
        dialog = Dialog.as_caller(fork.invite, response, fork.peer)
        ack = self._ack(dialog, fork.invite.cseq.number)
        if (self.dialog is not None and to_tag == self.dialog.remote_tag) or to_tag in self._released:
            return [ack]  # our ACK was lost
        return [ack, *self._release(dialog)]

    def _release(self, dialog: Dialog) -> list[Action]:
        self._released.add(dialog.remote_tag)
        return [Transact(dialog.request("BYE", self.local.via(dialog.peer), self.local.contact(dialog.peer)), dialog.peer)]

    def _fork_failed(self) -> list[Action]:
        if self._pending_forks() or self.dialog is not None or self.state is CallState.HANGUP:
            return []  # another phone still rings, or the call was already decided
        # Nobody answered: the lowest final says it best (a 480 over a 486 of a phone left off the hook).
        finals = [fork.final for fork in self._forks.values() if not fork.replaced]
        return self._end("remote", reason_for_status(min(finals)))

    def _retry(self, fork: _Fork, challenge: Response) -> _Fork | None:
        """The INVITE again, answering a digest challenge or a 422 (once each), or None."""
        if self.state not in (CallState.DIALING, CallState.RINGING):
            return None  # answered elsewhere, or given up
        code = challenge.status_code
        retry: Request | None = None
        if code in (401, 407) and self._auth is not None and not fork.authenticated:
            retry = _authenticated(fork.invite, challenge, self._auth)
        elif code == 422 and not fork.lengthened:
            retry = _with_interval(fork.invite, min_se(challenge.headers))
        if retry is None:
            return None
        retry.headers.set("Via", self.local.via(fork.peer))
        retry.headers.set("CSeq", f"{fork.invite.cseq.number + 1} INVITE")
        return _Fork(
            retry,
            fork.peer,
            authenticated=fork.authenticated or code in (401, 407),
            lengthened=fork.lengthened or code == 422,
        )

    def _give_up(self, reason: str, now: float) -> list[Action]:
        """End an outgoing call nobody answered yet: every fork is cancelled."""
        out = self._enter(CallState.CANCELING)
        for fork in self._pending_forks():
            out += self._cancel(fork, now)
        return out + self._end("local", reason)

    def _cancel(self, fork: _Fork, now: float) -> list[Action]:
        """Cancel a pending fork; RFC 3261 9.1: not before it has sent a provisional response."""
        if fork.final or fork.cancelled_at is not None:
            return []
        fork.cancel = True
        if not fork.provisional:
            return []
        fork.cancelled_at = now
        return [Transact(cancel_request(fork.invite), fork.peer)]

    def _pending_forks(self) -> list[_Fork]:
        return [fork for fork in self._forks.values() if not fork.final]

    def _ack(self, dialog: Dialog, cseq: int, body: bytes = b"") -> Send:
        return Send(dialog.ack(cseq, self.local.via(dialog.peer), self.local.contact(dialog.peer), body), dialog.peer)

    # -- incoming --------------------------------------------------------------------------------

    def invited(self, invite: Request, source: Peer, now: float) -> list[Action]:
        """An INVITE that starts a call: refused 422 when its session interval is too short,
        else it rings (100, 180) until :meth:`answer`, :meth:`reject` or :meth:`hangup`."""
        self._invite, self._source = invite, source
        self._early_id = (invite.call_id, self.tag, invite.from_addr.tag or "")
        verdict = answer_invite(invite.headers, self.policy, now)
        if isinstance(verdict, TooSmall):
            too_small = make_response(invite, 422)
            too_small.headers.add("Min-SE", str(verdict.min_se_s))
            return [Respond(invite, too_small), *self._end("local", "failed")]
        self._session_answer = verdict
        ringing = make_response(invite, 180, to_tag=self.tag)
        ringing.headers.add("Contact", f"<{self.local.contact(source)}>")
        return [Respond(invite, make_response(invite, 100)), Respond(invite, ringing), *self._enter(CallState.RINGING)]

    def answer(self, now: float) -> list[Action]:
        """Answer an incoming call: 200 OK with our SDP, sent again until the ACK comes."""
        invite, source = self._invite, self._source
        if invite is None or source is None or self.state not in (CallState.DIALING, CallState.RINGING):
            return []
        try:
            media = self._take_offer(invite.body, source)
        except SdpError as error:
            refusal = make_response(invite, 488, f"Not Acceptable Here: {error}"[:120], to_tag=self.tag)
            return [Respond(invite, refusal), *self._end("local", "failed")]
        self.dialog = Dialog.as_callee(invite, self.tag, source)
        ok = make_response(invite, 200, to_tag=self.tag)
        ok.headers.add("Contact", f"<{self.local.contact(source)}>")
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Content-Type", "application/sdp")
        if self._session_answer is not None:
            for name, value in self._session_answer.headers:
                ok.headers.add(name, value)
            self.session = self._session_answer.timer
            if self.session is not None:
                self.session.refreshed(now)
        ok.body = self.local_sdp
        self._unacked = _Unacked(ok, source, since=now, next_at=now + T1 if source[0] == "udp" else now + 64 * T1)
        return [media, Respond(invite, ok), *self._enter(CallState.PROGRESSING)]

    def reject(self, status_code: int, reason: str | None, now: float) -> list[Action]:
        """Refuse an incoming call that has not been answered."""
        if self._invite is None or self.state not in (CallState.DIALING, CallState.RINGING):
            return []
        refusal = make_response(self._invite, status_code, reason, to_tag=self.tag)
        return [Respond(self._invite, refusal), *self._end("local", "noanswer")]

    # -- either way ------------------------------------------------------------------------------

    def hangup(self, reason: str, cause: str, now: float) -> list[Action]:
        """End the call from our side, whatever its state; ``cause`` says why the platform did.

        Answered: BYE (on an incoming call, once our 2xx is acknowledged). An outgoing call not
        answered yet: CANCEL every fork (each once it has sent a provisional). An incoming one:
        a final response, 603 for a plain hangup.
        """
        if self.state is CallState.HANGUP:
            return []
        self.hangup_cause = self.hangup_cause or cause
        if self.dialog is not None:
            out = self._enter(CallState.TERMINATING)
            if self._unacked is not None:
                self._bye_after_ack = True
            else:
                out += self._send_bye()
            return out + self._end("local", reason)
        if self.direction == "outgoing":
            return self._give_up("cancel", now)
        assert self._invite is not None
        refusal = make_response(self._invite, _refusal_for(reason), to_tag=self.tag)
        return [Respond(self._invite, refusal), *self._end("local", reason)]

    def receive_request(self, request: Request, source: Peer, now: float) -> list[Action]:
        """A request within this leg: ACK, BYE, CANCEL (of our INVITE's transaction), INVITE, UPDATE, INFO."""
        method = request.method
        if method == "ACK":
            return self._on_ack(request, now)
        if method == "CANCEL":
            return self._on_cancel(request)
        if not self._in_dialog(request, early=method == "BYE"):
            return [Respond(request, make_response(request, 481))]
        if method == "BYE":
            return self._on_bye(request)
        assert self.dialog is not None  # _in_dialog checked it
        if request.cseq.number <= self.dialog.remote_cseq:
            return [Respond(request, make_response(request, 500, "Out Of Order"))]  # RFC 3261 12.2.2
        self.dialog.remote_cseq = request.cseq.number
        if method == "INVITE":
            return self._on_reinvite(request, source, now)
        if method == "UPDATE":
            return self._on_update(request, source, now)
        return [Respond(request, make_response(request, 200))]

    def on_timer(self, now: float) -> list[Action]:
        """Whatever is due at ``now``: ring timeout, 2xx retransmission, session refresh or expiry."""
        out: list[Action] = []
        for fork in self._pending_forks():
            if fork.cancelled_at is not None and now >= fork.cancelled_at + 64 * T1:
                fork.final = 487  # RFC 3261 9.1: no final after 64*T1: consider it cancelled
        if self._ring_until is not None and now >= self._ring_until and self.state in (CallState.DIALING, CallState.RINGING):
            out += self._give_up("dialout", now)
        if self._unacked is not None:
            out += self._retransmit(self._unacked, now)
        session = self.session
        if session is not None and self.state is CallState.PROGRESSING:
            if now >= session.expires_at:
                out += self.hangup("failed", "session_expired", now)
            elif session.we_refresh and self._refresh is None and now >= max(session.refresh_due, self._next_refresh):
                out += self._send_refresh(session)
        return out

    def _in_dialog(self, request: Request, early: bool) -> bool:
        if self.dialog is not None:
            return self.dialog.matches(request)
        # The caller may BYE an early dialog of ours; the callee never BYEs ours (RFC 3261 15).
        return early and self._early_id is not None and self._early_id == dialog_id_of(request)

    def _on_ack(self, ack: Request, now: float) -> list[Action]:
        if self.dialog is None or not self.dialog.matches(ack):
            return []
        out: list[Action] = []
        if self._unacked is not None and ack.cseq.number == self._unacked.ok.cseq.number:
            self._unacked = None
            if self._bye_after_ack:
                out += self._send_bye()
        if self._offered_in_ok and ack.cseq.number == self.dialog.remote_cseq:
            self._offered_in_ok = False
            if not ack.body:
                return out  # no answer after all: the media stays as it was
            try:
                agreed = parse_answer(parse_sdp(ack.body), parse_sdp(self.local_sdp))
            except SdpError:
                return out + self.hangup("failed", "", now)
            out.append(MediaAgreed(agreed, reverse_direction(_audio_direction(agreed.answer)), self.dialog.peer))
        return out

    def _on_cancel(self, cancel: Request) -> list[Action]:
        ok = Respond(cancel, make_response(cancel, 200))
        if self._invite is None or self.state not in (CallState.DIALING, CallState.RINGING):
            return [ok]  # RFC 3261 9.2: the INVITE has its final response; the CANCEL changes nothing
        terminated = make_response(self._invite, 487, to_tag=self.tag)
        return [ok, Respond(self._invite, terminated), *self._end("remote", "cancel")]

    def _on_bye(self, bye: Request) -> list[Action]:
        out: list[Action] = [Respond(bye, make_response(bye, 200))]
        # The dialog is over: neither our 2xx nor a BYE of ours waits on its ACK any more.
        self._unacked, self._bye_after_ack = None, False
        if self.state is CallState.HANGUP:
            return out  # it crossed ours
        if self.dialog is None:
            # The caller gave up on an early dialog: its INVITE still needs a final (RFC 3261 15.2).
            assert self._invite is not None
            out.append(Respond(self._invite, make_response(self._invite, 487, to_tag=self.tag)))
            return out + self._end("remote", "cancel")
        return out + self._end("remote", "normal")

    def _on_reinvite(self, invite: Request, source: Peer, now: float) -> list[Action]:
        if self._refresh is not None:
            return [Respond(invite, make_response(invite, 491))]  # glare (RFC 3261 14.2)
        ok = make_response(invite, 200)
        ok.headers.add("Contact", f"<{self.local.contact(source)}>")
        ok.headers.add("Content-Type", "application/sdp")
        out: list[Action] = []
        if invite.body:
            try:
                out.append(self._take_offer(invite.body, source))
            except SdpError:
                return [Respond(invite, make_response(invite, 488))]
        else:
            self._offered_in_ok = True  # RFC 3264 5: we offer what we have; the ACK answers
        ok.body = self.local_sdp
        self._session_refreshed(invite, ok, now)
        return [*out, Respond(invite, ok)]

    def _on_update(self, update: Request, source: Peer, now: float) -> list[Action]:
        """UPDATE (RFC 3311): a session refresh, or a new offer for its media."""
        ok = make_response(update, 200)
        ok.headers.add("Contact", f"<{self.local.contact(source)}>")
        out: list[Action] = []
        if update.body:
            if self._refresh is not None:
                return [Respond(update, make_response(update, 491))]  # our offer is outstanding (RFC 3311 5.2)
            try:
                out.append(self._take_offer(update.body, source))
            except SdpError:
                return [Respond(update, make_response(update, 488))]
            ok.headers.add("Content-Type", "application/sdp")
            ok.body = self.local_sdp
        self._session_refreshed(update, ok, now)
        return [*out, Respond(update, ok)]

    def _take_offer(self, offer: bytes, source: Peer) -> MediaAgreed:
        """Answer the peer's SDP ``offer``: our answer becomes the session description a refresh
        repeats. Raises SdpError when we cannot take it (the caller refuses it its own way)."""
        agreed = negotiate(parse_sdp(offer), self.local.host, self.media_port)
        self.local_sdp = agreed.answer.serialize().encode()
        return MediaAgreed(agreed, _audio_direction(agreed.answer), source)

    def _session_refreshed(self, request: Request, ok: Response, now: float) -> None:
        """The peer repeated the session: the timer starts over, on the interval agreed now."""
        verdict = answer_invite(request.headers, self.policy, now)
        if isinstance(verdict, Agreed) and verdict.timer is not None:
            for name, value in verdict.headers:
                ok.headers.add(name, value)
            self.session = verdict.timer
        elif self.session is not None:
            self.session.refreshed(now)

    def _send_refresh(self, session: SessionTimer) -> list[Action]:
        """Repeat the session (a re-INVITE with our SDP): RFC 4028's refresh."""
        assert self.dialog is not None
        peer = self.dialog.peer
        invite = self.dialog.request("INVITE", self.local.via(peer), self.local.contact(peer), self.local_sdp,
                                     "application/sdp")
        refresher = "uac" if self.direction == "outgoing" else "uas"
        invite.headers.add("Session-Expires", f"{session.interval_s};refresher={refresher}")
        invite.headers.add("Supported", "timer")
        invite.headers.add("Allow", ALLOW)
        self._refresh = invite
        return [Transact(invite, peer)]

    def _refresh_response(self, refresh: Request, response: Response, now: float) -> list[Action]:
        code = response.status_code
        if code < 200:
            return []
        assert self.dialog is not None
        if refresh is not self._refresh:
            return [self._ack(self.dialog, refresh.cseq.number)] if code < 300 else []  # a 2xx again
        self._refresh, self._last_refresh = None, refresh
        if code < 300:
            if self.session is not None:
                agreed = from_answer(response.headers, now)
                self.session.refreshed(now, agreed.interval_s if agreed else None)
            return [self._ack(self.dialog, refresh.cseq.number)]
        if code in (408, 481):  # RFC 4028 10: the session is gone
            return self.hangup("failed", "session_refresh_failed", now)
        # Refused for now (491 glare, 500...): try again until the session expires.
        self._next_refresh = now + REFRESH_RETRY_S
        return []

    def _retransmit(self, unacked: _Unacked, now: float) -> list[Action]:
        if now >= unacked.gives_up_at:
            # RFC 3261 13.3.1.4: the dialog stands without its ACK, but the session should end.
            self._unacked = None
            if self._bye_after_ack:
                return self._send_bye()
            return self.hangup("failed", "", now)
        if now < unacked.next_at:
            return []
        unacked.interval = min(2 * unacked.interval, T2)
        unacked.next_at = now + unacked.interval
        return [Send(unacked.ok, unacked.peer)]

    def _send_bye(self) -> list[Action]:
        self._bye_after_ack = False
        assert self.dialog is not None
        peer = self.dialog.peer
        self._bye = self.dialog.request("BYE", self.local.via(peer), self.local.contact(peer))
        return [Transact(self._bye, peer)]

    def _enter(self, state: CallState) -> list[Action]:
        if self.state is CallState.HANGUP or self.state is state:
            return []
        self.state = state
        return [StateChanged(state)]

    def _end(self, by: str, reason: str) -> list[Action]:
        if self.state is CallState.HANGUP:
            return []
        self.hangup_by, self.hangup_reason = by, reason
        return self._enter(CallState.HANGUP)


def _same_transaction(response: Response, request: Request) -> bool:
    return response.vias[0].branch == request.vias[0].branch and response.cseq == request.cseq


def dialog_id_of(request: Request) -> tuple[str, str, str]:
    """The dialog an in-dialog request names, from its recipient's side: (Call-ID, To tag, From tag)."""
    return (request.call_id, request.to_addr.tag or "", request.from_addr.tag or "")


def _audio_direction(sdp: SessionDescription) -> Direction:
    """The audio stream's direction as this SDP states it (in our own answer: ours)."""
    audio = sdp.audio
    return audio.direction if audio is not None else "sendrecv"


def _with_interval(invite: Request, wanted: int | None) -> Request | None:
    """The INVITE again with the session interval a 422 asked for."""
    if wanted is None:
        return None
    retry = Request(invite.method, invite.uri, invite.headers.copy(), invite.body)
    retry.headers.set("Session-Expires", str(wanted))
    retry.headers.set("Min-SE", str(wanted))
    return retry


def _authenticated(invite: Request, challenge: Response, auth: tuple[str, str]) -> Request | None:
    """The INVITE again, answering a 401/407."""
    header = "WWW-Authenticate" if challenge.status_code == 401 else "Proxy-Authenticate"
    chosen = select_challenge(challenge.headers.get_all(header))
    if chosen is None:
        return None
    try:
        value = authorization_for(chosen, "INVITE", invite.uri, auth[0], auth[1], cnonce=secrets.token_hex(8))
    except ValueError:
        return None
    retry = Request(invite.method, invite.uri, invite.headers.copy(), invite.body)
    retry.headers.set("Authorization" if challenge.status_code == 401 else "Proxy-Authorization", value)
    return retry
