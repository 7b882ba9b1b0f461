"""Noisy neighbours and lockouts (security issue, item 7): one customer's slow webhook receiver
delays nobody else's deliveries, and guessing a password locks out the guesser, not the owner
nor the other phones behind the same address."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.live import free_port
from tests.security.conftest import PASSWORD, Server, register, serving


@contextmanager
def receiver(delay_s: float, arrivals: list[float]) -> Iterator[str]:
    """A webhook receiver answering 200 after ``delay_s``; notes when each request arrived."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrivals.append(time.monotonic())
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay_s)
            try:
                self.send_response(200)
                self.end_headers()
            except OSError:
                pass  # the platform gave up waiting

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_slow_webhook_receiver_delays_only_its_own_customer(tmp_path: Path) -> None:
    slow_arrivals: list[float] = []
    fast_arrivals: list[float] = []
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8", webhook_timeout_s=3.0) as server:
        operator = await server.operator()
        slow = await server.tenant("slow@example.com", operator)
        fast = await server.tenant("fast@example.com", operator)
        with receiver(8.0, slow_arrivals) as slow_uri, receiver(0.0, fast_arrivals) as fast_uri:
            await server.client.put("/v1.0/customer", params=slow.auth, json={"webhook_uri": slow_uri})
            await server.client.put("/v1.0/customer", params=fast.auth, json={"webhook_uri": fast_uri})
            await _until(lambda: slow_arrivals and fast_arrivals)  # both customer_updated events are out
            fast_arrivals.clear()
            for i in range(5):
                await _extension(server, slow.auth, f"slow{i}")
            sent = time.monotonic()
            await _extension(server, fast.auth, "fast1")
            await _until(lambda: fast_arrivals, timeout=10)

    assert fast_arrivals[0] - sent < 1.5, f"fast customer's event waited {fast_arrivals[0] - sent:.2f} s"


async def _extension(server: Server, auth: dict[str, str], name: str) -> None:
    body = {"name": name, "detail": "d", "extension": name, "password": "secret-ext-1"}
    assert (await server.client.post("/v1.0/extensions", params=auth, json=body)).status_code == 200


async def _until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_wrong_logins_lock_out_the_guesser_not_the_owner(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice@example.com", operator)
    guesser = httpx.AsyncClient(base_url=server.url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
    try:
        guesses = [await guesser.post("/auth/login", json={"username": alice.username, "password": f"guess-{i}"})
                   for i in range(server.platform.settings.login_failure_limit + 2)]
    finally:
        await guesser.aclose()

    owner = await server.client.post("/auth/login", json={"username": alice.username, "password": PASSWORD})

    assert guesses[-1].status_code == 429 and guesses[0].status_code == 401
    assert owner.status_code == 200


async def test_wrong_sip_passwords_lock_out_that_phone_only(server: Server) -> None:
    operator = await server.operator()
    port = server.platform.sip.stack.port
    domain = f"{operator.customer_id}.registrar.voipbin.test"
    for extension, password in (("victim", "victim-sip-pass"), ("neighbour", "neighbour-sip-pass")):
        body = {"name": extension, "detail": "d", "extension": extension, "password": password}
        assert (await server.client.post("/v1.0/extensions", params=operator.auth, json=body)).status_code == 200

    shared_nat = "127.0.0.3"  # the guesser and the neighbour's phone sit behind one address
    guesses = [await register(port, "victim", domain, f"guess-{i}", shared_nat)
               for i in range(server.platform.settings.sip_auth_failure_limit + 1)]
    neighbour = await register(port, "neighbour", domain, "neighbour-sip-pass", shared_nat)
    owner = await register(port, "victim", domain, "victim-sip-pass")  # its own phone, elsewhere

    assert guesses[0].startswith(b"SIP/2.0 403") and b"Too Many Failed Attempts" in guesses[-1]
    assert neighbour.startswith(b"SIP/2.0 200")
    assert owner.startswith(b"SIP/2.0 200")
