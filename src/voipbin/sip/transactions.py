"""The RFC 3261 section 17 transaction layer as a sans-IO state machine.

:class:`TransactionLayer` owns every client and server transaction of one
SIP stack.  It never touches sockets or clocks: each entry point takes the
current time ``now`` (seconds, any monotonic origin) and returns a list of
actions for the caller to carry out -- :class:`Send` a message to a peer, or
hand something to the transaction user (TU).  Retransmission and timeout
timers are plain deadlines: the caller sleeps until :meth:`next_deadline`
and then calls :meth:`on_timer`.

Peers (``source`` / ``destination``) are opaque hashable values from the
transport adapter, e.g. ``("udp", "192.0.2.1", 5060)``; they are passed
through untouched.  ``reliable`` marks a stream transport (TCP/TLS), on
which nothing is retransmitted and the "absorb retransmissions" waits
(timers D, I, J, K) are zero.

RFC 6026 is applied on the server side: a 2xx to INVITE leaves the server
transaction in Accepted for 64*T1, absorbing INVITE retransmissions instead
of presenting them to the TU as new requests.  The client INVITE
transaction ends on its first 2xx as in RFC 3261; later 2xx (retransmitted
or from other forks) surface as :class:`DeliverStrayResponse`.

The TU keeps the jobs RFC 3261 gives it: sending 100 Trying (or any
provisional) promptly for INVITE, retransmitting its 2xx until the ACK
arrives (13.3.1.4), and building and sending the ACK for a 2xx outside any
transaction (13.2.2.4).
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from .errors import ParseError
from .message import BRANCH_MAGIC, Headers, Request, Response, Via

__all__ = [
    "T1",
    "T2",
    "T4",
    "Action",
    "DeliverAck",
    "DeliverRequest",
    "DeliverResponse",
    "DeliverStrayResponse",
    "Send",
    "Timer",
    "Transaction",
    "TransactionKind",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimeout",
    "cancel_request",
    "new_branch",
]


# RFC 3261's timer defaults; the user agent core's own timers (13.3.1.4, 9.1) run on them too.
T1: Final = 0.5  # the round-trip estimate
T2: Final = 4.0  # the cap on non-INVITE and final-response retransmission intervals
T4: Final = 5.0  # how long a message may linger in the network


def new_branch() -> str:
    """A fresh branch id: the RFC 3261 magic cookie plus 128 random bits."""
    return BRANCH_MAGIC + secrets.token_hex(16)


# --- actions --------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Transmit ``data`` to ``destination`` (the transport encodes it)."""

    data: Request | Response
    destination: Hashable


@dataclass(frozen=True)
class DeliverRequest:
    """A new request for the TU; answer it with :meth:`TransactionLayer.respond`."""

    transaction_id: str
    request: Request
    source: Hashable


@dataclass(frozen=True)
class DeliverAck:
    """An ACK that no server transaction consumed: the ACK for a 2xx, or a stray."""

    request: Request
    source: Hashable


@dataclass(frozen=True)
class DeliverResponse:
    """A response on a client transaction: every 1xx, the first final."""

    transaction_id: str
    response: Response


@dataclass(frozen=True)
class DeliverStrayResponse:
    """A 2xx to INVITE with no live client transaction.

    The INVITE transaction ends on its first 2xx, so retransmissions of it,
    and 2xx from further forks, arrive here; the TU must (re-)ACK them.
    """

    response: Response


@dataclass(frozen=True)
class TransactionTimeout:
    """Timer B, F or H expired; a :class:`TransactionTerminated` follows."""

    transaction_id: str
    method: str


@dataclass(frozen=True)
class TransactionTerminated:
    """The transaction is gone; its id will never be used again."""

    transaction_id: str


Action = (
    Send
    | DeliverRequest
    | DeliverAck
    | DeliverResponse
    | DeliverStrayResponse
    | TransactionTimeout
    | TransactionTerminated
)


# --- transaction state ----------------------------------------------------


class TransactionKind(Enum):
    CLIENT_INVITE = "client-invite"
    CLIENT_NON_INVITE = "client-non-invite"
    SERVER_INVITE = "server-invite"
    SERVER_NON_INVITE = "server-non-invite"


class TransactionState(Enum):
    """The states of the four RFC 3261 17 machines, plus RFC 6026 Accepted.

    Calling is client INVITE only, Trying non-INVITE only, Confirmed and
    Accepted server INVITE only; the rest are shared.
    """

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Timer(Enum):
    A = "A"  # client INVITE: retransmit the request
    B = "B"  # client INVITE: give up waiting for any response
    D = "D"  # client INVITE: absorb final response retransmissions
    E = "E"  # client non-INVITE: retransmit the request
    F = "F"  # client non-INVITE: give up waiting for a final response
    K = "K"  # client non-INVITE: absorb final response retransmissions
    G = "G"  # server INVITE: retransmit the non-2xx final
    H = "H"  # server INVITE: give up waiting for the ACK
    I = "I"  # server INVITE: absorb ACK retransmissions
    J = "J"  # server non-INVITE: absorb request retransmissions
    L = "L"  # server INVITE (RFC 6026): absorb INVITE retransmissions after 2xx


_RETRANSMIT = frozenset({Timer.A, Timer.E, Timer.G})
_TIMEOUT = frozenset({Timer.B, Timer.F, Timer.H})

_Key = tuple[object, ...]


@dataclass(eq=False)
class Transaction:
    """One transaction.  Read it freely; only the layer changes it."""

    id: str
    kind: TransactionKind
    state: TransactionState
    request: Request
    peer: Hashable  # where requests go (client) or responses go (server)
    reliable: bool
    key: _Key = field(repr=False)
    # Server: the response to resend on a request retransmission or timer G.
    last_response: Response | None = None
    # Client INVITE: the ACK for a non-2xx final, resent on its retransmission.
    ack: Request | None = None
    interval: float = 0.0  # current retransmission interval of timer A, E or G
    timers: dict[Timer, int] = field(default_factory=dict, repr=False)  # armed -> heap seq

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_client(self) -> bool:
        return self.kind in (TransactionKind.CLIENT_INVITE, TransactionKind.CLIENT_NON_INVITE)


# --- matching -------------------------------------------------------------


def _top_via(message: Request | Response) -> Via:
    values = message.headers.get_all("Via")
    if not values:
        raise ParseError("missing Via")
    return Via.parse(values[0])


def _server_key(request: Request, method: str) -> _Key:
    """The RFC 3261 17.2.3 key of ``request`` as if its method were ``method``.

    Requests without the magic cookie (RFC 2543 peers) get a key built from
    fields that stay fixed across retransmissions and across the INVITE,
    its non-2xx ACK and its CANCEL -- enough to absorb retransmissions
    without the full 2543 matching rules.
    """
    via = _top_via(request)
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_MAGIC):
        return (branch, via.host.lower(), via.port, method)
    return (request.call_id, request.cseq.number, request.from_addr.tag, str(via), method)


def _copy(dst: Headers, src: Request | Response, name: str) -> None:
    for value in src.headers.get_all(name):
        dst.add(name, value)


def _hop_request(request: Request, method: str, to_source: Request | Response) -> Request:
    """ACK or CANCEL sharing ``request``'s top Via, hence its branch (RFC 3261 9.1, 17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    headers.add("Max-Forwards", request.headers.get("Max-Forwards") or "70")
    for name in ("Route", "From"):
        _copy(headers, request, name)
    _copy(headers, to_source, "To")
    _copy(headers, request, "Call-ID")
    headers.add("CSeq", f"{request.cseq.number} {method}")
    return Request(method, request.uri, headers)


def cancel_request(invite: Request) -> Request:
    """The CANCEL for ``invite`` (RFC 3261 9.1): same top Via (so its branch), Route, From, To,
    Call-ID and CSeq number; servers find the INVITE by that branch."""
    return _hop_request(invite, "CANCEL", invite)


# --- the layer --------------------------------------------------------------


class TransactionLayer:
    """All client and server transactions of one SIP stack.

    Timer defaults are RFC 3261's (:data:`T1`, :data:`T2`, :data:`T4`).
    """

    def __init__(self, timer_t1: float = T1, timer_t2: float = T2, timer_t4: float = T4) -> None:
        if not (0 < timer_t1 <= timer_t2 and timer_t4 > 0):
            raise ValueError("timers need 0 < T1 <= T2 and T4 > 0")
        self.t1 = timer_t1
        self.t2 = timer_t2
        self.t4 = timer_t4
        self._transactions: dict[str, Transaction] = {}
        self._view = MappingProxyType(self._transactions)
        self._clients: dict[_Key, str] = {}
        self._servers: dict[_Key, str] = {}
        # (deadline, seq, transaction id, timer).  Cancelled timers stay in
        # the heap and are skipped when their seq no longer matches.
        self._heap: list[tuple[float, int, str, Timer]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)

    @property
    def active_count(self) -> int:
        return len(self._transactions)

    @property
    def transactions(self) -> Mapping[str, Transaction]:
        """Live transactions by id (a read-only view)."""
        return self._view

    # --- server side --------------------------------------------------------

    def receive_request(
        self, request: Request, source: Hashable, now: float, reliable: bool
    ) -> list[Action]:
        """Feed a request from the network.

        Requests that cannot be keyed -- no usable top Via or, without the
        magic cookie, no usable Call-ID/CSeq/From -- are dropped; the
        transport should have answered them with ``validate_request``.
        """
        is_ack = request.method == "ACK"
        try:
            key = _server_key(request, "INVITE" if is_ack else request.method)
        except ParseError:
            return []
        tid = self._servers.get(key)
        txn = self._transactions[tid] if tid is not None else None
        if is_ack:
            return self._server_ack(txn, request, source, now)
        if txn is not None:
            # A retransmission: repeat whatever we last answered.  Trying has
            # nothing yet; Accepted and Confirmed absorb silently.
            if txn.state in (TransactionState.PROCEEDING, TransactionState.COMPLETED) and txn.last_response is not None:
                return [Send(txn.last_response, txn.peer)]
            return []
        invite = request.method == "INVITE"
        txn = self._add(
            "s",
            TransactionKind.SERVER_INVITE if invite else TransactionKind.SERVER_NON_INVITE,
            TransactionState.PROCEEDING if invite else TransactionState.TRYING,
            request,
            source,
            reliable,
            key,
        )
        return [DeliverRequest(txn.id, request, source)]

    def _server_ack(
        self, txn: Transaction | None, ack: Request, source: Hashable, now: float
    ) -> list[Action]:
        if txn is None:
            # The ACK for a 2xx has its own branch (RFC 3261 17.2.3): TU business.
            return [DeliverAck(ack, source)]
        if txn.state is TransactionState.COMPLETED:
            txn.state = TransactionState.CONFIRMED
            self._disarm(txn, Timer.G, Timer.H)
            return self._linger(txn, Timer.I, 0.0 if txn.reliable else self.t4, now)
        if txn.state is TransactionState.ACCEPTED:
            # Only an RFC 2543 peer reuses the INVITE's Via for the 2xx ACK.
            return [DeliverAck(ack, source)]
        return []

    def find_invite_server_transaction_for_cancel(self, cancel: Request) -> str | None:
        """The id of the INVITE server transaction ``cancel`` targets (RFC 3261 9.2)."""
        try:
            return self._servers.get(_server_key(cancel, "INVITE"))
        except ParseError:
            return None

    def respond(self, transaction_id: str, response: Response, now: float) -> list[Action]:
        """Send the TU's ``response`` on a server transaction.

        Responses the state machine must discard (a second final, anything
        on an already terminated transaction) yield no actions: a TU racing
        timer L with its 2xx retransmissions is normal, not an error.
        """
        txn = self._transactions.get(transaction_id)
        if txn is None:
            return []
        if txn.is_client:
            raise ValueError(f"{transaction_id} is a client transaction")
        code = response.status_code
        if txn.state is TransactionState.ACCEPTED and 200 <= code < 300:
            return [Send(response, txn.peer)]
        if txn.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return []
        txn.last_response = response
        out: list[Action] = [Send(response, txn.peer)]
        if code < 200:
            txn.state = TransactionState.PROCEEDING
        elif txn.kind is TransactionKind.SERVER_NON_INVITE:
            txn.state = TransactionState.COMPLETED
            out += self._linger(txn, Timer.J, 0.0 if txn.reliable else 64 * self.t1, now)
        elif code < 300:
            txn.state = TransactionState.ACCEPTED
            self._arm(txn, Timer.L, now + 64 * self.t1)
        else:
            txn.state = TransactionState.COMPLETED
            if not txn.reliable:
                txn.interval = self.t1
                self._arm(txn, Timer.G, now + self.t1)
            self._arm(txn, Timer.H, now + 64 * self.t1)
        return out

    # --- client side --------------------------------------------------------

    def send_request(
        self, request: Request, destination: Hashable, now: float, reliable: bool
    ) -> tuple[str, list[Action]]:
        """Start a client transaction for ``request``.

        Its top Via must carry a fresh :func:`new_branch`.  ACK is refused:
        the layer sends non-2xx ACKs itself and 2xx ACKs are not transactions.
        """
        if request.method == "ACK":
            raise ValueError("ACK is never sent in a client transaction")
        try:
            branch = _top_via(request).branch
            cseq = request.cseq
        except ParseError as exc:
            raise ValueError(f"unusable request: {exc.reason}") from exc
        if branch is None or not branch.startswith(BRANCH_MAGIC):
            raise ValueError("the top Via needs a branch from new_branch()")
        if cseq.method != request.method:
            raise ValueError("CSeq method differs from the request method")
        key: _Key = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"branch {branch} already used for {request.method}")
        invite = request.method == "INVITE"
        txn = self._add(
            "c",
            TransactionKind.CLIENT_INVITE if invite else TransactionKind.CLIENT_NON_INVITE,
            TransactionState.CALLING if invite else TransactionState.TRYING,
            request,
            destination,
            reliable,
            key,
        )
        if not reliable:
            txn.interval = self.t1
            self._arm(txn, Timer.A if invite else Timer.E, now + self.t1)
        self._arm(txn, Timer.B if invite else Timer.F, now + 64 * self.t1)
        return txn.id, [Send(request, destination)]

    def cancel_request_for(self, invite_transaction_id: str) -> Request:
        """Build the CANCEL for a pending INVITE (RFC 3261 9.1); send it with :meth:`send_request`.

        It shares the INVITE's top Via (and so its branch): servers find the
        INVITE by that, and the CANCEL's own key differs only by method.
        """
        txn = self._transactions.get(invite_transaction_id)
        if txn is None or txn.kind is not TransactionKind.CLIENT_INVITE:
            raise KeyError(invite_transaction_id)
        return cancel_request(txn.request)

    def receive_response(self, response: Response, source: Hashable, now: float) -> list[Action]:
        """Feed a response from the network.

        ``source`` plays no part in matching: RFC 3261 17.1.3 matches on the
        branch and CSeq method alone.  Unmatched responses are dropped,
        except 2xx to INVITE, which the TU must still ACK.
        """
        try:
            branch = _top_via(response).branch
            method = response.cseq.method
        except ParseError:
            return []
        tid = self._clients.get((branch, method))
        txn = self._transactions[tid] if tid is not None else None
        code = response.status_code
        if txn is None:
            if method == "INVITE" and 200 <= code < 300:
                return [DeliverStrayResponse(response)]
            return []
        if txn.state in (
            TransactionState.CALLING,
            TransactionState.TRYING,
            TransactionState.PROCEEDING,
        ):
            return self._client_first_response(txn, response, now)
        # Completed: the final was already delivered, so this is a retransmission.
        if txn.kind is TransactionKind.CLIENT_INVITE:
            if 200 <= code < 300:
                # A fork answering after our non-2xx final: still needs an ACK.
                return [DeliverStrayResponse(response)]
            if code >= 300 and txn.ack is not None:
                # The server retransmits its final until it sees our ACK.
                return [Send(txn.ack, txn.peer)]
        return []

    def _client_first_response(
        self, txn: Transaction, response: Response, now: float
    ) -> list[Action]:
        """A response before the transaction has seen a final one."""
        code = response.status_code
        out: list[Action] = [DeliverResponse(txn.id, response)]
        invite = txn.kind is TransactionKind.CLIENT_INVITE
        if code < 200:
            txn.state = TransactionState.PROCEEDING
            if invite:
                # The INVITE is known to have arrived; how long it may ring
                # is the TU's call (CANCEL), not timer B's.
                self._disarm(txn, Timer.A, Timer.B)
            # Non-INVITE keeps timer E running; it fires at T2 from now on.
            return out
        if not invite:
            txn.state = TransactionState.COMPLETED
            self._disarm(txn, Timer.E, Timer.F)
            return out + self._linger(txn, Timer.K, 0.0 if txn.reliable else self.t4, now)
        if code < 300:
            # The 2xx ACK belongs to the dialog, not this transaction (RFC 3261 17.1.1.2).
            return out + self._terminate(txn)
        txn.state = TransactionState.COMPLETED
        self._disarm(txn, Timer.A, Timer.B)
        txn.ack = _hop_request(txn.request, "ACK", response)
        out.append(Send(txn.ack, txn.peer))
        # Timer D must outlast the server's timer H (64*T1) retransmissions.
        wait = 0.0 if txn.reliable else max(32.0, 64 * self.t1)
        return out + self._linger(txn, Timer.D, wait, now)

    # --- timers -------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work, or None when no timer is armed."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, in deadline order."""
        out: list[Action] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            txn = self._transactions[entry[2]]
            timer = entry[3]
            del txn.timers[timer]
            out += self._fire(txn, timer, now)
        return out

    def _live(self, entry: tuple[float, int, str, Timer]) -> bool:
        _, seq, tid, timer = entry
        txn = self._transactions.get(tid)
        return txn is not None and txn.timers.get(timer) == seq

    def _fire(self, txn: Transaction, timer: Timer, now: float) -> list[Action]:
        if timer in _RETRANSMIT:
            if timer is Timer.A:
                txn.interval *= 2
            elif timer is Timer.E and txn.state is TransactionState.PROCEEDING:
                txn.interval = self.t2
            else:
                txn.interval = min(2 * txn.interval, self.t2)
            # Rescheduled from now, not from the deadline, so a late caller
            # gets one retransmission rather than a burst.
            self._arm(txn, timer, now + txn.interval)
            message = txn.last_response if timer is Timer.G else txn.request
            assert message is not None  # G is armed only after a final was sent
            return [Send(message, txn.peer)]
        if timer in _TIMEOUT:
            return [TransactionTimeout(txn.id, txn.method), *self._terminate(txn)]
        return self._terminate(txn)

    # --- bookkeeping --------------------------------------------------------

    def _add(
        self,
        prefix: str,
        kind: TransactionKind,
        state: TransactionState,
        request: Request,
        peer: Hashable,
        reliable: bool,
        key: _Key,
    ) -> Transaction:
        txn = Transaction(f"{prefix}{next(self._ids)}", kind, state, request, peer, reliable, key)
        self._transactions[txn.id] = txn
        (self._clients if txn.is_client else self._servers)[key] = txn.id
        return txn

    def _arm(self, txn: Transaction, timer: Timer, deadline: float) -> None:
        seq = next(self._seq)
        txn.timers[timer] = seq
        heapq.heappush(self._heap, (deadline, seq, txn.id, timer))

    @staticmethod
    def _disarm(txn: Transaction, *timers: Timer) -> None:
        for timer in timers:
            txn.timers.pop(timer, None)

    def _linger(self, txn: Transaction, timer: Timer, wait: float, now: float) -> list[Action]:
        """Enter a wait that absorbs retransmissions; zero (reliable) ends it at once."""
        if wait == 0:
            return self._terminate(txn)
        self._arm(txn, timer, now + wait)
        return []

    def _terminate(self, txn: Transaction) -> list[Action]:
        txn.state = TransactionState.TERMINATED
        txn.timers.clear()
        del self._transactions[txn.id]
        del (self._clients if txn.is_client else self._servers)[txn.key]
        return [TransactionTerminated(txn.id)]
