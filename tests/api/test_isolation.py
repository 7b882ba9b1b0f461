"""Tenant isolation: for every route with an id, another customer gets 404 and never the data.

The routes are read from the app's own spec, so a route added later without a case here fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from voipbin.api.app import create_app
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import (
    Activeflow,
    AiCall,
    AiMessage,
    AiSummary,
    Conferencecall,
    Recording,
    Speaking,
    StorageFile,
    Transcribe,
)

# How to make one resource of each kind as alice through the API, and a harmless body for PUTs.
POSTED: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "extension_id": ("/v1.0/extensions", {"name": "n", "detail": "d", "extension": "501", "password": "secret1"}, {"detail": "x"}),
    "number_id": ("/v1.0/numbers", {"number": "+89955500099"}, {"name": "x"}),
    "accesskey_id": ("/v1.0/accesskeys", {"name": "k"}, {"name": "x"}),
    "agent_id": ("/v1.0/agents", {"username": "agent@alice.example", "password": "an-agent-passphrase"}, {"name": "x"}),
    "flow_id": ("/v1.0/flows", {"name": "f", "actions": [{"type": "hangup"}]}, {"name": "x"}),
    "ai_id": ("/v1.0/ais", {"name": "bot", "engine_model": "ollama.llama3.2"}, {"name": "x"}),
    "conference_id": ("/v1.0/conferences", {"name": "c"}, {"name": "x"}),
}
# Made only by a live call (or, for storage files, a multipart upload), so written straight to the database.
STORED = {
    "activeflow_id": Activeflow,
    "transcribe_id": Transcribe,
    "speaking_id": Speaking,
    "recording_id": Recording,
    "storage_file_id": StorageFile,
    "aicall_id": AiCall,
    "aimessage_id": AiMessage,
    "summary_id": AiSummary,
    "conferencecall_id": Conferencecall,
}
FROM_CALLS = {"call_id", "groupcall_id"}
OPERATOR_ONLY = {"customer_id", "provider_id"}
BODIES = {"/permission": {"permission": 64}, "/password": {"password": "hijacked-password"}, "/say": {"text": "hi"}}


def id_routes(platform: Platform) -> list[tuple[str, str, str]]:
    """(method, path, id parameter) of every route with an id, from the app's own spec."""
    routes = []
    for path, operations in create_app(platform).openapi()["paths"].items():
        if "{" in path:
            param = path.split("{", 1)[1].split("}", 1)[0]
            routes += [(method.upper(), path, param) for method in operations]
    return routes


async def make_resources(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> dict[str, str]:
    ids: dict[str, str] = {}
    for param, (collection, body, _) in POSTED.items():
        response = await client.post(collection, params=alice.auth, json=body)
        assert response.status_code in (200, 201), response.text
        ids[param] = response.json()["id"]
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][-1]["number"]
    call = {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "n"}],
        "actions": [{"type": "hangup"}],
    }
    placed = await client.post("/v1.0/calls", params=alice.auth, json=call)
    assert placed.status_code == 200, placed.text
    group = placed.json()["groupcalls"][0]
    ids["groupcall_id"], ids["call_id"] = group["id"], group["call_ids"][0]
    ids["mail_id"] = await mail_to(client, alice)
    async with platform.store.transaction() as tx:
        for param, model in STORED.items():
            ids[param] = new_id()
            tx.session.add(model(id=ids[param], customer_id=alice.customer_id, tm_create=tx.clock.now()))
    return ids


async def mail_to(client: httpx.AsyncClient, alice: Tenant) -> str:
    """The id of a mail in alice's sandbox mailbox (mail goes out in the background)."""
    await client.post("/auth/password-forgot", json={"username": alice.username})
    for _ in range(100):
        if mails := (await client.get("/sandbox/mailbox", params=alice.auth)).json()["result"]:
            return str(mails[0]["id"])
        await asyncio.sleep(0.05)
    raise AssertionError("no mail reached alice's mailbox")


async def test_every_id_route_has_a_case(platform: Platform) -> None:
    params = {param for _, _, param in id_routes(platform)}
    assert len(params) >= 10
    assert params <= set(POSTED) | set(STORED) | FROM_CALLS | OPERATOR_ONLY | {"mail_id"}


@pytest.mark.parametrize("credential", ["token", "accesskey"])
async def test_other_customers_resources_are_invisible(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant, credential: str
) -> None:
    ids = await make_resources(client, platform, alice)
    bob_auth = {credential: bob.token if credential == "token" else bob.accesskey}

    for method, path, param in id_routes(platform):
        if param in OPERATOR_ONLY:
            url = path.replace("{" + param + "}", alice.customer_id)
            response = await client.request(method, url, params=bob_auth, json={})
            assert response.status_code == 403, (method, url)
            continue
        url = path.replace("{" + param + "}", ids[param])
        body = next((b for suffix, b in BODIES.items() if url.endswith(suffix)), None)
        if body is None and method == "PUT":
            body = POSTED[param][2] if param in POSTED else {}
        response = await client.request(method, url, params=bob_auth, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert ids[param] not in response.text

    # And alice still sees every one of them, unchanged by bob.
    for param, (collection, _, _) in POSTED.items():
        mine = await client.get(f"{collection}/{ids[param]}", params=alice.auth)
        assert mine.status_code == 200
        assert mine.json()["tm_update"] == ""


async def test_lists_hold_only_own_rows(client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant) -> None:
    await make_resources(client, platform, alice)
    for collection in ("extensions", "numbers", "accesskeys", "agents", "flows", "calls", "groupcalls", "activeflows", "transcribes", "speakings", "recordings",
                       "storage_files", "ais", "aicalls", "aisummaries", "conferences", "conferencecalls"):
        theirs = (await client.get(f"/v1.0/{collection}", params=alice.auth)).json()["result"]
        rows = (await client.get(f"/v1.0/{collection}", params=bob.auth)).json()["result"]
        assert theirs, collection  # alice has some, so bob seeing none of them means something
        assert all(row["customer_id"] == bob.customer_id for row in rows), collection
