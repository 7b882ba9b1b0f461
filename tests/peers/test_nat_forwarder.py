"""The loopback NAT used by the telephony NAT test: mappings per client, counters, bounds, cleanup."""

from __future__ import annotations

import asyncio
import socket

from tests.peers.nat import NatForwarder

PUBLIC, PRIVATE, INSIDE = "127.0.0.9", "127.0.0.1", "127.0.0.2"


class _Echo(asyncio.DatagramProtocol):
    """The "platform": answers every datagram with the address it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.transport.sendto(f"{data.decode()} from {addr[0]}:{addr[1]}".encode(), addr)  # type: ignore[attr-defined]


async def _private_udp() -> tuple[asyncio.DatagramTransport, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(_Echo, local_addr=(PRIVATE, 0))
    return transport, int(transport.get_extra_info("sockname")[1])


def _client(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(2)
    return sock


async def _ask(sock: socket.socket, port: int, text: str) -> tuple[str, tuple[str, int]]:
    sock.sendto(text.encode(), (PUBLIC, port))
    data, source = await asyncio.to_thread(sock.recvfrom, 2048)
    return data.decode(), source


async def test_udp_keeps_one_mapping_per_client_and_answers_from_the_public_port() -> None:
    platform, port = await _private_udp()
    nat = NatForwarder(PUBLIC, PRIVATE, udp_ports=[port], inside=INSIDE)
    one, two = _client("127.0.0.5"), _client("127.0.0.6")
    try:
        async with nat:
            first, source_one = await _ask(one, port, "a")
            again, _ = await _ask(one, port, "b")
            second, source_two = await _ask(two, port, "c")
            assert source_one == source_two == (PUBLIC, port)
            seen_one, seen_two = first.split(" from ")[1], second.split(" from ")[1]
            assert again == f"b from {seen_one}" and seen_one != seen_two
            assert seen_one.startswith(INSIDE + ":") and seen_two.startswith(INSIDE + ":")
            assert len(nat.mappings) == 2 and nat.mappings_created == 2
            flow = nat.udp[port]
            assert (flow.inbound_packets, flow.outbound_packets) == (3, 3)
            assert flow.inbound_bytes == 3 and flow.outbound_bytes == sum(len(t) for t in (first, again, second))
        assert nat.open_sockets() == 0
        # Everything was released: the public port binds again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((PUBLIC, port))
    finally:
        one.close()
        two.close()
        platform.close()


async def test_udp_mappings_are_bounded_and_expire_when_idle() -> None:
    platform, port = await _private_udp()
    nat = NatForwarder(PUBLIC, PRIVATE, udp_ports=[port], inside=INSIDE, max_mappings=1, idle_timeout=0.2)
    one, two = _client("127.0.0.5"), _client("127.0.0.6")
    try:
        async with nat:
            await _ask(one, port, "a")
            two.sendto(b"refused", (PUBLIC, port))
            for _ in range(100):
                if nat.dropped:
                    break
                await asyncio.sleep(0.01)
            assert nat.dropped == 1 and len(nat.mappings) == 1
            for _ in range(100):
                if not nat.mappings:
                    break
                await asyncio.sleep(0.02)
            assert not nat.mappings  # idle: expired, its socket closed
            answer, _ = await _ask(two, port, "later")
            assert answer.startswith("later from 127.0.0.2:")
    finally:
        one.close()
        two.close()
        platform.close()


async def test_tcp_is_piped_both_ways_and_closed_on_stop() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        while data := await reader.read(1024):
            writer.write(data + f" from {peer[0]}".encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, PRIVATE, 0)
    port = int(server.sockets[0].getsockname()[1])
    nat = NatForwarder(PUBLIC, PRIVATE, tcp_ports=[port], inside=INSIDE)
    try:
        await nat.start()
        reader, writer = await asyncio.open_connection(PUBLIC, port, local_addr=("127.0.0.5", 0))
        writer.write(b"REGISTER")
        assert await asyncio.wait_for(reader.read(1024), 2) == b"REGISTER from 127.0.0.2"
        assert (nat.tcp[port].inbound_bytes, nat.tcp[port].outbound_bytes) == (8, 23)
        await nat.stop()
        assert await asyncio.wait_for(reader.read(1024), 2) == b""  # the NAT's side is gone
        assert nat.open_sockets() == 0
        writer.close()
    finally:
        await nat.stop()
        server.close()
        await server.wait_closed()
