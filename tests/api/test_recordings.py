"""Recordings through the API, on a call the platform places to its own number (no outside peer).

The outgoing leg is the call under test; the incoming leg runs the number's flow, which
answers and can send it DTMF.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.conftest import Tenant
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import Activeflow

NUMBER = "+89950001234"
WAIT = {"type": "sleep", "option": {"duration": 60000}}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """The first truthy result of ``check``, polled until ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return result


async def loop_call(
    client: httpx.AsyncClient, platform: Platform, tenant: Tenant, answer_actions: list[dict[str, Any]] | None = None
) -> str:
    """The id of an outgoing call (waiting in a sleep) to our own number, once it is in progress."""
    flow = {"name": "answer", "actions": [{"type": "answer"}, *(answer_actions or []), WAIT]}
    flow_id = (await client.post("/v1.0/flows", params=tenant.auth, json=flow)).json()["id"]
    number = await client.post("/v1.0/numbers", params=tenant.auth, json={"number": NUMBER, "call_flow_id": flow_id})
    assert number.status_code == 200, number.text
    body = {
        "source": {"type": "tel", "target": NUMBER},
        "destinations": [{"type": "sip", "target": f"sip:{NUMBER}@127.0.0.1:{platform.sip.stack.port}"}],
        "actions": [WAIT],
    }
    placed = await client.post("/v1.0/calls", params=tenant.auth, json=body)
    assert placed.status_code == 200, placed.text
    call_id = str(placed.json()["calls"][0]["id"])
    await eventually(lambda: _call_has(client, tenant, call_id, status="progressing"))
    await eventually(lambda: _call_has(client, tenant, call_id, activeflow_id=lambda v: bool(v)))
    return call_id


async def _call_has(client: httpx.AsyncClient, tenant: Tenant, call_id: str, **wanted: Any) -> dict[str, Any] | None:
    call = (await client.get(f"/v1.0/calls/{call_id}", params=tenant.auth)).json()
    ok = all(want(call[k]) if callable(want) else call[k] == want for k, want in wanted.items())
    return call if ok else None


async def start_recording(client: httpx.AsyncClient, tenant: Tenant, call_id: str, body: dict[str, Any] | None = None) -> str:
    response = await client.post(f"/v1.0/calls/{call_id}/recording_start", params=tenant.auth, json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["recording_id"])


async def recording_of(client: httpx.AsyncClient, tenant: Tenant, recording_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1.0/recordings/{recording_id}", params=tenant.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_record_a_call_then_download_and_delete_it(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    events = platform.bus.subscribe()

    started = await client.post(f"/v1.0/calls/{call_id}/recording_start", params=alice.auth, json={"format": "wav"})
    assert started.status_code == 200, started.text
    recording_id = started.json()["recording_id"]
    assert recording_id and started.json()["recording_ids"] == [recording_id]
    again = await client.post(f"/v1.0/calls/{call_id}/recording_start", params=alice.auth)
    assert again.status_code == 409 and again.json()["error"]["reason"] == "RECORDING_ALREADY_ACTIVE"
    busy = await client.get(f"/v1.0/recordingfiles/{recording_id}", params=alice.auth)
    assert busy.status_code == 400 and busy.json()["error"]["reason"] == "RECORDING_NOT_ENDED"
    await asyncio.sleep(0.5)

    stopped = await client.post(f"/v1.0/calls/{call_id}/recording_stop", params=alice.auth)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["recording_id"] == "" and stopped.json()["recording_ids"] == [recording_id]
    recording = await recording_of(client, alice, recording_id)
    call = (await client.get(f"/v1.0/calls/{call_id}", params=alice.auth)).json()
    assert recording["status"] == "ended" and recording["tm_start"] and recording["tm_end"]
    assert (recording["reference_type"], recording["reference_id"], recording["format"]) == ("call", call_id, "wav")
    assert recording["activeflow_id"] == call["activeflow_id"]
    [listed] = (await client.get("/v1.0/recordings", params=alice.auth)).json()["result"]
    assert listed == recording

    seen = []
    async with asyncio.timeout(5):
        async for event in events:
            if event.event_type.startswith("recording_"):
                seen.append((event.event_type, event.data["status"]))
            if len(seen) == 2:
                break
    events.close()
    assert seen == [("recording_started", "recording"), ("recording_finished", "ended")]

    redirect = await client.get(f"/v1.0/recordingfiles/{recording_id}", params={"accesskey": alice.accesskey})
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location == f"/v1.0/recordingfiles/{recording_id}/file?accesskey={alice.accesskey}"
    download = await client.get(location)
    assert download.status_code == 200 and download.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(download.content)) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getsampwidth()) == (2, 8000, 2)
        assert audio.getnframes() > 8000 * 0.3  # the half second recorded
    assert (await client.get(f"/v1.0/recordingfiles/{recording_id}/file")).status_code == 401

    deleted = await client.delete(f"/v1.0/recordings/{recording_id}", params=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["tm_delete"]
    assert not list((platform.settings.data_dir / "recordings" / alice.customer_id).iterdir())
    assert (await client.get(f"/v1.0/recordings/{recording_id}", params=alice.auth)).status_code == 404
    assert (await client.get(f"/v1.0/recordingfiles/{recording_id}", params=alice.auth)).status_code == 404
    assert (await client.get("/v1.0/recordings", params=alice.auth)).json()["result"] == []


async def test_another_customer_cannot_get_the_file(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant
) -> None:
    call_id = await loop_call(client, platform, alice)
    recording_id = await start_recording(client, alice, call_id)
    await client.post(f"/v1.0/calls/{call_id}/recording_stop", params=alice.auth)
    for path in (f"/v1.0/recordingfiles/{recording_id}", f"/v1.0/recordingfiles/{recording_id}/file"):
        response = await client.get(path, params=bob.auth)
        assert response.status_code == 404 and "RIFF" not in response.text
    own = await client.get(f"/v1.0/recordingfiles/{recording_id}", params=alice.auth, follow_redirects=True)
    assert own.status_code == 200 and own.content.startswith(b"RIFF")


BAD_OPTIONS = [
    {"format": "mp3"},
    {"duration": -1},
    {"duration": "5"},
    {"duration": 1.5},
    {"end_of_silence": 86401},
    {"end_of_key": "5"},
    {"on_end_flow_id": "not-a-flow"},
]


async def test_bad_recording_options_are_refused(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    for body in BAD_OPTIONS:
        response = await client.post(f"/v1.0/calls/{call_id}/recording_start", params=alice.auth, json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await client.get("/v1.0/recordings", params=alice.auth)).json()["result"] == []


async def test_only_a_call_in_progress_is_recorded(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    not_recording = await client.post(f"/v1.0/calls/{call_id}/recording_stop", params=alice.auth)
    assert not_recording.status_code == 400 and not_recording.json()["error"]["reason"] == "RECORDING_NOT_ACTIVE"
    await client.post(f"/v1.0/calls/{call_id}/hangup", params=alice.auth)
    for verb in ("recording_start", "recording_stop"):
        response = await client.post(f"/v1.0/calls/{call_id}/{verb}", params=alice.auth)
        assert response.status_code == 400 and response.json()["error"]["reason"] == "CALL_STATE_INVALID"
    unknown = await client.post(f"/v1.0/calls/{new_id()}/recording_start", params=alice.auth)
    assert unknown.status_code == 404


async def test_hangup_ends_the_recording(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    recording_id = await start_recording(client, alice, call_id)
    await client.post(f"/v1.0/calls/{call_id}/hangup", params=alice.auth)
    assert (await recording_of(client, alice, recording_id))["status"] == "ended"


async def test_duration_limits_the_recording(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    body = {"format": "wav", "duration": 1, "end_of_silence": 0, "end_of_key": "none", "on_end_flow_id": ""}
    recording_id = await start_recording(client, alice, call_id, body)

    async def ended() -> bool:
        return (await recording_of(client, alice, recording_id))["status"] == "ended"

    await eventually(ended, timeout=5)
    assert await _call_has(client, alice, call_id, status="progressing", recording_id="")


async def test_a_key_ends_the_recording(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    """The answering side presses # (RFC 4733) a second in; end_of_key "#" stops the recording there."""
    send_pound = [{"type": "sleep", "option": {"duration": 1000}}, {"type": "digits_send", "option": {"digits": "#"}}]
    call_id = await loop_call(client, platform, alice, send_pound)
    body = {"end_of_key": "#"}
    recording_id = await start_recording(client, alice, call_id, body)

    async def ended() -> bool:
        return (await recording_of(client, alice, recording_id))["status"] == "ended"

    await eventually(ended, timeout=5)


async def test_silence_ends_the_recording(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)  # the answering side says nothing
    body = {"end_of_silence": 1}
    recording_id = await start_recording(client, alice, call_id, body)

    async def ended() -> bool:
        return (await recording_of(client, alice, recording_id))["status"] == "ended"

    await eventually(ended, timeout=5)


async def test_stopping_an_activeflow_keeps_its_call(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = await loop_call(client, platform, alice)
    activeflow_id = (await client.get(f"/v1.0/calls/{call_id}", params=alice.auth)).json()["activeflow_id"]

    stopped = await client.post(f"/v1.0/activeflows/{activeflow_id}/stop", params=alice.auth)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "ended" and [a["type"] for a in stopped.json()["executed_actions"]] == ["sleep"]
    again = await client.post(f"/v1.0/activeflows/{activeflow_id}/stop", params=alice.auth)
    assert again.status_code == 409 and again.json()["error"]["reason"] == "ACTIVEFLOW_ALREADY_STOPPED"
    await asyncio.sleep(0.5)
    assert await _call_has(client, alice, call_id, status="progressing")
    # The call is the API's now: it can still be recorded, and hung up.
    assert (await client.post(f"/v1.0/calls/{call_id}/recording_start", params=alice.auth)).status_code == 200
    assert (await client.post(f"/v1.0/calls/{call_id}/hangup", params=alice.auth)).json()["status"] == "hangup"


async def test_stopping_an_activeflow_that_runs_nowhere_marks_it_ended(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    activeflow_id = new_id()
    async with platform.store.transaction() as tx:
        orphan = Activeflow(id=activeflow_id, customer_id=alice.customer_id, reference_id=new_id(), tm_create=tx.clock.now())
        tx.session.add(orphan)
    stopped = await client.post(f"/v1.0/activeflows/{activeflow_id}/stop", params=alice.auth)
    assert stopped.status_code == 200 and stopped.json()["status"] == "ended"
