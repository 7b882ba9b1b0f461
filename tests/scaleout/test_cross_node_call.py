"""A phone registered on node A rings, answers and hears a call placed through node B's API."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.backends import backend_changes
from tests.conftest import ADMIN, Tenant, make_settings, new_tenant
from tests.peers.baresip import Baresip, tone
from tests.telephony.conftest import until
from voipbin.api.app import create_app
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]

async def node(stack: AsyncExitStack, data_dir: Path, changes: dict[str, str]) -> tuple[Platform, httpx.AsyncClient]:
    platform = Platform(make_settings(data_dir, **changes))
    await platform.start()
    stack.push_async_callback(platform.stop)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(platform)), base_url="https://testserver")
    stack.push_async_callback(client.aclose)
    return platform, client


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Platform, Platform, httpx.AsyncClient]]:
    async with backend_changes("postgres") as changes, AsyncExitStack() as stack:
        node_a, _ = await node(stack, tmp_path / "a", changes)
        node_b, client_b = await node(stack, tmp_path / "b", changes)
        yield node_a, node_b, client_b


async def test_a_call_from_node_b_reaches_a_phone_registered_on_node_a(
    tmp_path: Path, two_nodes: tuple[Platform, Platform, httpx.AsyncClient]
) -> None:
    node_a, node_b, client_b = two_nodes
    operator = (await client_b.post("/auth/login", json=ADMIN)).json()["token"]
    alice: Tenant = await new_tenant(client_b, Tenant("", "", operator, ""), "nodes@example.com")
    body = {"name": "roaming", "detail": "d", "extension": "roam1", "password": "secret-roam-1"}
    assert (await client_b.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
    phone = Baresip.start(tmp_path / "baresip", user="roam1", password="secret-roam-1",
                          domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=node_a.sip.stack.port,
                          microphone=tone(tmp_path / "mic.wav", 600.0, seconds=30))
    try:
        await until(lambda: node_a.sip.registrations(alice.customer_id, "roam1"), timeout=30)
        await until(lambda: node_b.sip.registrations(alice.customer_id, "roam1"), timeout=5)
        extension = (await client_b.get("/v1.0/extensions", params=alice.auth)).json()["result"][0]
        assert extension["registered"] is True  # node B's API sees node A's registration

        source = (await client_b.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
        call = {
            "source": {"type": "tel", "target": source},
            "destinations": [{"type": "extension", "target_name": "roam1"}],
            "actions": [{"type": "talk", "option": {"text": "Hello from the other node.", "language": "en-US",
                                                    "provider": "espeak"}}, {"type": "hangup"}],
        }
        placed = await client_b.post("/v1.0/calls", params=alice.auth, json=call)
        assert placed.status_code == 200, placed.text
        call_url = f"/v1.0/calls/{placed.json()['groupcalls'][0]['call_ids'][0]}"

        for _ in range(300):
            status = (await client_b.get(call_url, params=alice.auth)).json()
            if status["status"] == "hangup":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "hangup" and status["tm_progressing"], status
        await until(lambda: phone.heard() is not None, timeout=15)
        heard = phone.heard()
        assert heard is not None
        assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 300  # speech, not the silence of no media
    finally:
        phone.stop()
