"""Faults of what a scaled-out install depends on, under load: PostgreSQL restarting, Redis restarting,
a customer's webhook receiver away for a long stretch.

Each test runs its own PostgreSQL and Redis (tests/peers/services.py), never the machine's shared
ones, since it stops them. While a backing service is away a request either succeeds or gets the
error envelope with 503 SERVICE_UNAVAILABLE and Retry-After, quickly (never a 500, never a hang);
once it is back the same platform serves again within seconds, no restart; and nothing whose
creation was answered 200 is lost: the row exists, its webhook arrives once, and every WebSocket
subscribed beforehand receives its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from tests.conftest import ADMIN, Tenant, make_settings, new_tenant
from tests.live import free_port
from tests.peers import services
from tests.peers.services import PostgresServer, RedisServer
from voipbin.api.app import create_app
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(services.available() is not None, reason=str(services.available())),
]

log = logging.getLogger(__name__)

HANG_BOUND_S = 10.0  # no request may take longer than this, outage or not
RECOVERY_BOUND_S = 5.0  # every request started this long after the service is back succeeds
DOWN_S = 3.0
FREEZE_S = 8.0  # a frozen Redis (SIGSTOP: connections open, no answers) is felt through socket timeouts: longer


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with services.postgres_server() as server:
        yield server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with services.redis_server() as server:
        yield server


# -- a node: the platform served over real HTTP and WebSocket in this event loop -------------------------------


@dataclass
class Node:
    platform: Platform
    url: str
    client: httpx.AsyncClient


@asynccontextmanager
async def serving(data_dir: Path, **changes: object) -> AsyncIterator[Node]:
    platform = Platform(make_settings(data_dir, **changes))
    await platform.start()
    port = free_port()
    config = uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                            ws_ping_interval=None)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # leave pytest's SIGINT alone
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert not task.done() and time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=HANG_BOUND_S) as client:
            yield Node(platform, url, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)
        await asyncio.wait_for(platform.stop(), 30)


async def tenant_on(node: Node, email: str) -> Tenant:
    token = (await node.client.post("/auth/login", json=ADMIN)).json()["token"]
    return await new_tenant(node.client, Tenant("", "", token, ""), email)


# -- load: requests from several workers, every outcome recorded ------------------------------------------------


@dataclass
class Outcome:
    what: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer (timeout, connection error)
    reason: str = ""
    retry_after: str | None = None
    error: str = ""
    extension_id: str = ""

    @property
    def took(self) -> float:
        return self.ended - self.started

    @property
    def clear_503(self) -> bool:
        return self.status == 503 and self.reason == "SERVICE_UNAVAILABLE" and bool(self.retry_after)


async def request(client: httpx.AsyncClient, what: str, method: str, url: str, **kwargs: Any) -> Outcome:
    started = time.monotonic()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        return Outcome(what, started, time.monotonic(), 0, error=f"{type(error).__name__}: {error}")
    outcome = Outcome(what, started, time.monotonic(), response.status_code, retry_after=response.headers.get("retry-after"))
    try:
        body = response.json()
    except ValueError:
        outcome.error = response.text[:200]
        return outcome
    if response.status_code == 200 and what == "create":
        outcome.extension_id = body["id"]
    elif response.status_code != 200:
        outcome.reason = (body.get("error") or {}).get("reason", "") if isinstance(body, dict) else ""
        outcome.error = json.dumps(body)[:300]
    return outcome


@dataclass
class Load:
    """Workers that create extensions and read lists (and log in) until stopped."""

    tenant: Tenant
    clients: list[httpx.AsyncClient]
    logins: bool = False
    pause_s: float = 0.02
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int = 2) -> None:
        self._tasks = [asyncio.create_task(self._work(n)) for n in range(workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _work(self, n: int) -> None:
        auth = self.tenant.auth
        i = 0
        while not self._stop.is_set():
            i += 1
            client = self.clients[(n + i) % len(self.clients)]
            body = {"name": f"load {n}-{i}", "detail": "d", "extension": f"w{n}x{i}", "password": "secret-pass"}
            self.outcomes.append(await request(client, "create", "POST", "/v1.0/extensions", params=auth, json=body))
            other = self.clients[(n + i + 1) % len(self.clients)]
            self.outcomes.append(await request(other, "list", "GET", "/v1.0/extensions", params={**auth, "page_size": 5}))
            if self.logins:
                login = {"username": self.tenant.username, "password": "correct horse battery"}
                self.outcomes.append(await request(client, "login", "POST", "/auth/login", json=login))
            await asyncio.sleep(self.pause_s)

    @property
    def created(self) -> list[str]:
        return [o.extension_id for o in self.outcomes if o.extension_id]

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def summary(self, back_at: float) -> dict[str, Any]:
        failures = self.failures()
        after = [o for o in self.outcomes if o.status == 200 and o.started >= back_at]
        return {
            "requests": len(self.outcomes),
            "created": len(self.created),
            "statuses": dict(Counter((o.what, o.status) for o in self.outcomes)),
            "clear_503": sum(o.clear_503 for o in failures),
            "other_failures": [(o.what, o.status, o.error) for o in failures if not o.clear_503][:5],
            "slowest_s": {what: round(max(o.took for o in self.outcomes if o.what == what), 2)
                          for what in sorted({o.what for o in self.outcomes})},
            "slowest_failure_s": round(max((o.took for o in failures), default=0.0), 2),
            "first_ok_after_back_s": round(min((o.ended for o in after), default=float("inf")) - back_at, 2),
            "last_failure_after_back_s": round(max((o.ended for o in failures), default=back_at) - back_at, 2),
        }


def assert_fault_handled(load: Load, back_at: float) -> None:
    """Failures are clear, quick 503s; every request started RECOVERY_BOUND_S after the service is back succeeds."""
    unclear = [o for o in load.failures() if not o.clear_503]
    assert not unclear, [(o.what, o.status, o.error) for o in unclear[:5]]
    slow = [o for o in load.outcomes if o.took >= HANG_BOUND_S]
    assert not slow, [(o.what, o.status, round(o.took, 1)) for o in slow[:5]]
    late = [o for o in load.failures() if o.started >= back_at + RECOVERY_BOUND_S]
    assert not late, [(o.what, o.status, round(o.started - back_at, 1)) for o in late[:5]]
    assert any(o.status == 200 and o.what == "create" for o in load.outcomes if o.started >= back_at + RECOVERY_BOUND_S)


# -- observers: a WebSocket that reconnects with `since`, and the webhook receiver ------------------------------


@dataclass
class Watcher:
    """A WebSocket client subscribed to a customer's extensions; reconnects with ``since`` if dropped."""

    url: str
    token: str
    topic: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    arrived: dict[str, float] = field(default_factory=dict)  # extension id -> when its extension_created came
    cursor: str | None = None
    connections: int = 0
    refusals: list[str] = field(default_factory=list)  # why connecting failed, while it did
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _ws: Any = None

    async def drop(self) -> None:
        """Close the connection as a network would; the watcher reconnects with ``since``."""
        if self._ws is not None:
            await self._ws.close()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with ws_connect(self.url.replace("http", "ws", 1) + f"/v1.0/ws?token={self.token}",
                                      open_timeout=5, ping_interval=None) as ws:
                    self._ws = ws
                    self.connections += 1
                    subscribe: dict[str, Any] = {"type": "subscribe", "topics": [self.topic]}
                    if self.cursor:
                        subscribe["since"] = self.cursor
                    await ws.send(json.dumps(subscribe))
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "subscribed":
                            self.subscribed.set()
                        elif "cursor" in frame:
                            self.cursor = frame["cursor"]
                            self.frames.append(frame)
                            if frame.get("event_type") == "extension_created":
                                self.arrived.setdefault(frame["data"]["id"], time.monotonic())
            except ConnectionClosed:
                pass
            except InvalidStatus as error:
                self.refusals.append(f"{error.response.status_code} {error.response.body[:300]!r}")
            except (WebSocketException, OSError, TimeoutError) as error:
                self.refusals.append(f"{type(error).__name__}: {error}")
            await asyncio.sleep(0.5)

    def created(self) -> Counter[str]:
        return Counter(f["data"]["id"] for f in self.frames if f.get("event_type") == "extension_created")


class Hook:
    """A webhook receiver that is down (its port closed), failing (503) or up (200), on one port throughout."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.answered: list[tuple[str, int, dict[str, Any]]] = []  # (delivery id, status answered, event)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = hook.status
                hook.answered.append((self.headers["X-VoIPBIN-Delivery-Id"], status, json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> Counter[str]:
        return Counter(delivery for delivery, status, _event in list(self.answered) if status == 200)

    def created(self) -> dict[str, set[str]]:
        """Extension id -> delivery ids of its extension_created answered 200."""
        found: dict[str, set[str]] = {}
        for delivery, status, event in list(self.answered):
            if status == 200 and event["type"] == "extension_created":
                found.setdefault(event["data"]["id"], set()).add(delivery)
        return found


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for ``condition``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def all_extensions(node: Node, tenant: Tenant) -> set[str]:
    ids: set[str] = set()
    token = ""
    while True:
        page = (await node.client.get("/v1.0/extensions", params={**tenant.auth, "page_size": 100, "page_token": token})).json()
        ids.update(e["id"] for e in page["result"])
        token = page.get("next_page_token") or ""
        if not token or not page["result"]:
            return ids


async def all_deliveries(node: Node, tenant: Tenant) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    token = ""
    while True:
        response = await node.client.get("/v1.0/webhook_deliveries", params={**tenant.auth, "page_size": 100, "page_token": token})
        assert response.status_code == 200, response.text
        page = response.json()
        rows += page["result"]
        token = page.get("next_page_token") or ""
        if not token or not page["result"]:
            return rows


def assert_everything_arrived(created: list[str], hook: Hook, watchers: list[Watcher]) -> None:
    assert not [d for d, n in hook.delivered().items() if n > 1], "a webhook delivery arrived twice"
    per_extension = hook.created()
    assert not [e for e, ds in per_extension.items() if len(ds) > 1], "an event was queued for delivery twice"
    assert set(created) <= set(per_extension)
    for watcher in watchers:
        seen = watcher.created()
        assert set(created) <= set(seen), f"{len(set(created) - set(seen))} events missing on a WebSocket"
        assert max(seen.values()) == 1, "a WebSocket received an event twice"


# -- the tests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate", "kill"])
async def test_postgres_restart_under_load(tmp_path: Path, postgres: PostgresServer, redis: RedisServer, mode: str) -> None:
    hook = Hook()
    changes = {"database_url": postgres.url, "redis_url": redis.url, "redis_namespace": "faults",
               "webhook_retry_base_s": 0.2, "webhook_retry_max_s": 1.0}
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(serving(tmp_path / "a", **changes))
        hook.up()
        stack.callback(hook.down)
        alice = await tenant_on(node, "pg-faults@example.com")
        assert (await node.client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": hook.url})).status_code == 200
        # One WebSocket stays connected throughout; the other is dropped while the database is away
        # and reconnects with `since` (which needs the database: it is refused until it is back).
        steady, dropped = (Watcher(node.url, alice.token, f"customer_id:{alice.customer_id}:extension:*") for _ in range(2))
        for watcher in (steady, dropped):
            await watcher.start()
            stack.push_async_callback(watcher.stop)

        # A third is connected throughout and asks for a replay while the database is away.
        probe = await stack.enter_async_context(ws_connect(f"{node.url.replace('http', 'ws', 1)}/v1.0/ws?token={alice.token}",
                                                           open_timeout=5, ping_interval=None))

        load = Load(alice, [node.client])
        load.start()
        await asyncio.sleep(2)
        down_at = time.monotonic()
        await asyncio.to_thread(postgres.kill if mode == "kill" else postgres.stop, *([] if mode == "kill" else [mode]))
        await asyncio.sleep(1)
        await dropped.drop()
        replay = {"type": "subscribe", "topics": [steady.topic], "since": steady.cursor}
        await probe.send(json.dumps(replay))
        replay_away = json.loads(await asyncio.wait_for(probe.recv(), HANG_BOUND_S))
        await asyncio.sleep(DOWN_S - 1)
        await asyncio.to_thread(postgres.start)
        back_at = time.monotonic()
        await asyncio.sleep(RECOVERY_BOUND_S + 3)
        await load.stop()
        await probe.send(json.dumps(replay))
        replay_back = [json.loads(await asyncio.wait_for(probe.recv(), HANG_BOUND_S))]
        while replay_back[-1].get("type") not in ("subscribed", "error"):
            replay_back.append(json.loads(await asyncio.wait_for(probe.recv(), HANG_BOUND_S)))

        summary = load.summary(back_at)
        # A claim whose commit answer was lost in the crash waits out its lease (timeout x 4 + 30 s),
        # then the next release (every 5 s) puts it back: at most ~45 s with the test settings.
        webhooks_s = await until(lambda: set(load.created) <= set(hook.created()), 60, "webhooks")
        ws_s = await until(lambda: all(set(load.created) <= set(w.created()) for w in (steady, dropped)), 10, "WebSocket events")
        await asyncio.sleep(0.5)  # nothing more should arrive
        stored = await all_extensions(node, alice)
        deliveries = await all_deliveries(node, alice)
        print(f"\nPostgreSQL {mode} stop, down {back_at - down_at:.1f} s: {summary}; "
              f"webhooks complete {webhooks_s:.2f} s, WebSocket {ws_s:.2f} s after the load; "
              f"WebSocket connections {steady.connections}/{dropped.connections}, reconnects refused "
              f"{dict(Counter(r[:3] for r in dropped.refusals))}; extensions stored {len(stored)}")

    during = [o for o in load.outcomes if down_at + 0.5 < o.started < back_at - 0.5]
    assert during and all(o.clear_503 for o in during), "the outage was not seen, or not as 503"
    assert_fault_handled(load, back_at)
    assert set(load.created) <= stored
    assert_everything_arrived(load.created, hook, [steady, dropped])
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert steady.connections == 1 and dropped.connections == 2
    assert all(refusal.startswith("503 ") and "SERVICE_UNAVAILABLE" in refusal for refusal in dropped.refusals)
    assert replay_away["type"] == "error" and replay_away["error"]["reason"] == "SERVICE_UNAVAILABLE", replay_away
    assert replay_back[-1]["type"] == "subscribed" and len(replay_back) > 1, replay_back[-1]  # the replay, then the reply


@pytest.mark.parametrize("mode", ["stop", "kill", "freeze"])
async def test_redis_restart_under_load(tmp_path: Path, postgres: PostgresServer, redis: RedisServer, mode: str) -> None:
    hook = Hook()
    changes = {"database_url": postgres.url, "redis_url": redis.url, "redis_namespace": "faults",
               "webhook_retry_base_s": 0.2, "webhook_retry_max_s": 1.0}
    async with AsyncExitStack() as stack:
        node_a = await stack.enter_async_context(serving(tmp_path / "a", **changes))
        node_b = await stack.enter_async_context(serving(tmp_path / "b", **changes))
        hook.up()
        stack.callback(hook.down)
        alice = await tenant_on(node_a, "redis-faults@example.com")
        assert (await node_a.client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": hook.url})).status_code == 200
        # A WebSocket on each node, and one more on node B that is dropped while Redis is away and
        # reconnects with `since` (a replay from the database: it needs no Redis).
        watchers = [Watcher(node.url, alice.token, f"customer_id:{alice.customer_id}:extension:*")
                    for node in (node_a, node_b, node_b)]
        for watcher in watchers:
            await watcher.start()
            stack.push_async_callback(watcher.stop)

        load = Load(alice, [node_a.client, node_b.client], logins=True)
        load.start()
        await asyncio.sleep(2)
        down_at = time.monotonic()
        await asyncio.to_thread({"stop": redis.stop, "kill": redis.kill, "freeze": redis.freeze}[mode])
        await asyncio.sleep(1)
        await watchers[2].drop()
        await asyncio.sleep((FREEZE_S if mode == "freeze" else DOWN_S) - 1)
        await asyncio.to_thread(redis.thaw if mode == "freeze" else redis.start)
        back_at = time.monotonic()
        await asyncio.sleep(RECOVERY_BOUND_S + 3)
        await load.stop()

        summary = load.summary(back_at)
        webhooks_s = await until(lambda: set(load.created) <= set(hook.created()), 30, "webhooks")
        ws_s = await until(lambda: all(set(load.created) <= set(w.created()) for w in watchers), 15, "WebSocket events")
        await asyncio.sleep(0.5)  # nothing more should arrive
        stored = await all_extensions(node_b, alice)
        deliveries = await all_deliveries(node_b, alice)
        made_during = [o for o in load.outcomes if o.extension_id and down_at <= o.started < back_at]
        lag = {name: round(max((w.arrived[o.extension_id] for o in made_during), default=back_at) - back_at, 2)
               for name, w in zip("ab", watchers[:2], strict=True)}
        print(f"\nRedis {mode}, down {back_at - down_at:.1f} s: {summary}; created while down {len(made_during)}, "
              f"last of them on WebSocket a/b {lag} s after Redis was back; webhooks complete {webhooks_s:.2f} s, "
              f"WebSockets {ws_s:.2f} s after the load; WebSocket connections {[w.connections for w in watchers]}")

    assert any(o.what == "create" and down_at + 0.5 < o.started < back_at - 0.5 for o in load.outcomes)
    # Creating and reading need no Redis (events wait in memory); logging in does (the failure counters):
    # a clear 503, or a success where the Redis client's own retries outlasted the outage.
    assert all(o.status == 200 for o in load.outcomes if o.what != "login")
    assert any(o.clear_503 and down_at < o.ended < back_at + 1 for o in load.outcomes if o.what == "login")
    assert_fault_handled(load, back_at)
    assert set(load.created) <= stored
    assert_everything_arrived(load.created, hook, watchers)
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert [w.connections for w in watchers] == [1, 1, 2] and not watchers[2].refusals


async def test_webhook_receiver_away_for_many_backoffs(tmp_path: Path, postgres: PostgresServer, redis: RedisServer) -> None:
    """Two nodes' dispatchers share one queue; the receiver is unreachable for 15 s, then answers 503 for
    7.5 s: 15 times the longest backoff (with the default 300 s, over an hour). Then everything arrives once."""
    max_s = 1.5
    changes = {"database_url": postgres.url, "redis_url": redis.url, "redis_namespace": "faults",
               "webhook_retry_base_s": 0.25, "webhook_retry_max_s": max_s, "webhook_timeout_s": 2.0}
    hook = Hook()
    async with AsyncExitStack() as stack:
        node_a = await stack.enter_async_context(serving(tmp_path / "a", **changes))
        node_b = await stack.enter_async_context(serving(tmp_path / "b", **changes))
        stack.callback(hook.down)
        alice = await tenant_on(node_a, "hook-faults@example.com")
        assert (await node_a.client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": hook.url})).status_code == 200

        created: list[str] = []

        async def create(i: int) -> None:
            node = (node_a, node_b)[i % 2]
            body = {"name": f"hook {i}", "detail": "d", "extension": f"h{i}", "password": "secret-pass"}
            response = await node.client.post("/v1.0/extensions", params=alice.auth, json=body)
            assert response.status_code == 200, response.text
            created.append(response.json()["id"])

        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 10 * max_s:  # unreachable
            await create(i := i + 1)
            await asyncio.sleep(0.5)
        pending = await all_deliveries(node_b, alice)
        hook.status = 503
        hook.up()
        while time.monotonic() - started < 15 * max_s:  # up, but failing
            await create(i := i + 1)
            await asyncio.sleep(0.5)
        failed_attempts = len(hook.answered)
        hook.status = 200
        back_at = time.monotonic()
        for _ in range(3):
            await create(i := i + 1)
        took = await until(lambda: set(created) <= set(hook.created()), 20, "every webhook")
        await asyncio.sleep(1.0)  # nothing more should arrive
        deliveries = await all_deliveries(node_b, alice)
        print(f"\nwebhook receiver away {back_at - started:.0f} s ({failed_attempts} attempts answered 503 meanwhile): "
              f"{len(created)} extensions, {len(deliveries)} deliveries, all arrived {took:.2f} s after it was back; "
              f"attempts per delivery max {max(d['attempts'] for d in deliveries)}, "
              f"mean {sum(d['attempts'] for d in deliveries) / len(deliveries):.1f}")

    # While it was away, the API showed why nothing arrived.
    assert pending and {d["status"] for d in pending} <= {"pending", "sending"}
    assert any(d["attempts"] > 1 and d["last_error"] == "could not connect" for d in pending)
    delivered = hook.delivered()
    assert not [d for d, n in delivered.items() if n > 1], "a delivery arrived twice"
    per_extension = hook.created()
    assert set(created) == set(per_extension)
    assert all(len(ids) == 1 for ids in per_extension.values())
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert {d["id"] for d in deliveries} == set(delivered)
    assert took < max_s + 3.0  # nothing waited much longer than one longest backoff after the receiver came back
