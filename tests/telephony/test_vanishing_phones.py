"""The seed's softphones vanish: a PJSIP phone killed mid-call (no BYE) has its call ended by the
platform, and the same phone, back on the same ports, gets a clean next call: its own audio, its
own transcription. A PJSIP phone that asks for a session timer refreshes it and keeps its call."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant, make_settings
from tests.peers import pjsua
from tests.peers.linphone import Linphone
from tests.peers.pjsua import Pjsua
from tests.telephony.conftest import until
from tests.telephony.softphones import (
    EXTENSION,
    assert_heard,
    heard_text,
    microphone,
    our_number,
    place,
    realtime_request,
    until_async,
    until_status,
)
from tests.telephony.test_realtime_voice import CALLER_SAYS, word_error_rate
from tests.telephony.test_realtime_voice import GREETING as REALTIME_GREETING
from voipbin.runtime import Platform

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not pjsua.available(), reason="pjsua2-python is in the test extra")]

MEDIA_TIMEOUT_S = 3.0


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = Platform(make_settings(tmp_path / "data", media_timeout_s=MEDIA_TIMEOUT_S))
    await platform.start()
    yield platform
    await platform.stop()


async def transcripts_of(client: httpx.AsyncClient, alice: Tenant, call_id: str, direction: str) -> str:
    transcribes = (await client.get("/v1.0/transcribes", params=alice.auth)).json()["result"]
    ours = [t["id"] for t in transcribes if t["reference_id"] == call_id]
    if not ours:
        return ""
    found = await client.get("/v1.0/transcripts", params={**alice.auth, "transcribe_id": ours[0]})
    return " ".join(t["message"] for t in found.json()["result"] if t["direction"] == direction)


async def test_a_killed_phone_has_its_call_ended_and_its_next_call_is_its_own(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=EXTENSION)).status_code == 200
    phone = Pjsua.start(
        tmp_path / "phone", user=EXTENSION["extension"], password=EXTENSION["password"],
        domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port,
        microphone=await microphone(platform, tmp_path / "microphone.wav"),
    )
    again: Pjsua | None = None
    try:
        await until(lambda: phone.registered, timeout=15)
        source = await our_number(client, alice)
        orphan = await place(client, alice, realtime_request(source))
        await until(lambda: phone.connected >= 1, timeout=10)
        await until_status(client, alice, orphan, "progressing", timeout=10)
        endpoint = platform.calls.live[orphan].endpoint
        assert endpoint is not None

        phone.kill()  # before it says anything: no BYE, no RTP from here on
        ended = await until_status(client, alice, orphan, "hangup", timeout=MEDIA_TIMEOUT_S + 5)
        assert ended["hangup_by"] == "local" and ended["hangup_reason"] == "failed", ended
        assert ended["metadata"] == {"hangup_cause": "media_timeout"}, ended
        assert endpoint.closed and endpoint not in platform.sip.media.endpoints  # its RTP stopped
        assert platform.sip.media.ports.in_use == 0  # and its port is free

        again = phone.restart()  # the phone again, on its old SIP and RTP ports
        await until(lambda: again is not None and again.registered, timeout=15)
        second = await place(client, alice, realtime_request(source))
        await until(lambda: again is not None and again.connected >= 1, timeout=10)
        await until_status(client, alice, second, "progressing", timeout=10)
        assert again.local_rtp_port(1) == phone.local_rtp_port(1)  # the very port the orphan sent to

        async def caller_transcribed() -> bool:
            return word_error_rate(CALLER_SAYS, await transcripts_of(client, alice, second, "in")) < 0.3

        await until_async(caller_transcribed, 40, "the phone's speech, under the new call's transcription")

        async def greeting_sent() -> bool:  # transcripts come fast now: the greeting may still be playing
            return "transcribed" in (await transcripts_of(client, alice, second, "out")).lower()

        await until_async(greeting_sent, 40, "the greeting to play to the end")
        await client.delete(f"/v1.0/calls/{second}", params=alice.auth)
        await until(lambda: again is not None and again.ended >= 1, timeout=10)
        assert await transcripts_of(client, alice, orphan, "in") == ""  # nothing leaked into the old one
        assert_heard(await heard_text(platform, again, 1), REALTIME_GREETING, 0.6, {"hello", "speak", "transcribed"})
    finally:
        phone.kill()
        if again is not None:
            again.stop()


async def test_a_phone_that_asks_for_a_session_timer_refreshes_it_and_keeps_its_call(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=EXTENSION)).status_code == 200
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "hold", "actions": [
        {"type": "answer"}, {"type": "sleep", "option": {"duration": 120000}}]})
    number = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]
    await client.put(f"/v1.0/numbers/{number['id']}", params=alice.auth, json={"call_flow_id": flow.json()["id"]})
    phone = Pjsua.start(
        tmp_path / "phone", user=EXTENSION["extension"], password=EXTENSION["password"],
        domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port,
        microphone=await microphone(platform, tmp_path / "microphone.wav"),
        timer_use="always", timer_sess_expires_sec=90, timer_min_se_sec=90,  # PJSIP's shortest
    )
    try:
        await until(lambda: phone.registered, timeout=15)
        phone.dial(f"sip:{number['number']}@{alice.customer_id}.registrar.voipbin.test")
        await until(lambda: phone.connected >= 1, timeout=10)
        [call] = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
        leg = platform.calls.live[call["id"]].sip
        assert leg is not None and leg.session is not None and not leg.session.we_refresh  # the phone refreshes
        first_refresh = leg.session.refreshed_at

        # At half the interval (45 s) the phone repeats the session; we answer, and it goes on.
        await until(lambda: phone.events("tsx", method="UPDATE", direction="sent", state="COMPLETED")
                    or phone.events("tsx", method="INVITE", direction="sent", state="CONFIRMED", call=1)[1:], timeout=55)
        assert leg.session.refreshed_at > first_refresh
        assert (await client.get(f"/v1.0/calls/{call['id']}", params=alice.auth)).json()["status"] == "progressing"
        phone.hangup()
        ended = await until_status(client, alice, call["id"], "hangup", timeout=10)
        assert ended["hangup_by"] == "remote", ended
    finally:
        phone.stop()


@pytest.mark.skipif(shutil.which("linphonec") is None, reason="linphone-cli is installed by `make test`")
async def test_a_killed_linphone_has_its_call_ended(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=EXTENSION)).status_code == 200
    phone = Linphone.start(
        tmp_path / "phone", user=EXTENSION["extension"], password=EXTENSION["password"],
        domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port,
        microphone=await microphone(platform, tmp_path / "microphone.wav"),
    )
    try:
        await until(lambda: platform.sip.registrations(alice.customer_id, EXTENSION["extension"]), timeout=15)
        call_id = await place(client, alice, realtime_request(await our_number(client, alice)))
        await until_status(client, alice, call_id, "progressing", timeout=15)

        phone.kill()
        ended = await until_status(client, alice, call_id, "hangup", timeout=MEDIA_TIMEOUT_S + 5)
    finally:
        phone.kill()
    assert ended["metadata"] == {"hangup_cause": "media_timeout"}, ended
