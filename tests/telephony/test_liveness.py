"""Calls always end, whatever the phone does: a peer that stops sending media, stops refreshing its
session, loses its TCP connection, ignores our BYE, or comes back on the same port in a new call."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, Tenant, login, make_settings
from tests.live import free_port
from tests.peers import sipp
from tests.security.conftest import header, register_request
from tests.telephony.conftest import until
from voipbin.api.app import create_app
from voipbin.runtime import Platform
from voipbin.sip.digest import authorization_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sipp.available(), reason="sipp is installed by `make test`")]

SLEEP = [{"type": "sleep", "option": {"duration": 60000}}]


@pytest.fixture
async def platform(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    # Short intervals, so that each way of noticing a vanished phone shows within seconds.
    changes = {"media_timeout_s": 2.0, "session_min_se_s": 2, "tcp_keepalive_s": 1.0, **getattr(request, "param", {})}
    platform = Platform(make_settings(tmp_path / "data", **changes))
    await platform.start()
    yield platform
    await platform.stop()


async def call_sipp(client: httpx.AsyncClient, who: Tenant, port: int, actions: list[dict[str, Any]] = SLEEP,
                    transport: str = "udp") -> str:
    target = f"sip:phone@127.0.0.1:{port}" + (";transport=tcp" if transport == "tcp" else "")
    body = {"source": {"type": "sip", "target": "lab"}, "destinations": [{"type": "sip", "target": target}],
            "actions": actions}
    placed = await client.post("/v1.0/calls", params=who.auth, json=body)
    assert placed.status_code == 200, placed.text
    return str(placed.json()["calls"][0]["id"])


async def ended(client: httpx.AsyncClient, who: Tenant, call_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        call = (await client.get(f"/v1.0/calls/{call_id}", params=who.auth)).json()
        if call["status"] == "hangup":
            return dict(call)
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} is still {call['status']} after {within} s")


async def progressing(client: httpx.AsyncClient, who: Tenant, call_id: str) -> None:
    for _ in range(200):
        if (await client.get(f"/v1.0/calls/{call_id}", params=who.auth)).json()["status"] == "progressing":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never answered")


async def test_a_phone_that_vanishes_mid_call_is_hung_up_and_its_port_freed(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant
) -> None:
    port = free_port()
    phone = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                                  "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    await asyncio.sleep(0.3)
    call_id = await call_sipp(client, alice, port)
    await progressing(client, alice, call_id)
    endpoint = platform.calls.live[call_id].endpoint
    assert endpoint is not None
    await asyncio.sleep(1.0)  # media flows both ways (the phone echoes ours)
    assert endpoint.stats().packets_received > 20

    phone.send_signal(signal.SIGKILL)  # no BYE
    await phone.wait()
    call = await ended(client, alice, call_id, within=6)

    assert call["hangup_reason"] == "failed" and call["hangup_by"] == "local"
    assert call["metadata"] == {"hangup_cause": "media_timeout"}
    assert endpoint.closed and endpoint not in platform.sip.media.endpoints
    assert platform.sip.media.ports.in_use == 0  # free for the next call


async def test_an_old_call_ends_when_its_phone_takes_its_media_port_for_a_new_one(tmp_path: Path) -> None:
    # Media timeout long enough that only the new call can end the old one.
    platform = Platform(make_settings(tmp_path / "long", media_timeout_s=60.0))
    await platform.start()
    transport = httpx.ASGITransport(app=create_app(platform))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            token = await login(client, **ADMIN)
            who = Tenant("", ADMIN["username"], token, "")
            sip_port, media_port = free_port(), free_port()
            uas = ("-sn", "uas", "-i", "127.0.0.1", "-p", str(sip_port), "-m", "1", "-mi", "127.0.0.1",
                   "-mp", str(media_port), "-rtp_echo")
            first_phone = await sipp.start_sipp(*uas)
            await asyncio.sleep(0.3)
            old = await call_sipp(client, who, sip_port)
            await progressing(client, who, old)
            first_phone.send_signal(signal.SIGKILL)  # gone without a BYE; its ports free again
            await first_phone.wait()

            second_phone = await sipp.start_sipp(*uas)  # the phone again, on the same ports
            await asyncio.sleep(0.3)
            new = await call_sipp(client, who, sip_port, [{"type": "sleep", "option": {"duration": 1500}}])
            await progressing(client, who, new)
            gone = await ended(client, who, old, within=3)
            await sipp.finish(second_phone, timeout=10)
    finally:
        await platform.stop()

    assert gone["metadata"] == {"hangup_cause": "media_taken"}


@pytest.mark.parametrize("platform", [{"media_timeout_s": 0}], indirect=True)  # sipp sends no media here
async def test_a_caller_that_stops_refreshing_its_session_is_hung_up(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, tmp_path: Path
) -> None:
    number = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "hold", "actions": [{"type": "answer"}, *SLEEP]})
    await client.put(f"/v1.0/numbers/{number['id']}", params=alice.auth, json={"call_flow_id": flow.json()["id"]})

    started = time.monotonic()
    result = await sipp.run_sipp(
        f"127.0.0.1:{platform.sip.stack.port}", "-sf", str(sipp.SCENARIOS / "uac_timer_silent.xml"),
        "-s", number["number"], "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1", timeout=20,
    )
    took = time.monotonic() - started

    assert result.ok, result.output[-2000:]
    assert 3.0 <= took <= 8.0  # at 6 - min(32, 6/3) = 4 s without a refresh
    [call] = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
    call = await ended(client, alice, call["id"], within=2)
    assert call["metadata"] == {"hangup_cause": "session_expired"}


@pytest.mark.parametrize("platform", [{"media_timeout_s": 0}], indirect=True)  # sipp sends no media here
async def test_a_session_refresh_not_answered_ends_the_call(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant
) -> None:
    port = free_port()
    # Over TCP, so that the unanswered refresh is not retransmitted into the scenario.
    phone = await sipp.start_sipp("-sf", str(sipp.SCENARIOS / "uas_timer_refresh_once.xml"), "-t", "t1",
                                  "-i", "127.0.0.1", "-p", str(port), "-m", "1")
    await asyncio.sleep(0.3)
    call_id = await call_sipp(client, alice, port, transport="tcp")
    await progressing(client, alice, call_id)

    call = await ended(client, alice, call_id, within=15)
    result = await sipp.finish(phone, timeout=10)

    assert result.ok, result.output[-2000:]  # one refresh answered, the next one not, then our BYE
    assert call["metadata"] == {"hangup_cause": "session_expired"}


@pytest.mark.parametrize("platform", [{"media_timeout_s": 0}], indirect=True)  # sipp sends no media here
async def test_a_tcp_phone_whose_connection_drops_is_hung_up_at_once(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant
) -> None:
    port = free_port()
    phone = await sipp.start_sipp("-sn", "uas", "-t", "t1", "-i", "127.0.0.1", "-p", str(port), "-m", "1")
    await asyncio.sleep(0.3)
    call_id = await call_sipp(client, alice, port, transport="tcp")
    await progressing(client, alice, call_id)

    phone.send_signal(signal.SIGKILL)  # the kernel closes its connection
    await phone.wait()
    call = await ended(client, alice, call_id, within=3)

    assert call["metadata"] == {"hangup_cause": "connection_lost"}


async def test_delete_of_a_call_whose_phone_ignores_bye_answers_at_once(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant
) -> None:
    port = free_port()
    phone = await sipp.start_sipp("-sf", str(sipp.SCENARIOS / "uas_deaf_to_bye.xml"), "-i", "127.0.0.1",
                                  "-p", str(port), "-m", "1")
    await asyncio.sleep(0.3)
    call_id = await call_sipp(client, alice, port)
    await progressing(client, alice, call_id)

    started = time.monotonic()
    deleted = await client.delete(f"/v1.0/calls/{call_id}", params=alice.auth)
    took = time.monotonic() - started

    assert deleted.status_code == 200 and deleted.json()["status"] == "hangup"
    print(f"\nDELETE of a call whose phone ignores BYE answered in {took * 1000:.0f} ms")
    assert took < 0.5, f"DELETE took {took:.2f} s"  # it waited 10 s for the BYE's answer before
    await sipp.finish(phone, timeout=10)


async def test_a_tcp_flow_that_answers_no_keepalive_is_closed_and_its_registrations_dropped(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant
) -> None:
    body = {"name": "desk", "detail": "d", "extension": "desk1", "password": "desk-pass-1"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    domain = f"{alice.customer_id}.registrar.voipbin.test"
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.sip.stack.port)
    local_port = writer.get_extra_info("sockname")[1]
    try:
        challenge = await _tcp_request(reader, writer, register_request("desk1", domain, "ka1"), local_port)
        answer = authorization_for(header(challenge, "WWW-Authenticate"), "REGISTER", f"sip:{domain}", "desk1",
                                   "desk-pass-1", "c0ffee")
        ok = await _tcp_request(reader, writer, register_request("desk1", domain, "ka2", answer), local_port)
        assert ok.startswith(b"SIP/2.0 200"), ok
        assert platform.sip.registrations(alice.customer_id, "desk1")

        # The phone now reads nothing and answers nothing: its OPTIONS go unanswered.
        await until(lambda: not platform.sip.registrations(alice.customer_id, "desk1"), timeout=12)
        closed = await asyncio.wait_for(_drained(reader), 5)
    finally:
        writer.close()
    assert closed


async def _tcp_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, template: str, port: int) -> bytes:
    text = template.replace("SIP/2.0/UDP", "SIP/2.0/TCP").format(port=port, source="127.0.0.1")
    writer.write(text.encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head


async def _drained(reader: asyncio.StreamReader) -> bool:
    """True once the platform closed the connection (reading whatever it sent until then)."""
    while await reader.read(4096):
        pass
    return True

