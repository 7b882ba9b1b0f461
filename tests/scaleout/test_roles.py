"""An API-only node and a media node: calls placed and driven through the API node run on the
media node, which rings a phone registered to it; with no media node, a clear 503."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import backend_changes_sync
from tests.conftest import ADMIN, make_settings
from tests.live import live_node
from tests.peers.baresip import Baresip, tone
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Platform, str]]:
    root = Path(tmp_path_factory.mktemp("roles"))
    with (
        backend_changes_sync("postgres") as changes,
        live_node(root / "media", role="media", **changes) as (_media_url, media),
        live_node(root / "api", role="api", **changes) as (api_url, _api),
    ):
        yield api_url, media, changes["database_url"]


def wait_for(condition, timeout: float = 20.0, why: Callable[[], str] = lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out\n{why()}"
        time.sleep(0.1)


def test_calls_through_the_api_node_run_on_the_media_node(cluster: tuple[str, Platform, str], tmp_path: Path) -> None:
    api_url, media, _ = cluster
    api = httpx.Client(base_url=api_url, timeout=20)
    operator = api.post("/auth/login", json=ADMIN).json()["token"]
    customer = api.post("/v1.0/customers", params={"token": operator},
                        json={"email": "roles@example.com", "password": "roles-password-1"}).json()
    token = api.post("/auth/login", json={"username": "roles@example.com", "password": "roles-password-1"}).json()["token"]
    auth = {"token": token}
    api.post("/v1.0/extensions", params=auth, json={"name": "desk", "detail": "d", "extension": "desk2", "password": "secret-desk-2"})
    phone = Baresip.start(tmp_path / "baresip", user="desk2", password="secret-desk-2",
                          domain=f"{customer['id']}.registrar.voipbin.test", sip_port=media.sip.stack.port,
                          microphone=tone(tmp_path / "mic.wav", 600.0, seconds=60))
    try:
        wait_for(lambda: api.get("/v1.0/extensions", params=auth).json()["result"][0]["registered"], timeout=30,
                 why=lambda: f"media node's bindings: {list(media.sip.location.all())}\nphone:\n{phone.log[-3000:]}")
        source = api.get("/v1.0/numbers", params=auth).json()["result"][0]["number"]
        placed = api.post("/v1.0/calls", params=auth, json={
            "source": {"type": "tel", "target": source},
            "destinations": [{"type": "extension", "target_name": "desk2"}],
            "actions": [{"type": "sleep", "option": {"duration": 60000}}],
        })
        assert placed.status_code == 200, placed.text
        call_id = placed.json()["groupcalls"][0]["call_ids"][0]
        wait_for(lambda: api.get(f"/v1.0/calls/{call_id}", params=auth).json()["status"] == "progressing")
        assert call_id in media.calls.live  # it runs on the media node

        speaking = api.post("/v1.0/speakings", params=auth, json={"reference_type": "call", "reference_id": call_id,
                                                                   "provider": "espeak"})
        assert speaking.status_code == 201, speaking.text
        said = api.post(f"/v1.0/speakings/{speaking.json()['id']}/say", params=auth, json={"text": "Hello from the API node."})
        assert said.status_code == 200, said.text
        hung = api.post(f"/v1.0/calls/{call_id}/hangup", params=auth)
        assert hung.status_code == 200, hung.text
        wait_for(lambda: api.get(f"/v1.0/calls/{call_id}", params=auth).json()["status"] == "hangup")
    finally:
        phone.stop()
        api.close()


def test_without_a_media_node_a_call_is_a_clear_503(tmp_path: Path) -> None:
    with backend_changes_sync("postgres") as changes, live_node(tmp_path / "api", role="api", **changes) as (api_url, _):
        operator = httpx.post(f"{api_url}/auth/login", json=ADMIN).json()["token"]
        call = {"source": {"type": "tel", "target": "+15550001111"},
                "destinations": [{"type": "extension", "target_name": "1000"}], "actions": [{"type": "hangup"}]}
        response = httpx.post(f"{api_url}/v1.0/calls", params={"token": operator}, json=call, timeout=20)

    assert response.status_code == 503
    assert response.json()["error"]["reason"] == "NO_MEDIA_NODE"
    assert "--role media" in response.json()["error"]["message"]


def test_a_lone_api_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--database-url"):
        Platform(make_settings(tmp_path, role="api"))
