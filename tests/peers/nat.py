"""A port-forwarding "NAT" on loopback, for tests of a platform that has one address behind NAT.

For each forwarded port P it listens on ``public:P`` and forwards to ``private:P`` (where the
platform binds). Like a real NAT it keeps one mapping per outside client: its own inside socket,
bound on ``inside`` (the NAT's address on the private side), so the platform sees every client
as ``inside:<mapped port>`` and whatever it sends to that mapping goes back out to that client
from ``public:P``. The inside sockets are connected to ``private:P``: like a port-restricted NAT,
a mapping only lets the forwarded port's replies through.

UDP carries SIP, RTP and RTCP; TCP (one inside connection per outside connection) carries SIP.
Packets and bytes are counted per port and direction: ``inbound`` is outside → private (phone to
platform), ``outbound`` is private → outside (platform to phone). Mappings are bounded and expire
when idle; :meth:`NatForwarder.stop` closes every socket it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Self

Address = tuple[str, int]


@dataclass
class Flow:
    """Traffic through one forwarded port."""

    inbound_packets: int = 0
    inbound_bytes: int = 0
    outbound_packets: int = 0
    outbound_bytes: int = 0

    def inbound(self, size: int) -> None:
        self.inbound_packets += 1
        self.inbound_bytes += size

    def outbound(self, size: int) -> None:
        self.outbound_packets += 1
        self.outbound_bytes += size


@dataclass
class _UdpMapping:
    port: int
    client: Address
    sock: socket.socket
    last_used: float = field(default_factory=time.monotonic)

    @property
    def inside_address(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return (str(host), int(port))


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, nat: NatForwarder, port: int) -> None:
        self.nat = nat
        self.port = port
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
        self.nat._from_outside(self.port, data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.nat.errors += 1


class NatForwarder:
    """Forwards ``udp_ports`` and ``tcp_ports`` from ``public`` to ``private`` (see the module doc)."""

    def __init__(
        self,
        public: str,
        private: str,
        *,
        udp_ports: Iterable[int] = (),
        tcp_ports: Iterable[int] = (),
        inside: str | None = None,
        max_mappings: int = 256,
        idle_timeout: float = 120.0,
    ) -> None:
        self.public = public
        self.private = private
        self.inside = inside or private
        self.udp_ports = sorted(set(udp_ports))
        self.tcp_ports = sorted(set(tcp_ports))
        self.max_mappings = max_mappings
        self.idle_timeout = idle_timeout
        self.udp: dict[int, Flow] = {port: Flow() for port in self.udp_ports}
        self.tcp: dict[int, Flow] = {port: Flow() for port in self.tcp_ports}
        self.dropped = 0  # packets or connections refused: table full, or a send that would block
        self.errors = 0
        self.mappings_created = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: dict[int, asyncio.DatagramTransport] = {}
        self._mappings: dict[tuple[int, Address], _UdpMapping] = {}
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[object]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed: list[asyncio.Future[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> NatForwarder:
        self._loop = asyncio.get_running_loop()
        try:
            for port in self.udp_ports:
                transport, protocol = await self._loop.create_datagram_endpoint(
                    lambda port=port: _Listener(self, port), local_addr=(self.public, port)  # type: ignore[misc]
                )
                self._listeners[port] = transport
                self._closed.append(protocol.closed)
            for port in self.tcp_ports:
                server = await asyncio.start_server(
                    lambda r, w, port=port: self._serve_tcp(port, r, w), self.public, port  # type: ignore[misc]
                )
                self._servers.append(server)
        except BaseException:
            await self.stop()
            raise
        self._sweeper = asyncio.create_task(self._sweep())
        return self

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        for mapping in list(self._mappings.values()):
            self._close_mapping(mapping)
        for transport in self._listeners.values():
            transport.close()
        self._listeners.clear()
        # A transport closes its socket on the next loop iteration: wait, so the ports are free.
        await asyncio.wait_for(asyncio.gather(*self._closed), 5)
        self._closed.clear()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what tests look at ------------------------------------------------------------------

    @property
    def mappings(self) -> dict[tuple[int, Address], Address]:
        """(forwarded port, outside client) → the inside address the private host sees."""
        return {key: mapping.inside_address for key, mapping in self._mappings.items()}

    def open_sockets(self) -> int:
        """Sockets this forwarder holds now (0 once stopped)."""
        return len(self._listeners) + len(self._mappings) + len(self._writers) + sum(
            len(server.sockets) for server in self._servers
        )

    def udp_total(self, ports: Iterable[int]) -> Flow:
        total = Flow()
        for port in ports:
            flow = self.udp.get(port, Flow())
            total.inbound_packets += flow.inbound_packets
            total.inbound_bytes += flow.inbound_bytes
            total.outbound_packets += flow.outbound_packets
            total.outbound_bytes += flow.outbound_bytes
        return total

    # -- UDP ---------------------------------------------------------------------------------

    def _from_outside(self, port: int, data: bytes, client: Address) -> None:
        mapping = self._mappings.get((port, client))
        if mapping is None:
            mapping = self._new_mapping(port, client)
            if mapping is None:
                self.dropped += 1
                return
        mapping.last_used = time.monotonic()
        try:
            mapping.sock.send(data)
        except BlockingIOError:
            self.dropped += 1
            return
        except OSError:
            self.errors += 1  # e.g. ICMP unreachable from an earlier packet: nobody on private:P
            return
        self.udp[port].inbound(len(data))

    def _new_mapping(self, port: int, client: Address) -> _UdpMapping | None:
        if len(self._mappings) >= self.max_mappings or self._loop is None:
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.inside, 0))
            sock.connect((self.private, port))
        except OSError:
            sock.close()
            self.errors += 1
            return None
        mapping = _UdpMapping(port, client, sock)
        self._mappings[(port, client)] = mapping
        self.mappings_created += 1
        self._loop.add_reader(sock.fileno(), self._from_inside, mapping)
        return mapping

    def _from_inside(self, mapping: _UdpMapping) -> None:
        listener = self._listeners.get(mapping.port)
        for _ in range(64):  # bounded per wake-up, so one busy mapping cannot starve the loop
            try:
                data = mapping.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError:
                self.errors += 1  # ICMP port unreachable reported on the connected socket
                return
            if listener is None or listener.is_closing():
                return
            mapping.last_used = time.monotonic()
            listener.sendto(data, mapping.client)
            self.udp[mapping.port].outbound(len(data))

    def _close_mapping(self, mapping: _UdpMapping) -> None:
        self._mappings.pop((mapping.port, mapping.client), None)
        if self._loop is not None and mapping.sock.fileno() >= 0:
            self._loop.remove_reader(mapping.sock.fileno())
        mapping.sock.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.idle_timeout / 4))
            deadline = time.monotonic() - self.idle_timeout
            for mapping in [m for m in self._mappings.values() if m.last_used < deadline]:
                self._close_mapping(mapping)

    # -- TCP ---------------------------------------------------------------------------------

    async def _serve_tcp(self, port: int, outside_r: asyncio.StreamReader, outside_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._handlers) >= self.max_mappings or task is None:
            self.dropped += 1
            outside_w.close()
            return
        self._handlers.add(task)
        self._writers.add(outside_w)
        inside_w: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Task[None]] = []
        try:
            inside_r, inside_w = await asyncio.wait_for(
                asyncio.open_connection(self.private, port, local_addr=(self.inside, 0)), 5
            )
            self._writers.add(inside_w)
            flow = self.tcp[port]
            pipes = [
                asyncio.create_task(_pipe(outside_r, inside_w, flow.inbound)),
                asyncio.create_task(_pipe(inside_r, outside_w, flow.outbound)),
            ]
            # Either side closing ends the connection on both, as a NAT's TCP mapping would.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, TimeoutError):
            self.errors += 1
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for writer in (outside_w, inside_w):
                if writer is not None:
                    writer.close()
                    self._writers.discard(writer)
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None]) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            count(len(data))
            writer.write(data)
            await writer.drain()
