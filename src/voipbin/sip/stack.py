"""The SIP stack's I/O: UDP and TCP transports around the sans-IO parser and transaction layer.

Everything protocol-shaped lives in the sans-IO modules; this file only moves bytes, runs the
transaction timers on the event loop, and hands requests and responses to the application
(registrar, user agent) through small async interfaces. Nothing that arrives from the network
may raise out of here: malformed input is answered 400 when it can be, else dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from voipbin.sip.errors import ParseError
from voipbin.sip.location import Peer
from voipbin.sip.message import Request, Response, Via, make_response
from voipbin.sip.parser import StreamFramer, is_keepalive, parse_message, validate_request
from voipbin.sip.transactions import (
    Action,
    DeliverAck,
    DeliverRequest,
    DeliverResponse,
    DeliverStrayResponse,
    Send,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    new_branch,
)

log = logging.getLogger(__name__)

MAX_UDP_DATAGRAM = 65535
PORT_ATTEMPTS = 20


@dataclass
class Incoming:
    """A request for the application, answered through :meth:`respond`."""

    stack: SipStack
    transaction_id: str
    request: Request
    source: Peer

    def respond(self, response: Response) -> None:
        self.stack.respond(self.transaction_id, response)

    def reply(self, status_code: int, reason: str | None = None, *, to_tag: str | None = None) -> None:
        """Answer with a bare response (build one with make_response to add headers)."""
        self.respond(make_response(self.request, status_code, reason, to_tag=to_tag))


@dataclass
class Outgoing:
    """A client transaction: its responses arrive on a queue until the final one (or a timeout)."""

    transaction_id: str
    request: Request
    destination: Peer
    _queue: asyncio.Queue[Response | None] = field(default_factory=asyncio.Queue)

    async def responses(self) -> AsyncIterator[Response]:
        """Provisional responses, then the final one; a timeout ends with a synthetic 408."""
        while True:
            response = await self._queue.get()
            if response is None:
                yield make_response(self.request, 408, "Request Timeout")
                return
            yield response
            if response.status_code >= 200:
                return

    async def final(self) -> Response:
        async for response in self.responses():
            if response.status_code >= 200:
                return response
        raise AssertionError("unreachable: responses() always ends with a final response")


RequestHandler = Callable[[Incoming], Awaitable[None]]
AckHandler = Callable[[Request, Peer], Awaitable[None]]
StrayResponseHandler = Callable[[Response], Awaitable[None]]


@dataclass
class SipCounters:
    received: int = 0
    malformed: int = 0
    answered_400: int = 0
    sent: int = 0
    dropped: int = 0


class SipStack:
    def __init__(self, host: str, port: int, advertised_host: str, clock: Callable[[], float] | None = None) -> None:
        self.host = host
        self.port = port
        self.advertised_host = advertised_host
        self._now = clock or time.monotonic
        self.transactions = TransactionLayer()
        self.counters = SipCounters()
        self.on_request: RequestHandler | None = None
        # Asked before a request starts a transaction; False drops it unanswered (floods).
        self.admit: Callable[[Request, Peer], bool] | None = None
        self.on_ack: AckHandler | None = None
        self.on_stray_response: StrayResponseHandler | None = None
        # Told when a TCP connection ends (the flow, as a Peer): what used it cannot go on.
        self.on_flow_closed: Callable[[Peer], None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_connections: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._outgoing: dict[str, Outgoing] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on UDP and TCP on one port; with port 0, on one that is free for both."""
        for attempt in range(PORT_ATTEMPTS):
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(self.host, self.port))
            port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp_server = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as error:
                self._udp.close()
                # The UDP port the system picked may be taken for TCP: pick again.
                if self.port != 0 or error.errno != errno.EADDRINUSE or attempt == PORT_ATTEMPTS - 1:
                    raise
                continue
            self.port = port
            return

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self._tcp_server:
            self._tcp_server.close()
        for writer in list(self._tcp_connections.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp_server:
            with contextlib.suppress(Exception):
                await self._tcp_server.wait_closed()
        if self._udp:
            self._udp.close()

    # -- what the application calls ----------------------------------------------------------

    def via(self, transport: str = "UDP") -> str:
        return f"SIP/2.0/{transport} {self.advertised_host}:{self.port};branch={new_branch()};rport"

    def respond(self, transaction_id: str, response: Response) -> None:
        self._run(self.transactions.respond(transaction_id, response, self._now()))

    def request(self, request: Request, destination: Peer) -> Outgoing:
        transaction_id, actions = self.transactions.send_request(
            request, destination, self._now(), reliable=destination[0] != "udp"
        )
        outgoing = Outgoing(transaction_id, request, destination)
        self._outgoing[transaction_id] = outgoing
        self._run(actions)
        return outgoing

    def send_stateless(self, message: Request | Response, destination: Peer) -> None:
        """Outside any transaction: the ACK for a 2xx, or a 2xx retransmitted by the UA."""
        self._send(message, destination)

    def close_flow(self, peer: Peer) -> None:
        """Close a TCP connection (a peer that stopped answering on it); ``on_flow_closed`` follows."""
        writer = self._tcp_connections.get((peer[1], peer[2]))
        if peer[0] == "tcp" and writer is not None:
            writer.close()

    # -- network input -----------------------------------------------------------------------

    def receive(self, data: bytes, source: Peer) -> None:
        if is_keepalive(data):
            return
        self.counters.received += 1
        try:
            message = parse_message(data)
        except ParseError as error:
            self.counters.malformed += 1
            log.debug("malformed SIP from %s: %s", source, error)
            return
        self.deliver(message, source)

    def deliver(self, message: Request | Response, source: Peer) -> None:
        try:
            if isinstance(message, Request):
                self._receive_request(message, source)
            else:
                self._run(self.transactions.receive_response(message, source, self._now()))
        except ParseError as error:
            self.counters.malformed += 1
            log.debug("unusable SIP from %s: %s", source, error)
        except Exception:
            # A bug must cost one message, never the listener.
            log.exception("SIP message from %s broke the stack", source)

    def _receive_request(self, request: Request, source: Peer) -> None:
        problem = validate_request(request)
        if problem is not None:
            self.counters.malformed += 1
            if request.method != "ACK" and request.headers.get("Via"):
                self.counters.answered_400 += 1
                self._send(make_response(request, problem.status_code, problem.reason[:100]), source)
            return
        if self.admit is not None and not self.admit(request, source):
            self.counters.dropped += 1
            return
        _stamp_received(request, source)
        self._run(self.transactions.receive_request(request, source, self._now(), reliable=source[0] != "udp"))

    # -- actions from the transaction layer --------------------------------------------------

    def _run(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action.data, cast(Peer, action.destination))
            elif isinstance(action, DeliverRequest):
                source = cast(Peer, action.source)  # the layer hands back the peers we gave it
                self._spawn(self._handle_request(Incoming(self, action.transaction_id, action.request, source)))
            elif isinstance(action, DeliverAck):
                if self.on_ack:
                    self._spawn(self.on_ack(action.request, cast(Peer, action.source)))
            elif isinstance(action, DeliverResponse):
                outgoing = self._outgoing.get(action.transaction_id)
                if outgoing:
                    outgoing._queue.put_nowait(action.response)
            elif isinstance(action, DeliverStrayResponse):
                if self.on_stray_response:
                    self._spawn(self.on_stray_response(action.response))
            elif isinstance(action, TransactionTimeout):
                outgoing = self._outgoing.get(action.transaction_id)
                if outgoing:
                    outgoing._queue.put_nowait(None)
            elif isinstance(action, TransactionTerminated):
                self._outgoing.pop(action.transaction_id, None)
        self._schedule_timer()

    async def _handle_request(self, incoming: Incoming) -> None:
        if self.on_request is None:
            incoming.reply(503)
            return
        try:
            await self.on_request(incoming)
        except Exception:
            log.exception("handling %s failed", incoming.request.method)
            with contextlib.suppress(Exception):
                incoming.reply(500)

    def _schedule_timer(self) -> None:
        deadline = self.transactions.next_deadline()
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - self._now())
            self._timer = loop.call_later(delay, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer = None
        self._run(self.transactions.on_timer(self._now()))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- transports ---------------------------------------------------------------------------

    def _send(self, message: Request | Response, destination: Peer) -> None:
        data = message.encode()
        transport, host, port = destination
        self.counters.sent += 1
        if transport == "udp":
            if self._udp is not None:
                self._udp.sendto(data, (host, port))
            return
        writer = self._tcp_connections.get((host, port))
        if writer is not None and not writer.is_closing():
            writer.write(data)
        else:
            self._spawn(self._connect_and_send(host, port, data))

    async def _connect_and_send(self, host: str, port: int, data: bytes) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError) as error:
            log.info("SIP over TCP to %s:%s failed: %s", host, port, error)
            return
        writer.write(data)
        await self._read_stream(reader, writer, ("tcp", host, port))

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        await self._read_stream(reader, writer, ("tcp", host, port))

    async def _read_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        self._tcp_connections[(peer[1], peer[2])] = writer
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    if isinstance(item, ParseError):
                        self.counters.malformed += 1
                        continue
                    self.counters.received += 1
                    self.deliver(item, peer)
                if framer.broken:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._tcp_connections.get((peer[1], peer[2])) is writer:
                del self._tcp_connections[(peer[1], peer[2])]
            writer.close()
            if self.on_flow_closed is not None:
                try:
                    self.on_flow_closed(peer)
                except Exception:
                    log.exception("handling the end of TCP flow %s failed", peer)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, stack: SipStack) -> None:
        self.stack = stack

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stack.receive(data, ("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


def _stamp_received(request: Request, source: Peer) -> None:
    """RFC 3261 18.2.1 and RFC 3581: note where the request really came from in its top Via."""
    vias = request.headers.get_all("Via")
    top = Via.parse(vias[0])
    changed = False
    if top.host.strip("[]") != source[1]:
        top.params["received"] = source[1]
        changed = True
    if "rport" in top.params:
        top.params["rport"] = str(source[2])
        top.params.setdefault("received", source[1])
        changed = True
    if changed:
        request.headers.remove("Via")
        for value in [str(top), *vias[1:]]:
            request.headers.add("Via", value)
