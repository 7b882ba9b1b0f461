"""SIP floods from one source: new calls and registrations beyond a fair rate are dropped
unanswered, other sources and other requests are served as before."""

from __future__ import annotations

import asyncio

from voipbin.runtime import Platform


async def blast(platform: Platform, requests: list[str], local: str = "127.0.0.1") -> list[bytes]:
    """Send every request from one socket and collect what comes back within a second."""
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            replies.append(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=(local, 0))
    port = transport.get_extra_info("sockname")[1]
    for request in requests:
        transport.sendto(request.format(port=port, local=local).encode(), ("127.0.0.1", platform.sip.stack.port))
    await asyncio.sleep(1.0)
    transport.close()
    return replies


def call_id(response: bytes) -> str:
    return next(line for line in response.decode().split("\r\n") if line.startswith("Call-ID:"))


def invite(n: int) -> str:
    return (
        f"INVITE sip:+15550001111@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {{local}}:{{port}};branch=z9hG4bKflood{n};rport\r\n"
        f"From: <sip:scanner@203.0.113.9>;tag=f{n}\r\nTo: <sip:+15550001111@127.0.0.1>\r\nCall-ID: flood-{n}\r\n"
        "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )


def options(n: int) -> str:
    return (
        f"OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {{local}}:{{port}};branch=z9hG4bKopt{n};rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=o{n}\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )


async def test_an_invite_flood_is_cut_to_the_per_source_rate(platform: Platform) -> None:
    burst = int(2 * platform.settings.sip_invite_rate)

    flood = await blast(platform, [invite(n) for n in range(200)])
    counters = platform.sip.stack.counters
    arrived, dropped = counters.received, counters.dropped  # the kernel may drop some datagrams itself
    other_source = await blast(platform, [invite(1000)], local="127.0.0.2")
    still = await blast(platform, [options(1)])

    answered = {call_id(r) for r in flood}
    # The burst, plus what the rate refills while a busy box works through the datagrams.
    assert 0 < len(answered) <= burst + platform.settings.sip_invite_rate * 1.0 + 2
    assert dropped >= arrived - len(answered) and arrived > len(answered)
    assert any(r.startswith(b"SIP/2.0 404") for r in other_source)  # someone else is still answered
    assert any(r.startswith(b"SIP/2.0 200") for r in still)  # and so are other requests


async def test_an_oversized_message_is_refused_and_the_port_goes_on(platform: Platform) -> None:
    padding = "X-Padding: " + "a" * 20_000 + "\r\n"
    huge = invite(9000).replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n" + padding)

    malformed = platform.sip.stack.counters.malformed
    replies = await blast(platform, [huge])
    still = await blast(platform, [options(2)], local="127.0.0.3")

    assert not any(r.startswith((b"SIP/2.0 1", b"SIP/2.0 2")) for r in replies), replies[:1]  # never processed
    assert platform.sip.stack.counters.malformed == malformed + 1
    assert any(r.startswith(b"SIP/2.0 200") for r in still)


async def test_an_oversized_message_over_tcp_closes_that_connection_only(platform: Platform) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.sip.stack.port)
    writer.write(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nX-Padding: " + b"a" * 200_000)
    await writer.drain()
    try:
        closed = await asyncio.wait_for(reader.read(), 5)  # the server answers what it can, then hangs up
    except ConnectionResetError:
        closed = b""
    writer.close()

    still = await blast(platform, [options(3)], local="127.0.0.4")

    assert b"SIP/2.0 200" not in closed
    assert any(r.startswith(b"SIP/2.0 200") for r in still)
