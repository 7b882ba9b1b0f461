"""A node killed mid-call: another node records the call as ended (failed) within seconds, no
call stays live, and the surviving node goes on serving."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.backends import backend_changes
from tests.conftest import ADMIN, Tenant, make_settings, new_tenant
from tests.e2e.server import start_server
from tests.peers.baresip import Baresip, tone
from tests.telephony.conftest import until
from voipbin.api.app import create_app
from voipbin.calls.nodes import DEAD_AFTER_S, HEARTBEAT_S
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]


async def test_calls_of_a_killed_node_end_and_the_other_node_goes_on(tmp_path: Path) -> None:
    async with backend_changes("postgres") as changes:
        node_a = start_server(tmp_path / "a", "--database-url", changes["database_url"], "--redis-url", changes["redis_url"],
                              env={"VOIPBIN_REDIS_NAMESPACE": changes["redis_namespace"]})
        node_b = Platform(make_settings(tmp_path / "b", **changes))
        await node_b.start()
        phone: Baresip | None = None
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(node_b)),
                                         base_url="https://testserver") as client_b:
                operator = (await client_b.post("/auth/login", json=ADMIN)).json()["token"]
                alice: Tenant = await new_tenant(client_b, Tenant("", "", operator, ""), "failover@example.com")
                body = {"name": "desk", "detail": "d", "extension": "desk1", "password": "secret-desk-1"}
                assert (await client_b.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
                phone = Baresip.start(tmp_path / "baresip", user="desk1", password="secret-desk-1",
                                      domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=node_a.sip_port,
                                      microphone=tone(tmp_path / "mic.wav", 600.0, seconds=60))
                await until(lambda: node_b.sip.registrations(alice.customer_id, "desk1"), timeout=30)
                source = (await client_b.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
                call = {"source": {"type": "tel", "target": source},
                        "destinations": [{"type": "extension", "target_name": "desk1"}],
                        "actions": [{"type": "sleep", "option": {"duration": 60000}}]}
                async with httpx.AsyncClient(base_url=node_a.http_url) as client_a:  # placed on node A
                    placed = await client_a.post("/v1.0/calls", params=alice.auth, json=call)
                assert placed.status_code == 200, placed.text
                call_url = f"/v1.0/calls/{placed.json()['groupcalls'][0]['call_ids'][0]}"

                async def status() -> dict:
                    return dict((await client_b.get(call_url, params=alice.auth)).json())

                for _ in range(200):
                    if (await status())["status"] == "progressing":
                        break
                    await asyncio.sleep(0.05)
                assert (await status())["status"] == "progressing"

                node_a.process.send_signal(signal.SIGKILL)
                node_a.process.wait(timeout=10)
                killed_at = asyncio.get_running_loop().time()
                for _ in range(int((DEAD_AFTER_S + 3 * HEARTBEAT_S) / 0.1)):
                    ended = await status()
                    if ended["status"] == "hangup":
                        break
                    await asyncio.sleep(0.1)
                took = asyncio.get_running_loop().time() - killed_at

                assert ended["status"] == "hangup" and ended["hangup_reason"] == "failed", ended
                assert took < DEAD_AFTER_S + 3 * HEARTBEAT_S
                live = (await client_b.get("/v1.0/calls", params=alice.auth)).json()["result"]
                assert all(c["status"] == "hangup" for c in live)
                again = {"name": "after", "detail": "d", "extension": "after1", "password": "secret-after-1"}
                assert (await client_b.post("/v1.0/extensions", params=alice.auth, json=again)).status_code == 200
        finally:
            if phone is not None:
                phone.stop()
            await node_b.stop()
            if node_a.process.poll() is None:
                node_a.process.kill()
