"""The event WebSocket over a real socket: subscriptions, refusals, and what arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from tests.backends import BACKENDS, backend_changes_sync
from tests.conftest import ADMIN
from tests.live import live_server


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    with (
        backend_changes_sync(request.param) as changes,
        live_server(Path(tmp_path_factory.mktemp("ws")) / "data", **changes) as (base_url, _settings),
    ):
        operator = httpx.post(f"{base_url}/auth/login", json=ADMIN).json()["token"]
        user = {"email": "ws@example.com", "password": "ws-user-password"}
        customer_id = httpx.post(f"{base_url}/v1.0/customers", params={"token": operator}, json=user).json()["id"]
        login = {"username": user["email"], "password": user["password"]}
        token = httpx.post(f"{base_url}/auth/login", json=login).json()["token"]
        yield base_url, token, customer_id


def connect(base_url: str, query: str) -> websocket.WebSocket:
    return websocket.create_connection(base_url.replace("http", "ws") + "/v1.0/ws?" + query, timeout=5)


def exchange(ws: websocket.WebSocket, message: object) -> dict[str, object]:
    ws.send(message if isinstance(message, str) else json.dumps(message))
    return dict(json.loads(ws.recv()))


def test_unauthenticated_handshake_is_refused(server: tuple[str, str, str]) -> None:
    base_url, _, _ = server
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(base_url, "token=not-a-jwt")
    assert refused.value.status_code == 401


def test_replies_to_each_kind_of_message(server: tuple[str, str, str]) -> None:
    base_url, token, customer_id = server
    ws = connect(base_url, f"token={token}")
    try:
        assert exchange(ws, {"type": "ping"}) == {"type": "pong"}
        assert exchange(ws, "not json")["type"] == "error"
        assert exchange(ws, {"type": "dance"})["type"] == "error"
        other = exchange(ws, {"type": "subscribe", "topics": ["customer_id:someone-else:call:*"]})
        assert other["type"] == "error" and other["error"]["status"] == "PERMISSION_DENIED"  # type: ignore[index]
        mine = [f"customer_id:{customer_id}:extension"]
        assert exchange(ws, {"type": "subscribe", "topics": mine}) == {"type": "subscribed", "topics": mine}
        assert exchange(ws, {"type": "unsubscribe", "topics": mine}) == {"type": "unsubscribed", "topics": mine}
    finally:
        ws.close()


def test_events_reach_matching_subscriptions_only(server: tuple[str, str, str]) -> None:
    base_url, token, customer_id = server
    by_prefix = connect(base_url, f"token={token}")
    by_other_resource = connect(base_url, f"token={token}")
    try:
        exchange(by_prefix, {"type": "subscribe", "topics": [f"customer_id:{customer_id}:extension"]})
        exchange(by_other_resource, {"type": "subscribe", "topics": [f"customer_id:{customer_id}:call:*"]})
        body = {"name": "ws-e", "detail": "d", "extension": "wse1", "password": "secret-pass"}
        created = httpx.post(f"{base_url}/v1.0/extensions", params={"token": token}, json=body).json()

        frame = json.loads(by_prefix.recv())
        assert frame["type"] == frame["event_type"] == "extension_created"
        assert frame["topic"] == f"customer_id:{customer_id}:extension:{created['id']}"
        assert frame["data"] == created
        assert frame["timestamp"].endswith("Z")
        by_other_resource.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            by_other_resource.recv()
    finally:
        by_prefix.close()
        by_other_resource.close()


def create_extension(base_url: str, token: str, name: str) -> str:
    body = {"name": name, "detail": "d", "extension": name, "password": "secret-pass"}
    return str(httpx.post(f"{base_url}/v1.0/extensions", params={"token": token}, json=body).json()["id"])


def test_a_client_that_reconnects_with_its_cursor_gets_what_it_missed_once(server: tuple[str, str, str]) -> None:
    base_url, token, customer_id = server
    topics = [f"customer_id:{customer_id}:extension:*"]
    first = connect(base_url, f"token={token}")
    exchange(first, {"type": "subscribe", "topics": topics})
    seen = create_extension(base_url, token, "seen1")
    cursor = json.loads(first.recv())["cursor"]
    first.close()
    missed = [create_extension(base_url, token, f"missed{i}") for i in range(3)]

    again = connect(base_url, f"token={token}")
    try:
        again.send(json.dumps({"type": "subscribe", "topics": topics, "since": cursor}))
        replayed = [json.loads(again.recv()) for _ in missed]
        reply = json.loads(again.recv())
        live = create_extension(base_url, token, "live1")
        after = json.loads(again.recv())
        again.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            again.recv()
    finally:
        again.close()

    assert [f["data"]["id"] for f in replayed] == missed
    assert seen not in {f["data"]["id"] for f in replayed}
    assert all(f["event_type"] == "extension_created" and f["cursor"] for f in replayed)
    assert reply == {"type": "subscribed", "topics": topics}
    assert after["data"]["id"] == live


@pytest.mark.parametrize("since", ["not-a-cursor", "00000000-0000-4000-8000-000000000000"])
def test_an_unknown_cursor_is_an_error_frame(server: tuple[str, str, str], since: str) -> None:
    base_url, token, customer_id = server
    ws = connect(base_url, f"token={token}")
    try:
        reply = exchange(ws, {"type": "subscribe", "topics": [f"customer_id:{customer_id}:call:*"], "since": since})
        assert reply["type"] == "error"
        assert "cursor" in reply["error"]["message"]  # type: ignore[index]
        assert exchange(ws, {"type": "ping"}) == {"type": "pong"}
    finally:
        ws.close()
