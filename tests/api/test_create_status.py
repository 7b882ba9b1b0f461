"""Each create route answers the status VoIPBIN's seed-era OpenAPI gives it (201 for some, 200 for most)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import Tenant
from voipbin.api.app import create_app
from voipbin.config import Settings
from voipbin.runtime import Platform

# The success status of each create (POST on a collection) in VoIPBIN's seed-era OpenAPI, for
# every one this platform serves (copied here: the spec document is not part of the repository).
SEED_ERA_CREATE_STATUS = {
    "/v1.0/accesskeys": 200,
    "/v1.0/agents": 201,
    "/v1.0/aicalls": 200,
    "/v1.0/aimessages": 200,
    "/v1.0/ais": 200,
    "/v1.0/aisummaries": 200,
    "/v1.0/calls": 200,
    "/v1.0/conferences": 200,
    "/v1.0/customers": 200,
    "/v1.0/extensions": 200,
    "/v1.0/flows": 200,
    "/v1.0/numbers": 200,
    "/v1.0/providers": 200,
    "/v1.0/speakings": 201,
    "/v1.0/storage_files": 200,
}


def test_every_create_route_declares_the_seed_era_status(tmp_path: Path) -> None:
    paths = create_app(Platform(Settings(data_dir=tmp_path / "data"))).openapi()["paths"]
    creates = {path for path, operations in paths.items() if path.startswith("/v1.0/") and "{" not in path
               and "post" in operations}
    assert creates == set(SEED_ERA_CREATE_STATUS)
    declared = {path: [int(code) for code in paths[path]["post"]["responses"] if code.startswith("2")] for path in creates}
    assert declared == {path: [status] for path, status in SEED_ERA_CREATE_STATUS.items()}


async def test_creates_answer_their_status(client: httpx.AsyncClient, alice: Tenant) -> None:
    bodies = {
        "/v1.0/accesskeys": {"name": "my-api-key", "detail": "API key for automated access"},
        "/v1.0/extensions": {"name": "quickstart-phone", "detail": "Quickstart softphone extension",
                             "extension": "quickstart1", "password": "your-secure-password-here"},
        "/v1.0/agents": {"username": "agent@alice.example", "password": "an-agent-passphrase"},
        "/v1.0/numbers": {"number": "+89955500077"},
        "/v1.0/flows": {"name": "f", "actions": [{"type": "hangup"}]},
        "/v1.0/ais": {"name": "bot", "engine_model": "ollama.llama3.2"},
    }
    for path, body in bodies.items():
        response = await client.post(path, params=alice.auth, json=body)
        assert response.status_code == SEED_ERA_CREATE_STATUS[path], (path, response.text)
        assert response.json()["id"]
