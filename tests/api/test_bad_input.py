"""Bad input of every kind gets a 4xx with an envelope a person can act on, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant


def assert_envelope(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"status", "reason", "message", "request_id"}
    assert error["message"] and error["request_id"] == response.headers["x-request-id"]
    return error


async def test_malformed_json(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post(
        "/v1.0/extensions", params=alice.auth, content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert assert_envelope(response, 400)["reason"] == "INVALID_JSON_BODY"


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5, "detail": "d", "extension": "1", "password": "pass1"},
        {"name": "n", "detail": ["d"], "extension": "1", "password": "pass1"},
        {"name": "n", "detail": "d", "extension": "has space", "password": "pass1"},
        {"name": "n", "detail": "d", "extension": "1", "password": None},
        [],
        "text",
    ],
)
async def test_wrong_types(client: httpx.AsyncClient, alice: Tenant, body: object) -> None:
    response = await client.post("/v1.0/extensions", params=alice.auth, json=body)
    assert_envelope(response, 400)


async def test_oversized_body(client: httpx.AsyncClient, alice: Tenant) -> None:
    huge = {"name": "n", "detail": "x" * (2 << 20), "extension": "1", "password": "pass1"}
    response = await client.post("/v1.0/extensions", params=alice.auth, json=huge)
    assert assert_envelope(response, 413)["reason"] == "REQUEST_TOO_LARGE"


async def test_oversized_body_without_content_length(client: httpx.AsyncClient, alice: Tenant) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    response = await client.post("/v1.0/extensions", params=alice.auth, content=chunks())
    assert_envelope(response, 413)


@pytest.mark.parametrize("resource_id", ["00000000-0000-0000-0000-000000000000", "nope", "1" * 300])
async def test_unknown_ids(client: httpx.AsyncClient, alice: Tenant, resource_id: str) -> None:
    for collection in ("extensions", "numbers", "accesskeys", "agents"):
        response = await client.get(f"/v1.0/{collection}/{resource_id}", params=alice.auth)
        assert assert_envelope(response, 404)["reason"] == f"{collection[:-1].upper()}_NOT_FOUND"


async def test_unknown_route_and_method(client: httpx.AsyncClient, alice: Tenant) -> None:
    assert assert_envelope(await client.get("/v1.0/nothing-here", params=alice.auth), 404)["reason"] == "ROUTE_NOT_FOUND"
    assert_envelope(await client.patch("/v1.0/extensions", params=alice.auth), 405)


async def test_bad_paging(client: httpx.AsyncClient, alice: Tenant) -> None:
    bad_token = await client.get("/v1.0/extensions", params={**alice.auth, "page_token": "yesterday"})
    not_a_number = await client.get("/v1.0/extensions", params={**alice.auth, "page_size": "many"})
    clamped = await client.get("/v1.0/extensions", params={**alice.auth, "page_size": 100000})

    assert "page_token" in assert_envelope(bad_token, 400)["message"]
    assert "page_size" in assert_envelope(not_a_number, 400)["message"]
    assert clamped.status_code == 200


async def test_nul_characters_are_refused_with_a_clear_400(client: httpx.AsyncClient, alice: Tenant) -> None:
    body = {"name": "a\x00b", "detail": "d", "extension": "nul1", "password": "secret-nul-1"}
    nested = {"source": {"type": "tel", "target": "+1555\x00"}, "destinations": [], "actions": [{"type": "hangup"}]}

    in_body = await client.post("/v1.0/extensions", params=alice.auth, json=body)
    in_nested = await client.post("/v1.0/calls", params=alice.auth, json=nested)
    in_query = await client.get("/v1.0/transcribes", params={**alice.auth, "reference_id": "\x00"})

    for response in (in_body, in_nested, in_query):
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["error"]["message"]


@pytest.mark.parametrize("language", ["ko-KR", "ja-JP"])
async def test_a_transcription_no_recogniser_understands_is_refused_up_front(
    client: httpx.AsyncClient, alice: Tenant, language: str
) -> None:
    """The seed names ko-KR and ja-JP; no shipped engine transcribes them (docs/speech.md), so: a 400 saying so."""
    actions = [{"type": "transcribe_start", "option": {"language": language}}, {"type": "sleep", "option": {"duration": 1000}}]
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    call = {"source": {"type": "tel", "target": source}, "destinations": [{"type": "tel", "target": "+15550100"}],
            "actions": actions}
    for response in (
        await client.post("/v1.0/calls", params=alice.auth, json=call),
        await client.post("/v1.0/flows", params=alice.auth, json={"name": "n", "detail": "d", "actions": actions}),
    ):
        error = assert_envelope(response, 400)
        assert error["reason"] == "UNSUPPORTED_LANGUAGE"
        assert language in error["message"] and "en-US" in error["message"] and "Deepgram" in error["message"]
    for fine in ("en-GB", "${voipbin.call.language}"):
        actions[0]["option"]["language"] = fine
        created = await client.post("/v1.0/flows", params=alice.auth, json={"name": "n", "detail": "d", "actions": actions})
        assert created.status_code == 200, created.text


async def test_with_deepgram_other_languages_are_accepted(
    client: httpx.AsyncClient, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOIPBIN_DEEPGRAM_API_KEY", "dg-test-key")
    option = {"language": "ko-KR", "provider": "deepgram"}
    actions = [{"type": "transcribe_start", "option": option}]
    created = await client.post("/v1.0/flows", params=alice.auth, json={"name": "n", "detail": "d", "actions": actions})
    assert created.status_code == 200, created.text
    option["provider"] = ""  # without the provider, the offline recognisers would get it
    refused = await client.post("/v1.0/flows", params=alice.auth, json={"name": "n", "detail": "d", "actions": actions})
    assert assert_envelope(refused, 400)["reason"] == "UNSUPPORTED_LANGUAGE"
