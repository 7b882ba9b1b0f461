"""``/v1.0/aicalls`` and ``/v1.0/aimessages``: AI sessions and their messages, reached through the
sessions this node runs (a fake one here), isolated per customer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import Tenant
from voipbin.core.ids import new_id
from voipbin.events.bus import Subscription
from voipbin.events.model import Event
from voipbin.runtime import Platform
from voipbin.store.models import AiCall, AiMessage
from voipbin.views import announce

AICALL_FIELDS = {
    "id", "customer_id", "assistance_type", "assistance_id", "ai_engine_model", "ai_tts_type", "ai_tts_voice_id",
    "ai_stt_type", "ai_vad_config", "ai_smart_turn_enabled", "parameter", "activeflow_id", "reference_type",
    "reference_id", "confbridge_id", "current_member_id", "status", "stt_language", "metadata", "tm_end",
    "tm_create", "tm_update", "tm_delete",
}
AIMESSAGE_FIELDS = {
    "id", "customer_id", "aicall_id", "activeflow_id", "active_ai_id", "role", "content", "direction", "tool_calls",
    "tool_call_id", "tm_create", "tm_update", "tm_delete",
}


class FakeSession:
    """A live AI session as the API sees one: ends and takes messages, writing what a real one would."""

    def __init__(self, platform: Platform, aicall_id: str) -> None:
        self.platform = platform
        self.aicall_id = aicall_id
        self.terminated = 0
        self.injected: list[tuple[str, str]] = []

    async def terminate(self) -> None:
        self.terminated += 1
        async with self.platform.store.transaction() as tx:
            row = await tx.session.get(AiCall, self.aicall_id)
            assert row is not None
            row.status = "terminated"
            row.tm_end = row.tm_update = tx.clock.now()
            announce(tx, row, "aicall_status_terminated")
        self.platform.ai.remove(self.aicall_id)

    async def inject(self, role: str, content: str) -> AiMessage:
        self.injected.append((role, content))
        async with self.platform.store.transaction() as tx:
            row = await tx.session.get(AiCall, self.aicall_id)
            assert row is not None
            message = AiMessage(id=new_id(), customer_id=row.customer_id, aicall_id=row.id, activeflow_id=row.activeflow_id,
                                active_ai_id=row.assistance_id, role=role, content=content, direction="outgoing",
                                tm_create=tx.clock.now())
            tx.session.add(message)
            announce(tx, message, "aimessage_created")
        return message


async def seed_aicall(platform: Platform, tenant: Tenant, **fields: Any) -> str:
    async with platform.store.transaction() as tx:
        row = AiCall(id=new_id(), customer_id=tenant.customer_id, tm_create=tx.clock.now(), **fields)
        tx.session.add(row)
    return row.id


async def live_aicall(platform: Platform, tenant: Tenant) -> tuple[str, FakeSession]:
    aicall_id = await seed_aicall(platform, tenant, status="progressing", assistance_id=new_id(), activeflow_id=new_id(),
                                  reference_id=new_id())
    session = FakeSession(platform, aicall_id)
    platform.ai.add(aicall_id, session)
    return aicall_id, session


async def next_event(events: Subscription, event_type: str) -> Event:
    async with asyncio.timeout(5):
        return await anext(e async for e in events if e.event_type == event_type)


async def test_aicalls_have_voipbin_s_shape_and_filter(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    call_id = new_id()
    on_call = await seed_aicall(platform, alice, reference_id=call_id, status="progressing", ai_engine_model="openai.gpt-5-mini",
                                ai_vad_config={"confidence": 0.7}, stt_language="en-US", call_metadata={"prompt_snapshots": []})
    ai_id = new_id()
    ended = await seed_aicall(platform, alice, reference_id=new_id(), status="terminated", assistance_id=ai_id)

    fetched = await client.get(f"/v1.0/aicalls/{on_call}", params=alice.auth)
    assert fetched.status_code == 200, fetched.text
    aicall = fetched.json()
    assert set(aicall) == AICALL_FIELDS
    assert aicall["customer_id"] == alice.customer_id and aicall["assistance_type"] == "ai"
    assert aicall["reference_type"] == "call" and aicall["reference_id"] == call_id
    assert aicall["ai_vad_config"] == {"confidence": 0.7} and aicall["metadata"] == {"prompt_snapshots": []}
    assert aicall["tm_end"] == "" and aicall["confbridge_id"] == ""

    listed = (await client.get("/v1.0/aicalls", params=alice.auth)).json()["result"]
    assert [a["id"] for a in listed] == [ended, on_call]  # newest first
    by_call = await client.get("/v1.0/aicalls", params={**alice.auth, "reference_id": call_id})
    by_status = await client.get("/v1.0/aicalls", params={**alice.auth, "status": "terminated"})
    assert [a["id"] for a in by_call.json()["result"]] == [on_call]
    assert [a["id"] for a in by_status.json()["result"]] == [ended]
    by_ai = await client.get("/v1.0/aicalls", params={**alice.auth, "assistance_id": ai_id})
    assert [a["id"] for a in by_ai.json()["result"]] == [ended]
    assert (await client.get("/v1.0/aicalls", params={**alice.auth, "status": "ringing"})).status_code == 400


async def test_starting_an_aicall_by_api_points_to_ai_talk(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post("/v1.0/aicalls", params=alice.auth, json={
        "assistance_type": "ai", "assistance_id": new_id(), "reference_type": "call", "reference_id": new_id()})

    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "NOT_SUPPORTED"
    assert "ai_talk" in response.json()["error"]["message"]


async def test_terminating_a_live_aicall_ends_its_session_once(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    aicall_id, session = await live_aicall(platform, alice)
    url = f"/v1.0/aicalls/{aicall_id}/terminate"

    terminated = await client.post(url, params=alice.auth)
    again = await client.post(url, params=alice.auth)

    assert terminated.status_code == 200, terminated.text
    assert terminated.json()["status"] == "terminated" and terminated.json()["tm_end"] != ""
    assert session.terminated == 1
    assert again.status_code == 200 and again.json() == terminated.json()


async def test_an_aicall_no_session_runs_is_recorded_terminated(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    aicall_id = await seed_aicall(platform, alice, status="progressing")
    events = platform.bus.subscribe()

    terminated = await client.post(f"/v1.0/aicalls/{aicall_id}/terminate", params=alice.auth)

    assert terminated.status_code == 200, terminated.text
    assert terminated.json()["status"] == "terminated" and terminated.json()["tm_end"] != ""
    event = await next_event(events, "aicall_status_terminated")
    events.close()
    assert event.data == terminated.json()
    assert event.topics[0] == f"customer_id:{alice.customer_id}:aicall:{aicall_id}"


async def test_deleting_a_live_aicall_terminates_it_first(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    aicall_id, session = await live_aicall(platform, alice)
    events = platform.bus.subscribe()

    deleted = await client.delete(f"/v1.0/aicalls/{aicall_id}", params=alice.auth)

    assert deleted.status_code == 200, deleted.text
    assert session.terminated == 1
    assert deleted.json()["status"] == "terminated" and deleted.json()["tm_delete"] != ""
    assert (await next_event(events, "aicall_deleted")).data == deleted.json()
    events.close()
    assert (await client.get(f"/v1.0/aicalls/{aicall_id}", params=alice.auth)).status_code == 404
    assert (await client.get("/v1.0/aicalls", params=alice.auth)).json()["result"] == []


async def test_a_message_goes_into_the_live_session_and_is_published_on_its_aicall(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    aicall_id, session = await live_aicall(platform, alice)
    events = platform.bus.subscribe()

    sent = await client.post("/v1.0/aimessages", params=alice.auth,
                             json={"aicall_id": aicall_id, "role": "system", "content": "The caller is a VIP."})

    assert sent.status_code == 200, sent.text
    message = sent.json()
    assert session.injected == [("system", "The caller is a VIP.")]
    assert set(message) == AIMESSAGE_FIELDS
    assert message["aicall_id"] == aicall_id and message["role"] == "system" and message["tool_calls"] == []
    event = await next_event(events, "aimessage_created")
    events.close()
    assert event.data == message
    assert f"customer_id:{alice.customer_id}:aicall:{aicall_id}" in event.topics

    url = f"/v1.0/aimessages/{message['id']}"
    assert (await client.get(url, params=alice.auth)).json() == message
    deleted = await client.delete(url, params=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["tm_delete"] != ""
    assert (await client.get(url, params=alice.auth)).status_code == 404


async def test_messages_list_oldest_first_page_by_page(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    aicall_id = await seed_aicall(platform, alice, status="terminated")
    other_aicall = await seed_aicall(platform, alice, status="terminated")
    async with platform.store.transaction() as tx:
        start = tx.clock.now()
        for i, (role, content) in enumerate([("user", "hello"), ("assistant", "hi, how can I help?"), ("user", "bye")]):
            tx.session.add(AiMessage(id=new_id(), customer_id=alice.customer_id, aicall_id=aicall_id, role=role,
                                     content=content, tm_create=start + timedelta(seconds=i)))
        tx.session.add(AiMessage(id=new_id(), customer_id=alice.customer_id, aicall_id=other_aicall, role="user",
                                 content="elsewhere", tm_create=start))

    first = (await client.get("/v1.0/aimessages", params={**alice.auth, "aicall_id": aicall_id, "page_size": 2})).json()
    rest = (await client.get("/v1.0/aimessages", params={**alice.auth, "aicall_id": aicall_id, "page_size": 2,
                                                          "page_token": first["next_page_token"]})).json()

    assert [m["content"] for m in first["result"]] == ["hello", "hi, how can I help?"]
    assert [m["content"] for m in rest["result"]] == ["bye"] and rest["next_page_token"] == ""
    for query in ({}, {"aicall_id": "not-an-id"}):
        assert (await client.get("/v1.0/aimessages", params={**alice.auth, **query})).status_code == 400


async def test_a_message_to_an_aicall_not_live_is_refused(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    aicall_id = await seed_aicall(platform, alice, status="terminated")

    response = await client.post("/v1.0/aimessages", params=alice.auth,
                                 json={"aicall_id": aicall_id, "role": "user", "content": "anyone there?"})

    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "AICALL_NOT_LIVE"
    assert "terminated" in response.json()["error"]["message"]


BAD_MESSAGES: list[tuple[dict[str, object], str]] = [
    ({"role": "tool"}, "tool_call_id"),
    ({"role": "function"}, "role"),
    ({"role": ""}, "role"),
    ({"content": ""}, "content"),
    ({"content": "x" * 8193}, "content"),
    ({"content": None}, "content"),
    ({"aicall_id": None}, "aicall_id"),
]


async def test_a_bad_message_is_a_400_naming_it(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    aicall_id, session = await live_aicall(platform, alice)
    for change, named in BAD_MESSAGES:  # one platform for all: each case costs a request, not a start
        body = {"aicall_id": aicall_id, "role": "user", "content": "hello", **change}
        response = await client.post("/v1.0/aimessages", params=alice.auth, json={k: v for k, v in body.items() if v is not None})
        assert response.status_code == 400, (change, response.text)
        assert named in response.json()["error"]["message"], change
    assert session.injected == []


async def test_another_customer_s_aicall_and_messages_are_not_found(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant
) -> None:
    aicall_id, session = await live_aicall(platform, alice)
    message = (await client.post("/v1.0/aimessages", params=alice.auth,
                                 json={"aicall_id": aicall_id, "role": "user", "content": "mine"})).json()

    for response in (
        await client.get(f"/v1.0/aicalls/{aicall_id}", params=bob.auth),
        await client.post(f"/v1.0/aicalls/{aicall_id}/terminate", params=bob.auth),
        await client.delete(f"/v1.0/aicalls/{aicall_id}", params=bob.auth),
        await client.post("/v1.0/aimessages", params=bob.auth, json={"aicall_id": aicall_id, "role": "user", "content": "hi"}),
        await client.get(f"/v1.0/aimessages/{message['id']}", params=bob.auth),
        await client.delete(f"/v1.0/aimessages/{message['id']}", params=bob.auth),
    ):
        assert response.status_code == 404, response.text
    assert (await client.get("/v1.0/aicalls", params=bob.auth)).json()["result"] == []
    theirs = await client.get("/v1.0/aimessages", params={**bob.auth, "aicall_id": aicall_id})
    assert theirs.status_code == 200 and theirs.json()["result"] == []
    assert session.terminated == 0 and session.injected == [("user", "mine")]
