"""PJSIP (PyPI ``pjsua2-python``, in a child process of its own) as a real peer, over UDP and over
TCP only: it registers as the seed says, takes the seed's first call and its real-time call,
hears the greetings and a ``say``, is transcribed, and hangs up from its side and ours."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.live import free_port
from tests.peers import pjsua
from tests.peers.pjsua import Pjsua
from tests.telephony import softphones
from tests.telephony.conftest import until
from voipbin.media.endpoint import MediaEngine
from voipbin.runtime import Platform
from voipbin.sip.location import Binding
from voipbin.sip.message import Address, Request
from voipbin.sip.stack import Incoming, SipStack
from voipbin.sip.ua import SipCall, UserAgent

# The peer tests are slow and need the wheel; the unit test of our Contact below is neither.
needs_pjsua = pytest.mark.skipif(not pjsua.available(), reason="pjsua2-python is in the test extra (`make test`)")


@pytest.fixture(params=["udp", "tcp"])
async def phone(
    request: pytest.FixtureRequest, tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> AsyncIterator[tuple[Pjsua, dict[str, Any], str]]:
    transport = request.param
    async with softphones.registered(Pjsua.start, transport, tmp_path, client, platform, alice) as (phone, extension):
        assert isinstance(phone, Pjsua)
        pj = phone
        await until(lambda: pj.registered, timeout=5)  # its own view: the 200 reached it too
        [binding] = platform.sip.registrations(alice.customer_id, "quickstart1")
        assert binding.user_agent == "pjsua2-test-peer", binding
        yield pj, extension, transport


SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class RawTcpPhone:
    """Just enough of a phone on a TCP connection to read what we send and answer it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def receive(self) -> tuple[str, dict[str, str], str]:
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)).decode()
        first, *lines = head.strip().split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return first, headers, body.decode()

    def send(self, first: str, headers: list[tuple[str, str]], body: str = "") -> None:
        lines = [first, *(f"{name}: {value}" for name, value in headers), f"Content-Length: {len(body)}", "", body]
        self.writer.write("\r\n".join(lines).encode())

    def answer(self, request: dict[str, str], status: str, to_tag: str = "", body: str = "") -> None:
        to = request["to"] if ";tag=" in request["to"] or not to_tag else f"{request['to']};tag={to_tag}"
        headers = [(name, request[name.lower()]) for name in ("Via", "From")] + [("To", to)]
        headers += [(name, request[name.lower()]) for name in ("Call-ID", "CSeq")]
        headers.append(("Contact", "<sip:quickstart1@127.0.0.1:5999;transport=tcp>"))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.send(f"SIP/2.0 {status}", headers, body)


async def test_over_tcp_every_contact_we_send_names_tcp() -> None:
    """A phone registered over TCP only reaches us with in-dialog requests (its BYE) only if our
    Contact says TCP: checked on the INVITE, ACK and BYE we send, and on our 180/200 to its INVITE."""
    phones: asyncio.Queue[RawTcpPhone] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await phones.put(RawTcpPhone(reader, writer))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    phone_port = server.sockets[0].getsockname()[1]
    stack = SipStack("127.0.0.1", 0, "127.0.0.1")
    await stack.start()
    rtp, phone_rtp = free_port() & ~1, free_port()
    try:
        async with MediaEngine("127.0.0.1", rtp, rtp + 3) as media:
            ua = UserAgent(stack, media, "127.0.0.1")
            ours = f"<sip:voipbin@127.0.0.1:{stack.port};transport=tcp>"
            peer = ("tcp", "127.0.0.1", phone_port)
            contact = f"sip:quickstart1@127.0.0.1:{phone_port};transport=tcp"
            binding = Binding("c", "quickstart1", contact, peer, time.monotonic() + 300)

            # We call the phone: INVITE, then the ACK of its 200 and our BYE.
            call = await ua.call([binding], Address("sip:+15551234567@voipbin.test"), "sip:quickstart1@voipbin.test")
            phone = await asyncio.wait_for(phones.get(), 5)
            first, invite, _ = await phone.receive()
            assert first.startswith("INVITE ") and invite["contact"] == ours, invite
            phone.answer(invite, "200 OK", to_tag="phone1", body=SDP.format(port=phone_rtp))
            first, ack, _ = await phone.receive()
            assert first.startswith("ACK ") and ack["contact"] == ours, ack
            hangup = asyncio.create_task(call.hangup())
            first, bye, _ = await phone.receive()
            assert first.startswith("BYE ") and bye["contact"] == ours, bye
            phone.answer(bye, "200 OK")
            await asyncio.wait_for(hangup, 5)

            # The phone calls us over TCP: our 180 and 200 say TCP too.
            async def answer(incoming: SipCall, request: Request) -> None:
                await incoming.answer()

            ua.on_incoming = answer

            async def on_request(incoming: Incoming) -> None:
                await ua.handle(incoming)

            stack.on_request = on_request
            reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
            writers.append(writer)
            outbound = RawTcpPhone(reader, writer)
            outbound.send(
                f"INVITE sip:quickstart2@127.0.0.1:{stack.port};transport=tcp SIP/2.0",
                [
                    ("Via", "SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-raw-1;rport"),
                    ("Max-Forwards", "70"),
                    ("From", "<sip:quickstart1@voipbin.test>;tag=raw1"),
                    ("To", "<sip:quickstart2@voipbin.test>"),
                    ("Call-ID", "raw-call-1"),
                    ("CSeq", "1 INVITE"),
                    ("Contact", "<sip:quickstart1@127.0.0.1:5999;transport=tcp>"),
                    ("Content-Type", "application/sdp"),
                ],
                SDP.format(port=phone_rtp),
            )
            contacts: dict[str, str | None] = {}
            while "200" not in contacts:
                first, response, _ = await outbound.receive()
                contacts[first.split()[1]] = response.get("contact")
            assert contacts["180"] == contacts["200"] == ours, contacts
    finally:
        for each in writers:
            each.close()
        await stack.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.slow
@needs_pjsua
async def test_seed_first_call_is_heard_and_the_api_hangs_up(
    phone: tuple[Pjsua, dict[str, Any], str], client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    pj, extension, transport = phone
    await softphones.first_call_then_hangup_from_the_api(pj, extension, transport, client, platform, alice)
    # Both calls ended on the phone with our BYE, answered.
    assert [(e["code"], e["reason"]) for e in pj.ended_calls()] == [(200, "Normal call clearing")] * 2, pj.events
    assert not pj.errors, pj.errors


@pytest.mark.slow
@needs_pjsua
async def test_realtime_call_is_transcribed_hears_say_and_the_phone_hangs_up(
    phone: tuple[Pjsua, dict[str, Any], str], client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    pj, _, _ = phone
    await softphones.realtime_call_then_hangup_from_the_phone(pj, client, platform, alice)
    assert not pj.errors, pj.errors
    # Over TCP only, its BYE found a transport (PJSIP_EUNSUPTRANSPORT when our Contact named none).
    assert "EUNSUPTRANSPORT" not in pj.log
