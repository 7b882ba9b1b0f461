"""SSRF (security issue, item 5): webhooks, webhook_send, play URLs (and their redirects) and SIP
destinations reach only public addresses, or ranges the operator allows; checked on the address
connected to, whatever form the URL gives it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.live import free_port
from tests.peers import sipp
from tests.peers.baresip import tone
from tests.security.conftest import Server, serving

pytestmark = pytest.mark.slow

ALLOWED = "127.0.0.2"  # the operator's allow-list names this address (a lab receiver)


@dataclass
class Listener:
    """An HTTP server that records every request; ``redirect`` makes it answer 302 to that URL."""

    host: str
    port: int = field(default_factory=free_port)
    redirect: str = ""
    body: bytes = b""
    paths: list[str] = field(default_factory=list)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            listener.paths.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            if listener.redirect:
                self.send_response(302)
                self.send_header("Location", listener.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(listener.body)))
            self.end_headers()
            self.wfile.write(listener.body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((listener.host, listener.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254",
             "10.0.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "[fe80::1]", "[fc00::1]"],
)
async def test_a_webhook_uri_naming_a_private_address_is_refused(server: Server, host: str) -> None:
    operator = await server.operator()

    response = await server.client.put("/v1.0/customer", params=operator.auth, json={"webhook_uri": f"http://{host}:8080/x"})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["reason"] == "WEBHOOK_TARGET_REFUSED"
    assert "public address" in response.json()["error"]["message"]


async def test_a_name_that_resolves_to_loopback_gets_no_delivery_and_no_port_scan(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow=f"{ALLOWED}/32") as server:
        with listening(Listener("127.0.0.1")) as private, listening(Listener(ALLOWED)) as lab:
            operator = await server.operator()
            closed_port = free_port()
            results = {}
            for name, uri in (("open", private.url(host="localhost")), ("closed", f"http://localhost:{closed_port}/x"),
                              ("lab", lab.url())):
                assert (await server.client.put("/v1.0/customer", params=operator.auth, json={"webhook_uri": uri})).status_code == 200
                await server.client.post("/v1.0/extensions", params=operator.auth,
                                         json={"name": name, "detail": "d", "extension": f"ssrf-{name}", "password": "secret-ssrf"})
                results[name] = await _delivery(server, operator.auth, uri)

    assert private.paths == []  # never reached
    assert results["open"]["status"] == results["closed"]["status"] == "rejected"
    assert results["open"]["last_error"] == results["closed"]["last_error"]  # nothing tells open from closed
    assert "not a public address" in results["open"]["last_error"]
    assert results["lab"]["status"] == "delivered" and set(lab.paths) == {"/hook"}


async def _delivery(server: Server, auth: dict[str, str], uri: str) -> dict[str, object]:
    """The settled delivery of the extension_created event sent to ``uri``."""
    for _ in range(200):
        deliveries = (await server.client.get("/v1.0/webhook_deliveries", params=auth)).json()["result"]
        for delivery in deliveries:
            if delivery["event_type"] == "extension_created" and delivery["uri"] == uri \
                    and delivery["status"] not in ("pending", "sending"):
                return dict(delivery)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no settled delivery to {uri}: {deliveries}")


async def test_flows_reach_only_allowed_addresses_redirects_included(tmp_path: Path) -> None:
    wav = tone(tmp_path / "hold.wav", 440.0, 1.0).read_bytes()
    answered = Listener(ALLOWED, body=wav)
    async with serving(tmp_path / "data", egress_allow=f"{ALLOWED}/32") as server:
        with listening(Listener("127.0.0.1", body=wav)) as private, listening(answered) as lab, \
                listening(Listener(ALLOWED, redirect=private.url("/secret.wav"))) as bouncer:
            operator = await server.operator()
            phone_port = free_port()
            phone = await sipp.start_sipp("-sn", "uas", "-i", ALLOWED, "-p", str(phone_port), "-m", "1",
                                          "-mi", ALLOWED, "-mp", str(free_port()))
            refused = await server.client.post("/v1.0/calls", params=operator.auth, json={
                "source": {"type": "sip", "target": "ivr"},
                "destinations": [{"type": "sip", "target": f"sip:desk@127.0.0.1:{phone_port}"}],
                "actions": [{"type": "hangup"}],
            })
            placed = await server.client.post("/v1.0/calls", params=operator.auth, json={
                "source": {"type": "sip", "target": "ivr"},
                "destinations": [{"type": "sip", "target": f"sip:desk@{ALLOWED}:{phone_port}"}],
                "actions": [
                    {"type": "play", "option": {"stream_urls": [private.url("/direct.wav")]}},
                    {"type": "play", "option": {"stream_urls": [bouncer.url("/bounce.wav")]}},
                    {"type": "webhook_send", "option": {"sync": True, "uri": private.url("/webhook"), "data": "{}"}},
                    {"type": "webhook_send", "option": {"sync": True, "uri": lab.url("/webhook"), "data": "{}"}},
                    {"type": "play", "option": {"stream_urls": [lab.url("/allowed.wav")]}},
                    {"type": "hangup"},
                ],
            })
            assert (await sipp.finish(phone, timeout=30)).ok

    assert refused.status_code == 400 and refused.json()["error"]["reason"] == "SIP_TARGET_REFUSED"
    assert placed.status_code == 200, placed.text
    assert private.paths == []  # neither directly, nor through the redirect, nor as a webhook
    assert bouncer.paths == ["/bounce.wav"]
    assert lab.paths == ["/webhook", "/allowed.wav"]
