"""The peers' own controls, against the platform: a PJSUA phone or a Linphone that is killed
(no BYE, no un-REGISTER) and restarted on the same SIP and RTP ports registers again; a PJSUA
phone dials one of the tenant's numbers; its session-timer settings reach its INVITE."""

from __future__ import annotations

import asyncio
import os
import shutil
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.peers import pjsua
from tests.peers.linphone import Linphone
from tests.peers.pjsua import Pjsua
from tests.telephony.conftest import until
from tests.telephony.softphones import EXTENSION, until_status
from voipbin.runtime import Platform
from voipbin.sip.location import Binding
from voipbin.sip.message import Address

pytestmark = pytest.mark.slow
needs_pjsua = pytest.mark.skipif(not pjsua.available(), reason="pjsua2-python is in the test extra (`make test`)")
needs_linphone = pytest.mark.skipif(shutil.which("linphonec") is None, reason="linphone-cli is installed by `make test`")

ANSWER_SLEEP_HANGUP: list[dict[str, Any]] = [{"type": "answer"}, {"type": "sleep", "option": {"duration": 3000}}, {"type": "hangup"}]


def silence(path: Path, seconds: float = 30) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(int(8000 * 2 * seconds)))
    return path


async def extension(client: httpx.AsyncClient, alice: Tenant) -> None:
    created = await client.post("/v1.0/extensions", params=alice.auth, json=EXTENSION)
    assert created.status_code == 200, created.text


def phone_args(tmp_path: Path, platform: Platform, alice: Tenant) -> dict[str, Any]:
    return {
        "user": EXTENSION["extension"],
        "password": EXTENSION["password"],
        "domain": f"{alice.customer_id}.registrar.voipbin.test",
        "sip_port": platform.sip.stack.port,
        "microphone": silence(tmp_path / "microphone.wav"),
    }


def binding(platform: Platform, alice: Tenant) -> Binding | None:
    found = platform.sip.registrations(alice.customer_id, EXTENSION["extension"])
    assert len(found) <= 1, found
    return found[0] if found else None


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def our_number_runs(client: httpx.AsyncClient, alice: Tenant, actions: list[dict[str, Any]]) -> str:
    """The tenant's own number, now running ``actions``."""
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "peer-controls", "actions": actions})
    assert flow.status_code == 200, flow.text
    number = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]
    changed = await client.put(f"/v1.0/numbers/{number['id']}", params=alice.auth, json={"call_flow_id": flow.json()["id"]})
    assert changed.status_code == 200, changed.text
    return str(number["number"])


async def answered_on(platform: Platform, alice: Tenant, phone: Pjsua, call: int) -> None:
    """The platform rings the extension; the phone answers; we hang up once its media is up."""
    leg = await platform.sip.call_extension(alice.customer_id, EXTENSION["extension"], Address("sip:+15551234567@voipbin.test"))
    await asyncio.wait_for(leg.answered.wait(), 10)
    await until(lambda: phone.local_rtp_port(call) is not None, timeout=5)
    await leg.hangup()
    await until(lambda: phone.ended >= call, timeout=5)


@needs_pjsua
async def test_a_killed_pjsua_phone_leaves_no_process_and_registers_again_on_the_same_ports(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    await extension(client, alice)
    phone = Pjsua.start(tmp_path / "phone", **phone_args(tmp_path, platform, alice))
    again: Pjsua | None = None
    try:
        await until(lambda: phone.registered and binding(platform, alice) is not None, timeout=15)
        first = binding(platform, alice)
        assert first is not None
        # Without timer_* parameters the account keeps pjsua2's session-timer defaults.
        [started] = phone.events("started")
        assert (started["timer_use"], started["timer_sess_expires_sec"], started["timer_min_se_sec"]) == ("optional", 1800, 90)
        await answered_on(platform, alice, phone, 1)
        assert phone.local_rtp_port(1) == phone.rtp_port

        pid = phone.process.pid
        phone.kill()
        assert gone(pid) and not phone.alive
        phone.stop()  # harmless now
        # It vanished: no un-REGISTER (nor anything else) went out, so the platform keeps its binding.
        assert [m["method"] for m in phone.messages(direction="sent") if m["kind"] == "request"] == ["REGISTER"] * 2
        assert not phone.events("stopped")
        assert binding(platform, alice) == first

        again = phone.restart()
        assert (again.local_port, again.rtp_port) == (phone.local_port, phone.rtp_port)
        await until(lambda: again is not None and again.registered, timeout=15)
        now = binding(platform, alice)
        assert now is not None and now.call_id != first.call_id, (first, now)  # a new REGISTER...
        assert now.contact == first.contact and now.source == first.source  # ...from the same port
        await answered_on(platform, alice, again, 1)
        assert again.local_rtp_port(1) == phone.local_rtp_port(1)  # the killed phone's RTP port
        assert not again.errors, again.errors
    finally:
        phone.kill()
        if again is not None:
            again.stop()


@needs_pjsua
async def test_a_pjsua_phone_dials_our_number_which_answers_and_hangs_up(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    await extension(client, alice)
    number = await our_number_runs(client, alice, ANSWER_SLEEP_HANGUP)
    phone = Pjsua.start(tmp_path / "phone", **phone_args(tmp_path, platform, alice))
    try:
        await until(lambda: phone.registered, timeout=15)
        phone.dial(f"sip:{number}@{alice.customer_id}.registrar.voipbin.test")
        await until(lambda: phone.connected >= 1, timeout=10)
        assert phone.events("call", call=1, state="CONFIRMED")[0]["direction"] == "outgoing"
        await until(lambda: phone.ended >= 1, timeout=10)
        [ended] = phone.ended_calls()
        assert (ended["direction"], ended["code"]) == ("outgoing", 200), phone.events("call")
        # The flow hung up: the phone received our BYE (and answered it 200).
        byes = phone.events("tsx", method="BYE", direction="received")
        assert byes and byes[-1]["code"] == 200, phone.events("tsx")
        assert not phone.events("tsx", method="BYE", direction="sent")
        assert phone.local_rtp_port(1) == phone.rtp_port
        [invite] = phone.requests("INVITE")[-1:]
        assert invite.startswith(f"INVITE sip:{number}@127.0.0.1:{platform.sip.stack.port}"), invite
        assert "Proxy-Authorization:" in invite, invite  # the one answered, after our 407

        [call] = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
        assert call["direction"] == "incoming" and call["destination"]["target"] == number, call
        call = await until_status(client, alice, call["id"], "hangup", timeout=5)
        assert call["hangup_by"] == "local" and call["hangup_reason"] == "normal", call
        assert not phone.errors, phone.errors
    finally:
        phone.stop()


@needs_pjsua
@pytest.mark.parametrize("timer_use", ["optional", "required", "always"])
async def test_pjsua_session_timer_settings_reach_its_invite(
    timer_use: str, tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    await extension(client, alice)
    number = await our_number_runs(client, alice, ANSWER_SLEEP_HANGUP)
    phone = Pjsua.start(
        tmp_path / "phone", **phone_args(tmp_path, platform, alice),
        timer_use=timer_use, timer_sess_expires_sec=90, timer_min_se_sec=90,
    )
    try:
        await until(lambda: phone.registered, timeout=15)
        [started] = phone.events("started")
        assert started == {"event": "started", "timer_use": timer_use, "timer_sess_expires_sec": 90, "timer_min_se_sec": 90}
        phone.dial(f"sip:{number}@{alice.customer_id}.registrar.voipbin.test")
        await until(lambda: phone.connected >= 1, timeout=10)
        invites = phone.requests("INVITE")
        assert len(invites) == 2, invites  # challenged, then with credentials
        for invite in invites:
            headers = invite.split("\r\n\r\n", 1)[0].lower().split("\r\n")
            assert "session-expires: 90" in headers and "min-se: 90" in headers, invite
            assert "timer" in next(line for line in headers if line.startswith("supported:")), invite
            # Only "required" says Require: timer; "always" differs from "optional" only with a
            # peer that does not support timers (PJSIP then keeps its own timer running).
            assert ("require: timer" in headers) == (timer_use == "required"), invite
        # The same INVITEs in pjsua's log, with the 407 between them that no tsx event shows.
        logged = phone.messages("INVITE")
        assert [(m["direction"], m["code"]) for m in logged][:3] == [("sent", 0), ("received", 407), ("sent", 0)], logged
        assert "Session-Expires: 90" in logged[2]["text"]
        phone.hangup()
        await until(lambda: phone.ended >= 1, timeout=10)
        await until(lambda: phone.messages("BYE", direction="sent"), timeout=5)  # our own BYE: in the log only
    finally:
        phone.stop()


@needs_linphone
async def test_a_killed_linphone_leaves_no_process_and_registers_again_on_the_same_ports(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    await extension(client, alice)
    phone = Linphone.start(tmp_path / "linphone", **phone_args(tmp_path, platform, alice), rtp_port_range=0)
    again: Linphone | None = None
    try:
        await until(lambda: binding(platform, alice) is not None, timeout=15)
        first = binding(platform, alice)
        assert first is not None
        leg = await platform.sip.call_extension(alice.customer_id, EXTENSION["extension"], Address("sip:+15551234567@voipbin.test"))
        await asyncio.wait_for(leg.answered.wait(), 10)
        await leg.hangup()
        await until(lambda: phone.ended >= 1, timeout=5)
        assert phone.registered and phone.local_rtp_ports() == [phone.rtp_port], phone.local_rtp_ports()

        pid = phone.process.pid
        phone.kill()
        assert gone(pid) and not phone.alive
        phone.stop()  # harmless now
        sent = [m.split(" ", 1)[0] for m in phone.messages("sent") if not m.startswith("SIP/2.0")]
        assert sent == ["REGISTER"] * 2, sent  # challenged, then registered; no un-REGISTER
        assert binding(platform, alice) == first

        again = phone.restart()
        assert (again.local_port, again.rtp_port) == (phone.local_port, phone.rtp_port)
        await until(lambda: (b := binding(platform, alice)) is not None and b.call_id != first.call_id, timeout=15)
        now = binding(platform, alice)
        assert now is not None and now.contact == first.contact and now.source == first.source, (first, now)
        await until(lambda: again is not None and again.registered, timeout=5)
        leg = await platform.sip.call_extension(alice.customer_id, EXTENSION["extension"], Address("sip:+15551234567@voipbin.test"))
        await asyncio.wait_for(leg.answered.wait(), 10)
        await leg.hangup()
        await until(lambda: again is not None and again.ended >= 1, timeout=5)
        assert again.local_rtp_ports() == [phone.rtp_port]  # the killed phone's RTP port
    finally:
        phone.kill()
        if again is not None:
            again.stop()
