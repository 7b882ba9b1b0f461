"""Customer webhooks against a real receiver on loopback: signed, retried, kept across restarts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import Tenant, make_settings, new_tenant
from tests.live import free_port
from voipbin.api.app import create_app
from voipbin.runtime import Platform
from voipbin.store.models import WebhookDelivery
from voipbin.webhooks import WebhookDispatcher, verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, object]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    port: int
    status: int = 200
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/voipbin/events"


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.received.append(Received(dict(self.headers.items()), body))
            self.send_response(receiver.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


async def until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(data_dir: Path, changes: dict[str, str]) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    platform = Platform(make_settings(data_dir, **changes))
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield platform, client
    finally:
        await platform.stop()


async def make_extensions(client: httpx.AsyncClient, tenant: Tenant, count: int, first: int = 0) -> list[str]:
    ids = []
    for i in range(first, first + count):
        body = {"name": f"hook-{i}", "detail": "d", "extension": f"70{i}", "password": "secret-pass"}
        ids.append((await client.post("/v1.0/extensions", params=tenant.auth, json=body)).json()["id"])
    return ids


def extension_events(receiver: Receiver) -> dict[str, str]:
    """Delivery id → extension id, for extension_created events received."""
    return {
        r.headers["X-VoIPBIN-Delivery-Id"]: r.event["data"]["id"]  # type: ignore[index]
        for r in receiver.received
        if r.event["type"] == "extension_created"
    }


async def test_events_arrive_signed(tmp_path: Path, backend_settings: dict[str, str]) -> None:
    receiver = Receiver(free_port())
    async with running(tmp_path / "data", backend_settings) as (_platform, client):
        admin_token = (await client.post("/auth/login", json={"username": "admin@localhost", "password": "admin@localhost"})).json()["token"]
        alice = await new_tenant(client, Tenant("", "", admin_token, ""), "hooks@example.com")
        customer = (await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": receiver.url})).json()
        with receiving(receiver):
            ids = await make_extensions(client, alice, 3)
            await until(lambda: len(extension_events(receiver)) == 3)

    for received in receiver.received:
        assert verify(received.body, customer["webhook_secret"], received.headers["X-VoIPBIN-Signature"])
        assert received.headers["Content-Type"] == "application/json"
        event = received.event
        assert {"type", "event_type", "timestamp", "topic", "data"} <= set(event)
        assert event["topic"].startswith(f"customer_id:{alice.customer_id}:")  # type: ignore[union-attr]
    assert sorted(extension_events(receiver).values()) == sorted(ids)


async def test_a_receiver_that_was_down_gets_everything_once_even_across_a_restart(tmp_path: Path, backend_settings: dict[str, str]) -> None:
    receiver = Receiver(free_port())
    async with running(tmp_path / "data", backend_settings) as (_platform, client):
        admin_token = (await client.post("/auth/login", json={"username": "admin@localhost", "password": "admin@localhost"})).json()["token"]
        alice = await new_tenant(client, Tenant("", "", admin_token, ""), "down@example.com")
        await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": receiver.url})
        before = await make_extensions(client, alice, 3)
        await asyncio.sleep(0.5)  # a few failed attempts against the closed port

    async with running(tmp_path / "data", backend_settings) as (platform, client):
        alice.token = (await client.post("/auth/login", json={"username": "down@example.com", "password": "correct horse battery"})).json()["token"]
        after = await make_extensions(client, alice, 2, first=10)
        with receiving(receiver):
            await until(lambda: len(extension_events(receiver)) == len(before + after))
            await asyncio.sleep(0.3)  # nothing more should arrive
        async with platform.store.session() as session:
            attempts = (await session.scalars(select(WebhookDelivery.attempts))).all()

    delivered = extension_events(receiver)
    assert sorted(delivered.values()) == sorted(before + after)
    assert len(delivered) == len(receiver.received) - 1  # plus the customer_updated that set the hook
    assert max(attempts) > 1  # they were retried, not first delivered now


async def test_a_stop_while_deliveries_are_being_claimed_gives_them_back(
    tmp_path: Path, backend_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's commit is still going on in the database when the stop cancels the loop: the rows it
    took go back to the queue at once, not after their lease (minutes) runs out."""
    receiver = Receiver(free_port())
    claimed = asyncio.Event()
    claim_due = WebhookDispatcher._claim_due

    async def slow_claim(self: WebhookDispatcher, customers: int) -> dict[str, list[WebhookDelivery]]:
        rows = await claim_due(self, customers)
        if rows:
            claimed.set()
            await asyncio.sleep(0.5)  # the stop lands here
        return rows

    monkeypatch.setattr(WebhookDispatcher, "_claim_due", slow_claim)
    async with running(tmp_path / "data", backend_settings) as (_platform, client):
        admin_token = (await client.post("/auth/login", json={"username": "admin@localhost", "password": "admin@localhost"})).json()["token"]
        alice = await new_tenant(client, Tenant("", "", admin_token, ""), "claimed@example.com")
        await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": receiver.url})
        await asyncio.wait_for(claimed.wait(), 10)

    monkeypatch.setattr(WebhookDispatcher, "_claim_due", claim_due)
    with receiving(receiver):
        async with running(tmp_path / "data", backend_settings):
            await until(lambda: any(r.event["type"] == "customer_updated" for r in receiver.received), timeout=10)


async def test_4xx_is_final(tmp_path: Path, backend_settings: dict[str, str]) -> None:
    receiver = Receiver(free_port(), status=410)
    async with running(tmp_path / "data", backend_settings) as (platform, client):
        admin_token = (await client.post("/auth/login", json={"username": "admin@localhost", "password": "admin@localhost"})).json()["token"]
        alice = await new_tenant(client, Tenant("", "", admin_token, ""), "gone@example.com")
        with receiving(receiver):
            await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": receiver.url})
            await make_extensions(client, alice, 1)
            await until(lambda: len(receiver.received) == 2)
            await asyncio.sleep(0.8)  # longer than the retry backoff
        async with platform.store.session() as session:
            rows = (await session.scalars(select(WebhookDelivery))).all()

    assert len(receiver.received) == 2
    assert {(r.status, r.attempts, r.last_status_code) for r in rows} == {("rejected", 1, 410)}
