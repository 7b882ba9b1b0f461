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
    assert 0 < len(answered) <= burst + 2  # the rest were dropped unanswered
    assert dropped >= arrived - burst - 2 and arrived > burst
    assert any(r.startswith(b"SIP/2.0 404") for r in other_source)  # someone else is still answered
    assert any(r.startswith(b"SIP/2.0 200") for r in still)  # and so are other requests
