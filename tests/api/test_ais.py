"""``/v1.0/ais``: VoIPBIN's AI resource, its write-only key, its checks and its events."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.conftest import Tenant
from voipbin.runtime import Platform

KEY = "sk-test-secret-0123456789"
AI = {
    "name": "Support bot",
    "detail": "answers the support line",
    "engine_model": "openai.gpt-5-mini",
    "engine_key": KEY,
    "parameter": {"temperature": 0.3},
    "init_prompt": "You are a helpful support agent. Keep answers short.",
    "tts_type": "elevenlabs",
    "tts_voice_id": "21m00Tcm4TlvDq8ikWAM",
    "stt_type": "deepgram",
    "stt_language": "en-US",
    "vad_config": {"confidence": 0.7, "stop_secs": 0.3},
    "tool_names": ["connect_call", "stop_service"],
}


async def test_an_ai_has_voipbin_s_shape_and_never_shows_its_key(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    events = platform.bus.subscribe()
    created = await client.post("/v1.0/ais", params=alice.auth, json=AI)
    assert created.status_code == 200, created.text
    ai = created.json()
    assert {k: ai[k] for k in AI if k != "engine_key"} == {k: v for k, v in AI.items() if k != "engine_key"}
    assert "engine_key" not in ai
    assert ai["customer_id"] == alice.customer_id and ai["type"] == "normal" and len(ai["direct_hash"]) == 12

    fetched = await client.get(f"/v1.0/ais/{ai['id']}", params=alice.auth)
    listed = await client.get("/v1.0/ais", params=alice.auth)
    assert fetched.json() == ai and listed.json()["result"] == [ai]
    async with asyncio.timeout(5):
        event = await anext(e async for e in events if e.event_type == "ai_created")
    events.close()
    assert event.data["id"] == ai["id"]
    for shown in (created.text, fetched.text, listed.text, json.dumps(event.data)):
        assert KEY not in shown


async def test_an_ai_is_updated_and_deleted(client: httpx.AsyncClient, alice: Tenant) -> None:
    ai = (await client.post("/v1.0/ais", params=alice.auth, json=AI)).json()
    url = f"/v1.0/ais/{ai['id']}"

    updated = await client.put(url, params=alice.auth, json={"init_prompt": "Be brief.", "tool_names": ["all"]})
    assert updated.status_code == 200, updated.text
    assert updated.json()["init_prompt"] == "Be brief." and updated.json()["tool_names"] == ["all"]
    assert updated.json()["engine_model"] == AI["engine_model"] and updated.json()["tm_update"] != ""

    deleted = await client.delete(url, params=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["tm_delete"] != ""
    assert (await client.get(url, params=alice.auth)).status_code == 404
    assert (await client.get("/v1.0/ais", params=alice.auth)).json()["result"] == []


async def test_another_customer_s_ai_is_not_found(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    ai = (await client.post("/v1.0/ais", params=alice.auth, json=AI)).json()
    url = f"/v1.0/ais/{ai['id']}"

    for response in (
        await client.get(url, params=bob.auth),
        await client.put(url, params=bob.auth, json={"name": "taken over"}),
        await client.delete(url, params=bob.auth),
    ):
        assert response.status_code == 404
    assert (await client.get("/v1.0/ais", params=bob.auth)).json()["result"] == []
    assert (await client.get(url, params=alice.auth)).json()["name"] == AI["name"]


BAD_FIELDS: list[tuple[dict[str, object], str, str]] = [
    ({"engine_model": "gpt-5"}, "INVALID_REQUEST_PARAMETER", "gpt-5"),
    ({"engine_model": "skynet.t-800"}, "INVALID_REQUEST_PARAMETER", "ollama"),
    ({"tool_names": ["send_email"]}, "INVALID_REQUEST_PARAMETER", "send_email"),
    ({"tool_names": ["conect_call"]}, "INVALID_REQUEST_PARAMETER", "connect_call"),
    ({"tts_type": "marvin"}, "INVALID_REQUEST_PARAMETER", "elevenlabs"),
    ({"stt_type": "whisperer"}, "INVALID_REQUEST_PARAMETER", "deepgram"),
    ({"vad_config": {"confidence": 7}}, "INVALID_REQUEST_PARAMETER", "confidence"),
    ({"parameter": {"blob": "x" * 20_000}}, "INVALID_REQUEST_PARAMETER", "parameter"),
    ({"stt_type": "", "stt_language": "ko-KR"}, "UNSUPPORTED_LANGUAGE", "ko-KR"),
    ({"engine_model": "groq.llama-3.1-8b", "engine_key": ""}, "ENGINE_UNAVAILABLE", "VOIPBIN_LLM_GROQ_KEY"),
    ({"engine_model": "local.nonesuch"}, "ENGINE_UNAVAILABLE", "smollm2"),
    ({"engine_model": "local.../../etc/passwd"}, "ENGINE_UNAVAILABLE", "no paths"),
]


async def test_a_bad_field_is_a_400_naming_it(client: httpx.AsyncClient, alice: Tenant) -> None:
    ai = (await client.post("/v1.0/ais", params=alice.auth, json=AI)).json()
    for change, reason, named in BAD_FIELDS:  # one platform for all: each case costs two requests
        created = await client.post("/v1.0/ais", params=alice.auth, json={**AI, **change})
        updated = await client.put(f"/v1.0/ais/{ai['id']}", params=alice.auth, json=change)
        for response in (created, updated):
            assert response.status_code == 400, (change, response.text)
            assert response.json()["error"]["reason"] == reason, change
            assert named in response.json()["error"]["message"], change


async def test_engine_model_is_required(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post("/v1.0/ais", params=alice.auth, json={"name": "no model"})
    assert response.status_code == 400
    assert "engine_model" in response.json()["error"]["message"]
