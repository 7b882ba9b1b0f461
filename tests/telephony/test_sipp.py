"""sipp against the platform: registration outcomes, calls both ways with RTP, CANCEL, loss."""

from __future__ import annotations

import asyncio
import io
import random
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Tenant, make_settings
from tests.live import free_port
from tests.peers import sipp
from tests.peers.baresip import Baresip, dominant_frequency, tone
from voipbin.media.g711 import encode_ulaw
from voipbin.runtime import Platform
from voipbin.sip.message import Address, Request
from voipbin.sip.ua import CallState, SipCall

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sipp.available(), reason="sipp is installed by `make test`")]

PASSWORD = "sipp-secret-1"


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    # Short nonces so the stale-nonce scenario needs no long wait.
    platform = Platform(make_settings(tmp_path / "data", sip_nonce_lifetime_s=1.0))
    await platform.start()
    yield platform
    await platform.stop()


@pytest.fixture
async def extension(client: httpx.AsyncClient, alice: Tenant) -> str:
    body = {"name": "sipp-phone", "detail": "sipp", "extension": "sipp1", "password": PASSWORD}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    return "sipp1"


def target(platform: Platform) -> str:
    return f"127.0.0.1:{platform.sip.stack.port}"


def register_args(platform: Platform, tenant: Tenant, scenario: str, password: str, port: int) -> list[str]:
    return [
        target(platform), "-sf", str(sipp.SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-m", "1", "-s", "sipp1", "-au", "sipp1", "-ap", password,
        "-key", "domain", f"{tenant.customer_id}.registrar.voipbin.test",
    ]


@pytest.mark.parametrize(
    ("scenario", "password"),
    [("register.xml", PASSWORD), ("register_forbidden.xml", "wrong"), ("register_stale.xml", PASSWORD)],
)
async def test_register_outcomes(platform: Platform, alice: Tenant, extension: str, scenario: str, password: str) -> None:
    result = await sipp.run_sipp(*register_args(platform, alice, scenario, password, free_port()))
    assert result.ok, result.output[-2000:]
    registered = platform.sip.registrations(alice.customer_id, extension)
    assert bool(registered) == (password == PASSWORD)


async def register_then_serve(platform: Platform, tenant: Tenant, *uas_args: str) -> asyncio.subprocess.Process:
    """Register sipp1 from a port, then start a sipp UAS on that same port (the 'phone')."""
    port = free_port()
    registered = await sipp.run_sipp(*register_args(platform, tenant, "register.xml", PASSWORD, port))
    assert registered.ok, registered.output[-2000:]
    process = await sipp.start_sipp("-i", "127.0.0.1", "-p", str(port), "-m", "1", *uas_args)
    await asyncio.sleep(0.5)  # let it bind
    return process


async def call_sipp(platform: Platform, tenant: Tenant) -> SipCall:
    return await platform.sip.call_extension(tenant.customer_id, "sipp1", Address("sip:+15551234567@voipbin.test"))


async def test_outbound_call_answered_by_sipp_with_rtp_echo(platform: Platform, alice: Tenant, extension: str) -> None:
    uas = await register_then_serve(platform, alice, "-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    call = await call_sipp(platform, alice)
    await asyncio.wait_for(call.answered.wait(), 10)
    echoed: list[bytes] = []
    call.endpoint.add_tap("in", echoed.append)
    pcm = tone(Path("/tmp") / f"echo-{call.id}.wav", 800.0, 2.0).read_bytes()[44:]
    await asyncio.wait_for(call.endpoint.play(pcm).done, 10)
    await call.hangup()

    result = await sipp.finish(uas)
    assert result.ok, result.output[-2000:]
    assert call.hangup_by == "local" and call.hangup_reason == "normal"
    heard = np.frombuffer(b"".join(echoed), dtype="<i2").astype(np.float64)
    assert abs(dominant_frequency(heard) - 800.0) < 15
    assert platform.sip.media.endpoints == []  # the call's RTP ports are free again


async def test_cancel_before_answer(platform: Platform, alice: Tenant, extension: str) -> None:
    uas = await register_then_serve(platform, alice, "-sf", str(sipp.SCENARIOS / "uas_ring_cancel.xml"))
    call = await call_sipp(platform, alice)
    await asyncio.wait_for(_state(call, CallState.RINGING), 10)
    await call.hangup()

    result = await sipp.finish(uas)
    assert result.ok, result.output[-2000:]
    assert call.state is CallState.HANGUP and call.hangup_reason == "cancel"


async def _state(call: SipCall, state: CallState) -> None:
    while call.state is not state:
        await asyncio.sleep(0.02)


async def test_inbound_call_from_sipp_streaming_audio(platform: Platform, tmp_path: Path) -> None:
    heard: list[bytes] = []

    async def answer(call: SipCall, request: Request) -> None:
        call.endpoint.add_tap("in", heard.append)
        await call.answer()

    platform.sip.ua.on_incoming = answer
    pcm = tone(tmp_path / "caller.wav", 700.0, 4.0).read_bytes()[44:]
    wav = tmp_path / "caller_ulaw.wav"
    _write_ulaw_wav(wav, encode_ulaw(pcm))
    scenario = tmp_path / "uac_stream.xml"
    scenario.write_text((sipp.SCENARIOS / "uac_stream.xml").read_text().replace("RTP_STREAM_WAV", str(wav)))

    result = await sipp.run_sipp(
        target(platform), "-sf", str(scenario), "-s", "ivr", "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-m", "1", timeout=30,
    )

    assert result.ok, result.output[-2000:]
    received = np.frombuffer(b"".join(heard), dtype="<i2").astype(np.float64)
    assert len(received) > 8000 * 2
    assert abs(dominant_frequency(received) - 700.0) < 15
    assert platform.sip.ua.calls == set()


def _write_ulaw_wav(path: Path, ulaw: bytes) -> None:
    """A WAVE_FORMAT_MULAW file, which sipp's rtp_stream plays as PCMU."""
    import struct

    header = b"RIFF" + struct.pack("<I", 36 + len(ulaw)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 7, 1, 8000, 8000, 1, 8)
    header += b"data" + struct.pack("<I", len(ulaw))
    path.write_bytes(header + ulaw)


async def test_lossy_udp_still_ends_every_call_cleanly(platform: Platform, alice: Tenant, extension: str) -> None:
    """Drop 25% of the SIP datagrams we send and receive; retransmissions must carry the call."""
    uas = await register_then_serve(platform, alice, "-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port()))
    rng = random.Random(7)
    stack = platform.sip.stack
    original_send, original_receive = stack._send, stack.receive
    stack._send = lambda message, destination: None if rng.random() < 0.25 else original_send(message, destination)  # type: ignore[method-assign]
    stack.receive = lambda data, source: None if rng.random() < 0.25 else original_receive(data, source)  # type: ignore[method-assign]
    try:
        call = await call_sipp(platform, alice)
        await asyncio.wait_for(call.answered.wait(), 30)
        await asyncio.sleep(0.5)
        await call.hangup()
        await sipp.finish(uas, timeout=40)
    finally:
        stack._send, stack.receive = original_send, original_receive  # type: ignore[method-assign]
    assert call.state is CallState.HANGUP
    assert platform.sip.media.endpoints == []
    assert not any(t.is_client for t in stack.transactions.transactions.values() if t.method == "INVITE")


async def test_random_bytes_do_not_stop_the_listener(platform: Platform) -> None:
    rng = random.Random(11)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", platform.sip.stack.port))
    datagrams = [rng.randbytes(rng.randint(0, 1500)) for _ in range(2000)] + _mutations()
    try:
        for index, datagram in enumerate(datagrams):
            transport.sendto(datagram)
            if index % 20 == 0:
                await asyncio.sleep(0.002)  # stay within the socket's receive buffer
    finally:
        transport.close()
    await asyncio.sleep(0.3)
    assert await _options_answered(platform)
    assert platform.sip.stack.counters.malformed > 1500


def _mutations() -> list[bytes]:
    base = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKf\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    rng = random.Random(3)
    out = []
    for _ in range(500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data))
    return out


async def _options_answered(platform: Platform) -> bool:
    reply = await _exchange(
        platform,
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKping;rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    )
    return reply.startswith(b"SIP/2.0 200")


async def _exchange(platform: Platform, template: str) -> bytes:
    """Send one request ({port} filled in with our socket's) and return the first reply."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not answered.done():
                answered.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    transport.sendto(template.format(port=port).encode(), ("127.0.0.1", platform.sip.stack.port))
    try:
        return await asyncio.wait_for(answered, 5)
    finally:
        transport.close()


async def test_tel_call_reaches_the_carrier_through_the_provider(
    platform: Platform, client: httpx.AsyncClient, operator: Tenant, alice: Tenant, tmp_path: Path
) -> None:
    carrier_port = free_port()
    trunk = {"hostname": "127.0.0.1", "port": carrier_port, "name": "carrier", "tech_prefix": ""}
    assert (await client.post("/v1.0/providers", params=operator.auth, json=trunk)).status_code == 200
    carrier = await sipp.start_sipp(
        "-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1", "-mi", "127.0.0.1",
        "-mp", str(free_port()), "-rtp_echo", "-trace_msg", cwd=tmp_path,
    )
    await asyncio.sleep(0.5)
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    body = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "tel", "target": "+15557654321"}],
        "actions": [{"type": "talk", "option": {"text": "Hello carrier.", "language": "en-US"}}],
    }
    response = await client.post("/v1.0/calls", params=alice.auth, json=body)
    assert response.status_code == 200, response.text
    [call] = response.json()["calls"]
    assert response.json()["groupcalls"] == [] and call["destination"]["target"] == "+15557654321"

    result = await sipp.finish(carrier, timeout=30)
    assert result.ok, result.output[-2000:]
    messages = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert f"INVITE sip:+15557654321@127.0.0.1:{carrier_port} SIP/2.0" in messages
    assert f"From: <sip:{source}@voipbin.test>" in messages
    ended = (await client.get(f"/v1.0/calls/{call['id']}", params=alice.auth)).json()
    assert ended["status"] == "hangup" and ended["hangup_by"] == "local" and ended["hangup_reason"] == "normal"


async def test_a_call_to_our_number_runs_its_flow(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, tmp_path: Path
) -> None:
    flow = {"name": "ivr", "actions": [{"type": "answer"}, {"type": "talk", "option": {"text": "Welcome."}}, {"type": "sleep", "option": {"duration": 20000}}]}
    flow_id = (await client.post("/v1.0/flows", params=alice.auth, json=flow)).json()["id"]
    number = {"number": "+89950001234", "call_flow_id": flow_id}
    assert (await client.post("/v1.0/numbers", params=alice.auth, json=number)).status_code == 200
    wav = tmp_path / "caller_ulaw.wav"
    _write_ulaw_wav(wav, encode_ulaw(tone(tmp_path / "c.wav", 500.0, 3.0).read_bytes()[44:]))
    scenario = tmp_path / "uac_stream.xml"
    scenario.write_text((sipp.SCENARIOS / "uac_stream.xml").read_text().replace("RTP_STREAM_WAV", str(wav)))

    result = await sipp.run_sipp(
        target(platform), "-sf", str(scenario), "-s", "+89950001234", "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-m", "1", timeout=30,
    )

    assert result.ok, result.output[-2000:]
    [call] = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
    assert call["direction"] == "incoming" and call["destination"]["target"] == "+89950001234"
    assert call["status"] == "hangup" and call["hangup_by"] == "remote" and call["tm_progressing"]
    [activeflow] = (await client.get("/v1.0/activeflows", params=alice.auth)).json()["result"]
    assert activeflow["reference_id"] == call["id"] and activeflow["status"] == "ended"
    assert [a["type"] for a in activeflow["executed_actions"]][:2] == ["answer", "talk"]


async def test_an_unknown_number_is_refused(platform: Platform) -> None:
    result = await sipp.run_sipp(
        target(platform), "-sn", "uac", "-s", "+19999999999", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1", timeout=10,
    )
    assert not result.ok and "404" in result.output


async def test_recording_holds_both_directions(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, extension: str
) -> None:
    uas = await register_then_serve(platform, alice, "-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    events = platform.bus.subscribe()
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    body = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "sipp-phone"}],
        "actions": [
            {"type": "recording_start", "option": {"format": "wav"}},
            {"type": "talk", "option": {"text": "This sentence is recorded on both sides of the call."}},
            {"type": "recording_stop"},
        ],
    }
    placed = await client.post("/v1.0/calls", params=alice.auth, json=body)
    assert placed.status_code == 200, placed.text
    call_id = placed.json()["groupcalls"][0]["call_ids"][0]
    finished = None
    async with asyncio.timeout(30):
        async for event in events:
            if event.event_type == "recording_finished":
                finished = event.data
                break
    events.close()
    await sipp.finish(uas)

    assert finished is not None and finished["status"] == "ended"
    recording = (await client.get(f"/v1.0/recordings/{finished['id']}", params=alice.auth)).json()
    assert (recording["status"], recording["reference_id"], recording["format"]) == ("ended", call_id, "wav")
    call = (await client.get(f"/v1.0/calls/{call_id}", params=alice.auth)).json()
    assert call["recording_ids"] == [recording["id"]] and recording["activeflow_id"] == call["activeflow_id"]
    download = await client.get(f"/v1.0/recordingfiles/{recording['id']}", params=alice.auth, follow_redirects=True)
    assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(download.content)) as audio:
        assert (audio.getnchannels(), audio.getframerate()) == (2, 8000)
        frames = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2").reshape(-1, 2)
    phone_side, our_side = np.abs(frames[:, 0]).mean(), np.abs(frames[:, 1]).mean()
    assert our_side > 100 and phone_side > 100  # our speech, and its echo from the phone


async def test_connect_bridges_the_call_to_another_destination(
    platform: Platform, client: httpx.AsyncClient, operator: Tenant, alice: Tenant, extension: str, tmp_path: Path
) -> None:
    carrier_port = free_port()
    trunk = {"hostname": "127.0.0.1", "port": carrier_port, "name": "carrier"}
    assert (await client.post("/v1.0/providers", params=operator.auth, json=trunk)).status_code == 200
    carrier = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1",
                                    "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    phone = await register_then_serve(platform, alice, "-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    body = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "sipp-phone"}],
        "actions": [
            {"type": "talk", "option": {"text": "Connecting you now."}},
            {"type": "connect", "option": {"destinations": [{"type": "tel", "target": "+15557654321"}]}},
        ],
    }
    master_id = (await client.post("/v1.0/calls", params=alice.auth, json=body)).json()["groupcalls"][0]["call_ids"][0]

    async def leg() -> dict[str, object] | None:
        calls = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
        return next((c for c in calls if c["master_call_id"] == master_id), None)

    for _ in range(300):
        child = await leg()
        if child and child["status"] == "progressing":
            break
        await asyncio.sleep(0.05)
    assert child and child["status"] == "progressing", child
    await asyncio.sleep(1.0)
    child_endpoint = platform.calls.live[str(child["id"])].endpoint
    assert child_endpoint is not None and child_endpoint.stats().packets_sent > 20  # the phone's audio reaches it

    await client.post(f"/v1.0/calls/{master_id}/hangup", params=alice.auth)
    assert (await sipp.finish(carrier)).ok and (await sipp.finish(phone)).ok
    ended = await leg()
    assert ended and ended["status"] == "hangup"


async def test_a_busy_phone_ends_the_call_as_busy(platform: Platform, alice: Tenant, extension: str) -> None:
    uas = await register_then_serve(platform, alice, "-sf", str(sipp.SCENARIOS / "uas_busy.xml"))
    call = await call_sipp(platform, alice)
    await asyncio.wait_for(call.ended.wait(), 10)
    assert (await sipp.finish(uas)).ok
    assert call.hangup_by == "remote" and call.hangup_reason == "busy"


async def test_register_over_tcp(platform: Platform, alice: Tenant, extension: str) -> None:
    args = register_args(platform, alice, "register.xml", PASSWORD, free_port())
    result = await sipp.run_sipp(*args, "-t", "t1")
    assert result.ok, result.output[-2000:]
    [binding] = platform.sip.registrations(alice.customer_id, extension)
    assert binding.source[0] == "tcp"


async def test_call_over_tcp(platform: Platform, alice: Tenant, extension: str) -> None:
    port = free_port()
    registered = await sipp.run_sipp(*register_args(platform, alice, "register.xml", PASSWORD, port), "-t", "t1")
    assert registered.ok, registered.output[-2000:]
    uas = await sipp.start_sipp("-sn", "uas", "-t", "t1", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                                "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    await asyncio.sleep(0.5)
    call = await call_sipp(platform, alice)
    await asyncio.wait_for(call.answered.wait(), 10)
    await call.hangup()
    result = await sipp.finish(uas)
    assert result.ok, result.output[-2000:]
    assert call.hangup_reason == "normal"


async def test_a_new_password_applies_at_once(platform: Platform, client: httpx.AsyncClient, alice: Tenant, extension: str) -> None:
    assert (await sipp.run_sipp(*register_args(platform, alice, "register.xml", PASSWORD, free_port()))).ok
    [ext] = (await client.get("/v1.0/extensions", params=alice.auth)).json()["result"]
    await client.put(f"/v1.0/extensions/{ext['id']}", params=alice.auth, json={"password": "brand-new-pass"})
    await asyncio.sleep(0.1)
    old = await sipp.run_sipp(*register_args(platform, alice, "register_forbidden.xml", PASSWORD, free_port()))
    new = await sipp.run_sipp(*register_args(platform, alice, "register.xml", "brand-new-pass", free_port()))
    assert old.ok and new.ok  # the old password is now refused (403), the new one accepted


async def desk_phone(platform: Platform, alice: Tenant, user: str, password: str, tmp_path: Path) -> Baresip:
    """baresip registered as one of alice's extensions (created by the caller)."""
    phone = Baresip.start(
        tmp_path / "baresip", user=user, password=password, domain=f"{alice.customer_id}.registrar.voipbin.test",
        sip_port=platform.sip.stack.port, microphone=tone(tmp_path / "mic.wav", 600.0, 60.0),
    )
    for _ in range(300):
        if platform.sip.registrations(alice.customer_id, user):
            break
        await asyncio.sleep(0.05)
    return phone


async def dial_until_bridged(
    client: httpx.AsyncClient, alice: Tenant, phone: Baresip, uri: str
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The phone dials ``uri``; returns alice's calls and the connected legs once one is progressing."""
    phone.command("dial", uri)
    calls: list[dict[str, object]] = []
    legs: list[dict[str, object]] = []
    for _ in range(300):
        calls = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
        legs = [c for c in calls if c["master_call_id"]]
        if legs and legs[0]["status"] == "progressing":
            break
        await asyncio.sleep(0.05)
    assert legs and legs[0]["status"] == "progressing", calls
    return calls, legs


async def test_a_phone_dials_another_extension(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, extension: str, tmp_path: Path
) -> None:
    """baresip (extension 1001) dials sipp1; it must prove who it is (407), then gets bridged."""
    body = {"name": "desk", "detail": "baresip", "extension": "1001", "password": "desk-pass-1"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    callee = await register_then_serve(platform, alice, "-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    domain = f"{alice.customer_id}.registrar.voipbin.test"
    phone = await desk_phone(platform, alice, "1001", "desk-pass-1", tmp_path)
    try:
        calls, legs = await dial_until_bridged(client, alice, phone, f"sip:sipp1@{domain}")
        caller_call = next(c for c in calls if c["id"] == legs[0]["master_call_id"])
        assert caller_call["direction"] == "incoming" and caller_call["source"]["target"] == "1001"
        await asyncio.sleep(1.0)
        phone.command("hangup")
        assert (await sipp.finish(callee)).ok
    finally:
        phone.stop()
    ended = {c["id"]: c for c in (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]}
    assert ended[caller_call["id"]]["status"] == "hangup" and ended[legs[0]["id"]]["status"] == "hangup"


async def test_an_invite_claiming_one_of_our_phones_must_prove_it(platform: Platform, alice: Tenant, extension: str) -> None:
    domain = f"{alice.customer_id}.registrar.voipbin.test"
    reply = await _exchange(
        platform,
        f"INVITE sip:+15550001111@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bKspoof;rport\r\n"
        f"From: <sip:sipp1@{domain}>;tag=s\r\nTo: <sip:+15550001111@{domain}>\r\nCall-ID: spoof-1\r\n"
        f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    )
    assert reply.startswith(b"SIP/2.0 407") and b"Proxy-Authenticate: Digest" in reply
    assert platform.sip.ua.calls == set()


async def test_a_phone_dials_a_phone_number_out_through_the_provider(
    platform: Platform, client: httpx.AsyncClient, operator: Tenant, alice: Tenant, tmp_path: Path
) -> None:
    """baresip dials 0015557654321: the platform challenges it, then bridges it to the carrier."""
    carrier_port = free_port()
    trunk = {"hostname": "127.0.0.1", "port": carrier_port, "name": "carrier", "tech_prefix": ""}
    assert (await client.post("/v1.0/providers", params=operator.auth, json=trunk)).status_code == 200
    carrier = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1",
                                    "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo", "-trace_msg", cwd=tmp_path)
    body = {"name": "desk", "detail": "baresip", "extension": "1002", "password": "desk-pass-2"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    caller_id = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][-1]["number"]
    domain = f"{alice.customer_id}.registrar.voipbin.test"
    phone = await desk_phone(platform, alice, "1002", "desk-pass-2", tmp_path)
    try:
        _calls, legs = await dial_until_bridged(client, alice, phone, f"sip:0015557654321@{domain}")
        assert legs[0]["destination"]["target"] == "+15557654321"
        await asyncio.sleep(1.0)
        phone.command("hangup")
        assert (await sipp.finish(carrier, timeout=20)).ok
    finally:
        phone.stop()
    messages = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert f"INVITE sip:+15557654321@127.0.0.1:{carrier_port} SIP/2.0" in messages
    assert f"From: <sip:{caller_id}@voipbin.test>" in messages  # the customer's number, not the extension
