"""The event WebSocket over a real socket: subscriptions, refusals, and what arrives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from tests.conftest import ADMIN
from tests.live import live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    with live_server(Path(tmp_path_factory.mktemp("ws")) / "data") as (base_url, _settings):
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
