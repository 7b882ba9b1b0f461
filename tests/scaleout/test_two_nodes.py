"""Two nodes of one install on PostgreSQL and Redis: any node serves any request, and any
node's WebSocket gets every event of its subscriptions, wherever the change was made."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket
from sqlalchemy import func, select

from tests.backends import backend_changes, backend_changes_sync
from tests.conftest import ADMIN, make_settings
from tests.live import live_server
from voipbin.runtime import Platform
from voipbin.store.models import Agent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = Path(tmp_path_factory.mktemp("nodes"))
    with (
        backend_changes_sync("postgres") as changes,
        live_server(root / "a", **changes) as (node_a, _),
        live_server(root / "b", **changes) as (node_b, _),
    ):
        yield node_a, node_b


def test_a_token_from_one_node_works_on_the_other(nodes: tuple[str, str]) -> None:
    node_a, node_b = nodes
    token = httpx.post(f"{node_a}/auth/login", json=ADMIN).json()["token"]

    on_b = httpx.get(f"{node_b}/v1.0/customer", params={"token": token})

    assert on_b.status_code == 200, on_b.text
    assert on_b.json()["email"] == ADMIN["username"]


def test_a_change_on_one_node_reaches_a_websocket_on_the_other(nodes: tuple[str, str]) -> None:
    node_a, node_b = nodes
    token = httpx.post(f"{node_a}/auth/login", json=ADMIN).json()["token"]
    customer_id = httpx.get(f"{node_a}/v1.0/customer", params={"token": token}).json()["id"]
    ws = websocket.create_connection(node_b.replace("http", "ws") + f"/v1.0/ws?token={token}", timeout=5)
    try:
        ws.send(json.dumps({"type": "subscribe", "topics": [f"customer_id:{customer_id}:extension:*"]}))
        assert json.loads(ws.recv())["type"] != "error"
        body = {"name": "cross", "detail": "d", "extension": "4242", "password": "cross-node-pass"}
        created = httpx.post(f"{node_a}/v1.0/extensions", params={"token": token}, json=body)
        assert created.status_code == 200, created.text

        frame = receive_event(ws, "extension_created")
    finally:
        ws.close()

    assert frame["data"]["id"] == created.json()["id"]
    assert frame["topic"] == f"customer_id:{customer_id}:extension:{created.json()['id']}"


def receive_event(ws: websocket.WebSocket, event_type: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv())
        if frame.get("event_type") == event_type:
            return dict(frame)
    raise AssertionError(f"no {event_type} within {timeout} s")


async def test_nodes_starting_together_share_one_schema_and_one_admin(tmp_path: Path) -> None:
    async with backend_changes("postgres") as changes:
        platforms = [Platform(make_settings(tmp_path / name, **changes)) for name in ("a", "b", "c")]
        await asyncio.gather(*(p.start() for p in platforms))
        try:
            async with platforms[0].store.session() as session:
                admins = await session.scalar(select(func.count()).select_from(Agent).where(Agent.username == ADMIN["username"]))
            signed = platforms[0].jwt.issue("a", "c", "u", 0, platforms[0].clock.read())
            assert all(p.jwt.verify(signed) is not None for p in platforms)
        finally:
            await asyncio.gather(*(p.stop() for p in platforms))

    assert admins == 1
