"""Call requests the platform must refuse, each with a message that says what to fix."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import Tenant

TALK = [{"type": "talk", "option": {"text": "hello"}}]


async def own_number(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return str((await client.get("/v1.0/numbers", params=tenant.auth)).json()["result"][0]["number"])


async def place(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> httpx.Response:
    return await client.post("/v1.0/calls", params=tenant.auth, json=body)


@pytest.fixture
async def phone(client: httpx.AsyncClient, alice: Tenant) -> str:
    body = {"name": "quickstart-phone", "detail": "d", "extension": "q1", "password": "secret-pass"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    return "quickstart-phone"


async def test_an_unregistered_extension_gets_a_groupcall_whose_call_fails(
    client: httpx.AsyncClient, alice: Tenant, phone: str
) -> None:
    source = {"type": "tel", "target": await own_number(client, alice)}
    response = await place(client, alice, source=source, destinations=[{"type": "extension", "target_name": phone}], actions=TALK)
    assert response.status_code == 200
    call_id = response.json()["groupcalls"][0]["call_ids"][0]
    for _ in range(100):
        call = (await client.get(f"/v1.0/calls/{call_id}", params=alice.auth)).json()
        if call["status"] == "hangup":
            break
        await asyncio.sleep(0.05)
    assert call["status"] == "hangup" and call["hangup_reason"] == "failed"


@pytest.mark.parametrize(
    ("source", "destination", "actions", "reason", "words"),
    [
        ({"type": "tel", "target": "+15559990000"}, {"type": "extension", "target_name": "quickstart-phone"}, TALK, "SOURCE_NOT_OWNED", "GET /v1.0/numbers"),
        ({"type": "tel", "target": "555-1234"}, {"type": "extension", "target_name": "quickstart-phone"}, TALK, "INVALID_REQUEST_PARAMETER", "E.164"),
        ("OWN", {"type": "extension", "target_name": "nobody"}, TALK, "EXTENSION_NOT_FOUND", "'nobody'"),
        ("OWN", {"type": "fax", "target": "x"}, TALK, "UNSUPPORTED_DESTINATION", "'fax'"),
        ("OWN", {"type": "tel", "target": "12345"}, TALK, "INVALID_REQUEST_PARAMETER", "E.164"),
        ("OWN", {"type": "tel", "target": "+15551230000"}, TALK, "NO_PROVIDER", "POST /v1.0/providers"),
        ("OWN", {"type": "extension", "target_name": "quickstart-phone"}, [{"type": "tlak"}], "INVALID_ACTION", "'tlak'"),
        ("OWN", {"type": "extension", "target_name": "quickstart-phone"}, [{"type": "talk"}], "INVALID_ACTION", "'text'"),
        ("OWN", {"type": "extension", "target_name": "quickstart-phone"}, [{"type": "sleep", "option": {"duration": "long"}}], "INVALID_ACTION", "duration"),
    ],
)
async def test_refused_with_a_reason(
    client: httpx.AsyncClient, alice: Tenant, phone: str, source: object, destination: dict[str, str], actions: list[object], reason: str, words: str
) -> None:
    if source == "OWN":
        source = {"type": "tel", "target": await own_number(client, alice)}
    response = await place(client, alice, source=source, destinations=[destination], actions=actions)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["reason"] == reason and words in error["message"], error
    assert (await client.get("/v1.0/calls", params=alice.auth)).json()["result"] == []


async def test_another_customers_number_is_not_yours(client: httpx.AsyncClient, alice: Tenant, bob: Tenant, phone: str) -> None:
    bobs = {"type": "tel", "target": await own_number(client, bob)}
    response = await place(client, alice, source=bobs, destinations=[{"type": "extension", "target_name": phone}], actions=TALK)
    assert response.status_code == 400 and response.json()["error"]["reason"] == "SOURCE_NOT_OWNED"


async def test_nothing_to_do_or_nowhere_to_call(client: httpx.AsyncClient, alice: Tenant, phone: str) -> None:
    source = {"type": "tel", "target": await own_number(client, alice)}
    no_actions = await place(client, alice, source=source, destinations=[{"type": "extension", "target_name": phone}])
    no_destinations = await place(client, alice, source=source, destinations=[], actions=TALK)
    assert no_actions.status_code == 400 and "actions" in no_actions.json()["error"]["message"]
    assert no_destinations.status_code == 400 and "destinations" in no_destinations.json()["error"]["message"]


async def test_speakings_need_a_call_in_progress(client: httpx.AsyncClient, alice: Tenant) -> None:
    body = {"reference_type": "call", "reference_id": "00000000-0000-0000-0000-000000000001"}
    response = await client.post("/v1.0/speakings", params=alice.auth, json=body)
    assert response.status_code == 400 and "progressing" in response.json()["error"]["message"]


async def test_say_text_is_limited_to_5000_characters(client: httpx.AsyncClient, alice: Tenant) -> None:
    url = "/v1.0/speakings/00000000-0000-0000-0000-000000000001/say"
    too_long = await client.post(url, params=alice.auth, json={"text": "x" * 5001})
    empty = await client.post(url, params=alice.auth, json={"text": ""})
    assert too_long.status_code == 400 and "5000" in too_long.json()["error"]["message"]
    assert empty.status_code == 400
