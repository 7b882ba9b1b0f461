"""The user agent's asyncio wing over loopback UDP: what a leg decides reaches the wire, what
arrives reaches the right leg, and listeners see every state in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import pytest

from voipbin.media.endpoint import MediaEngine
from voipbin.sip.location import Binding
from voipbin.sip.message import Address, Request, Response, make_response
from voipbin.sip.parser import parse_message
from voipbin.sip.stack import Incoming, SipStack
from voipbin.sip.ua import CallState, SipCall, UserAgent

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


@dataclass
class Phone(asyncio.DatagramProtocol):
    """A UDP peer that hands over what it receives, parsed."""

    inbox: asyncio.Queue[Request | Response] = field(default_factory=asyncio.Queue)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.inbox.put_nowait(parse_message(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, message: Request | Response, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(message.encode(), ("127.0.0.1", port))

    async def receive(self, method_or_status: str | int) -> Request | Response:
        """The next message that is this request or response (retransmissions skipped)."""
        while True:
            message = await asyncio.wait_for(self.inbox.get(), 5)
            if (isinstance(message, Request) and message.method == method_or_status) or (
                isinstance(message, Response) and message.status_code == method_or_status
            ):
                return message


@dataclass
class Rig:
    ua: UserAgent
    stack: SipStack
    phone: Phone


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    stack = SipStack("127.0.0.1", 0, "127.0.0.1")
    await stack.start()
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    async with MediaEngine("127.0.0.1", 47000, 47200) as media:
        ua = UserAgent(stack, media, "127.0.0.1")

        async def on_request(incoming: Incoming) -> None:
            await ua.handle(incoming)

        stack.on_request = on_request
        try:
            yield Rig(ua, stack, phone)
        finally:
            await ua.close()
            await stack.stop()
            transport.close()


def answer(request: Request, status: int, tag: str = "phone", body: bytes = b"") -> Response:
    response = make_response(request, status, to_tag=tag)
    response.headers.add("Contact", "<sip:phone@127.0.0.1>")
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return response


async def until(call: SipCall, state: CallState) -> None:
    async with asyncio.timeout(5):
        while call.state is not state:
            await asyncio.sleep(0.01)


async def test_an_outgoing_call_rings_is_answered_and_hung_up(rig: Rig) -> None:
    binding = Binding("c", "2000", f"sip:2000@127.0.0.1:{rig.phone.port}", ("udp", "127.0.0.1", rig.phone.port), 1e12)
    call = await rig.ua.call([binding], Address("sip:+15551234567@voipbin.test"), "sip:2000@voipbin.test")
    seen: list[CallState] = []
    call.listeners.append(lambda leg: seen.append(leg.state))

    invite = await rig.phone.receive("INVITE")
    assert isinstance(invite, Request)
    rig.phone.send(answer(invite, 180), rig.stack.port)
    await until(call, CallState.RINGING)
    rig.phone.send(answer(invite, 200, body=SDP), rig.stack.port)
    ack = await rig.phone.receive("ACK")
    assert isinstance(ack, Request) and ack.to_addr.tag == "phone"
    await asyncio.wait_for(call.answered.wait(), 5)
    assert call.endpoint.remote == ("127.0.0.1", 4000)

    hangup = asyncio.create_task(call.hangup())
    bye = await rig.phone.receive("BYE")
    assert isinstance(bye, Request)
    rig.phone.send(make_response(bye, 200), rig.stack.port)
    await asyncio.wait_for(hangup, 5)

    assert seen == [CallState.RINGING, CallState.PROGRESSING, CallState.TERMINATING, CallState.HANGUP]
    assert (call.hangup_by, call.hangup_reason) == ("local", "normal") and call.ended.is_set()
    assert call.endpoint.closed and rig.ua.calls == set()


async def test_an_incoming_call_is_answered_and_ended_by_the_phone(rig: Rig) -> None:
    calls: list[SipCall] = []

    async def take(call: SipCall, request: Request) -> None:
        calls.append(call)
        await call.answer()

    rig.ua.on_incoming = take
    invite = parse_message(
        (
            f"INVITE sip:2000@127.0.0.1:{rig.stack.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{rig.phone.port};branch=z9hG4bK-wing-1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:1000@voipbin.test>;tag=caller\r\nTo: <sip:2000@voipbin.test>\r\n"
            f"Call-ID: wing-1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@127.0.0.1:{rig.phone.port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
        ).encode() + SDP
    )
    assert isinstance(invite, Request)
    rig.phone.send(invite, rig.stack.port)

    ok = await rig.phone.receive(200)
    assert isinstance(ok, Response) and ok.body
    (call,) = calls
    assert call.state is CallState.PROGRESSING and call.direction == "incoming"
    tag = ok.to_addr.tag
    in_dialog = (
        f"Via: SIP/2.0/UDP 127.0.0.1:{rig.phone.port};branch=z9hG4bK-wing-{{n}}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1000@voipbin.test>;tag=caller\r\nTo: <sip:2000@voipbin.test>;tag={tag}\r\nCall-ID: wing-1\r\n"
    )
    ack = parse_message(f"ACK sip:voipbin@127.0.0.1 SIP/2.0\r\n{in_dialog.format(n=2)}CSeq: 1 ACK\r\n\r\n".encode())
    bye = parse_message(f"BYE sip:voipbin@127.0.0.1 SIP/2.0\r\n{in_dialog.format(n=3)}CSeq: 2 BYE\r\n\r\n".encode())
    rig.phone.send(ack, rig.stack.port)
    rig.phone.send(bye, rig.stack.port)

    assert (await rig.phone.receive(200)).cseq.method == "BYE"
    await until(call, CallState.HANGUP)
    assert (call.hangup_by, call.hangup_reason) == ("remote", "normal")
    assert rig.ua.calls == set()


async def test_a_second_phone_answering_behind_a_forking_proxy_is_acknowledged_and_released(rig: Rig) -> None:
    binding = Binding("c", "2000", f"sip:2000@127.0.0.1:{rig.phone.port}", ("udp", "127.0.0.1", rig.phone.port), 1e12)
    call = await rig.ua.call([binding], Address("sip:+15551234567@voipbin.test"), "sip:2000@voipbin.test")
    invite = await rig.phone.receive("INVITE")
    assert isinstance(invite, Request)

    rig.phone.send(answer(invite, 200, tag="one", body=SDP), rig.stack.port)
    assert (await rig.phone.receive("ACK")).to_addr.tag == "one"
    rig.phone.send(answer(invite, 200, tag="two", body=SDP), rig.stack.port)  # a stray 2xx for the stack

    assert (await rig.phone.receive("ACK")).to_addr.tag == "two"
    assert (await rig.phone.receive("BYE")).to_addr.tag == "two"
    assert call.state is CallState.PROGRESSING and call.dialog is not None and call.dialog.remote_tag == "one"
