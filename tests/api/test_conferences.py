"""``/v1.0/conferences`` and ``/v1.0/conferencecalls`` without phones: shapes, checks, the
timeout, and one customer's conferences being its own (tests/telephony/test_conferences.py has
the phones)."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Tenant
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import Conferencecall


async def test_a_conference_is_created_read_changed_and_deleted(client: httpx.AsyncClient, alice: Tenant) -> None:
    chosen = new_id()
    created = await client.post("/v1.0/conferences", params=alice.auth, json={
        "id": chosen, "type": "connect", "name": "1:1", "detail": "d", "data": {"team": "blue"}, "timeout": 0,
        "pre_flow_id": "", "post_flow_id": "00000000-0000-0000-0000-000000000000",
    })  # fmt: skip
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["id"] == chosen and body["type"] == "connect" and body["status"] == "progressing"
    assert body["data"] == {"team": "blue"} and body["conferencecall_ids"] == [] and body["post_flow_id"] == ""
    again = await client.post("/v1.0/conferences", params=alice.auth, json={"id": chosen, "name": "again"})
    assert again.status_code == 409, again.text
    changed = await client.put(f"/v1.0/conferences/{chosen}", params=alice.auth, json={"name": "renamed", "timeout": 600})
    assert changed.status_code == 200 and changed.json()["name"] == "renamed" and changed.json()["timeout"] == 600
    listed = (await client.get("/v1.0/conferences", params=alice.auth)).json()["result"]
    assert [c["id"] for c in listed] == [chosen]
    deleted = await client.delete(f"/v1.0/conferences/{chosen}", params=alice.auth)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "terminated" and deleted.json()["tm_end"] and deleted.json()["tm_delete"]
    assert (await client.get(f"/v1.0/conferences/{chosen}", params=alice.auth)).status_code == 404


async def test_what_a_conference_cannot_be_is_refused(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    bobs_flow = (await client.post("/v1.0/flows", params=bob.auth, json={"name": "b", "actions": [{"type": "stop"}]})).json()
    cases = [
        ({"type": "queue"}, "INVALID_REQUEST_PARAMETER"),
        ({"id": "not-a-uuid"}, "INVALID_REQUEST_PARAMETER"),
        ({"timeout": -1}, "INVALID_REQUEST_PARAMETER"),
        ({"timeout": 86_401}, "INVALID_REQUEST_PARAMETER"),
        ({"pre_flow_id": bobs_flow["id"]}, "FLOW_NOT_FOUND"),
        ({"post_flow_id": new_id()}, "FLOW_NOT_FOUND"),
        ({"data": {"x": "y" * 20_000}}, "INVALID_REQUEST_PARAMETER"),
    ]
    for body, reason in cases:
        answer = await client.post("/v1.0/conferences", params=alice.auth, json=body)
        assert answer.status_code == 400 and answer.json()["error"]["reason"] == reason, (body, answer.text)


async def test_a_conference_with_a_timeout_ends_on_time(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    events = platform.bus.subscribe()
    created = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "short", "timeout": 1})).json()
    async with asyncio.timeout(5):
        async for event in events:
            if event.event_type == "conference_updated" and event.data["status"] == "terminated":
                break
    events.close()
    found = (await client.get(f"/v1.0/conferences/{created['id']}", params=alice.auth)).json()
    assert found["status"] == "terminated" and found["tm_end"]


async def test_a_participant_that_is_not_in_the_conference_cannot_be_kicked_or_muted(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "c"})).json()
    row = Conferencecall(id=new_id(), customer_id=alice.customer_id, conference_id=conference["id"], status="leaved",
                         tm_create=platform.clock.now())
    async with platform.store.transaction() as tx:
        tx.session.add(row)
    kicked = await client.delete(f"/v1.0/conferencecalls/{row.id}", params=alice.auth)
    assert kicked.status_code == 409 and kicked.json()["error"]["reason"] == "CONFERENCECALL_NOT_JOINED", kicked.text
    muted = await client.put(f"/v1.0/conferencecalls/{row.id}", params=alice.auth, json={"muted": True})
    assert muted.status_code == 409, muted.text
    listed = await client.get("/v1.0/conferencecalls", params={**alice.auth, "conference_id": conference["id"]})
    assert [r["id"] for r in listed.json()["result"]] == [row.id]
    refused = await client.post(f"/v1.0/conferences/{conference['id']}/transcribe_stop", params=alice.auth)
    assert refused.status_code == 400 and refused.json()["error"]["reason"] == "TRANSCRIBE_NOT_ACTIVE"
    not_recording = await client.post(f"/v1.0/conferences/{conference['id']}/recording_stop", params=alice.auth)
    assert not_recording.status_code == 400 and not_recording.json()["error"]["reason"] == "RECORDING_NOT_ACTIVE"


async def test_a_conference_is_recorded_once_at_a_time_until_stopped(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "c"})).json()
    url = f"/v1.0/conferences/{conference['id']}"
    started = await client.post(f"{url}/recording_start", params=alice.auth, json={"format": "wav", "duration": 60})
    assert started.status_code == 200 and started.json()["recording_id"], started.text
    again = await client.post(f"{url}/recording_start", params=alice.auth)
    assert again.status_code == 409 and again.json()["error"]["reason"] == "RECORDING_ALREADY_ACTIVE"
    await asyncio.sleep(0.3)
    stopped = await client.post(f"{url}/recording_stop", params=alice.auth)
    assert stopped.status_code == 200 and stopped.json()["recording_id"] == "", stopped.text
    recording = (await client.get(f"/v1.0/recordings/{started.json()['recording_id']}", params=alice.auth)).json()
    assert recording["status"] == "ended" and recording["reference_type"] == "conference"
    assert stopped.json()["recording_ids"] == [recording["id"]]


async def test_a_customer_sees_only_its_own_conferences(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    conference = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "mine"})).json()
    for method in ("GET", "DELETE"):
        answer = await client.request(method, f"/v1.0/conferences/{conference['id']}", params=bob.auth)
        assert answer.status_code == 404, (method, answer.text)
    assert (await client.put(f"/v1.0/conferences/{conference['id']}", params=bob.auth, json={"name": "x"})).status_code == 404
    assert (await client.get("/v1.0/conferences", params=bob.auth)).json()["result"] == []
    assert (await client.get(f"/v1.0/conferences/{conference['id']}", params=alice.auth)).json()["status"] == "progressing"


async def test_a_conference_is_transcribed_once_at_a_time_in_a_language_we_understand(
    client: httpx.AsyncClient, alice: Tenant
) -> None:
    conference = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "c"})).json()
    url = f"/v1.0/conferences/{conference['id']}"
    unknown = await client.post(f"{url}/transcribe_start", params=alice.auth, json={"language": "xx-YY"})
    assert unknown.status_code == 400 and unknown.json()["error"]["reason"] == "UNSUPPORTED_LANGUAGE", unknown.text
    started = await client.post(f"{url}/transcribe_start", params=alice.auth, json={"language": "en-US"})
    assert started.status_code == 200 and started.json()["transcribe_id"], started.text
    again = await client.post(f"{url}/transcribe_start", params=alice.auth)
    assert again.status_code == 409 and again.json()["error"]["reason"] == "TRANSCRIBE_ALREADY_ACTIVE"
    stopped = await client.post(f"{url}/transcribe_stop", params=alice.auth)
    assert stopped.status_code == 200 and stopped.json()["transcribe_id"] == "", stopped.text
    transcribe = (await client.get(f"/v1.0/transcribes/{started.json()['transcribe_id']}", params=alice.auth)).json()
    assert transcribe["status"] == "done" and transcribe["reference_type"] == "conference"
    assert stopped.json()["transcribe_ids"] == [transcribe["id"]]
