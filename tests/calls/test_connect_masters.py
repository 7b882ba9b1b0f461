"""Concurrent connects: each leg a flow's connect dials belongs to the call whose flow dialled it,
and a call placed from the API meanwhile belongs to none, whatever order the awaits interleave in."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.live import free_port
from tests.peers import sipp
from voipbin.runtime import Platform

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sipp.available(), reason="sipp is installed by `make test`")]


async def phone() -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    process = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1",
                                    "-mi", "127.0.0.1", "-mp", str(free_port()), "-rtp_echo")
    return f"sip:phone@127.0.0.1:{port}", process


def call_to(uri: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"source": {"type": "sip", "target": "lab"}, "destinations": [{"type": "sip", "target": uri}], "actions": actions}


async def test_every_leg_is_under_the_call_that_dialled_it(platform: Platform, client: httpx.AsyncClient, alice: Tenant) -> None:
    phones = [await phone() for _ in range(5)]
    await asyncio.sleep(0.3)
    (a_uri, _), (b_uri, _), (a_leg_uri, _), (b_leg_uri, _), (plain_uri, _) = phones
    bridge = [{"type": "sleep", "option": {"duration": 600000}}]

    def connect(uri: str) -> list[dict[str, Any]]:
        return [{"type": "connect", "option": {"destinations": [{"type": "sip", "target": uri}]}}, *bridge]

    # Two masters whose flows connect at once, and a call of the API's placed while they do.
    placed = await asyncio.gather(
        client.post("/v1.0/calls", params=alice.auth, json=call_to(a_uri, connect(a_leg_uri))),
        client.post("/v1.0/calls", params=alice.auth, json=call_to(b_uri, connect(b_leg_uri))),
        client.post("/v1.0/calls", params=alice.auth, json=call_to(plain_uri, bridge)),
    )
    a, b, plain = (str(p.json()["calls"][0]["id"]) for p in placed)

    async def legs() -> dict[str, dict[str, Any]]:
        calls = (await client.get("/v1.0/calls", params={**alice.auth, "page_size": 100})).json()["result"]
        return {c["destination"]["target"]: c for c in calls}

    for _ in range(200):
        by_target = await legs()
        if all(by_target.get(uri, {}).get("status") == "progressing" for uri, _ in phones):
            break
        await asyncio.sleep(0.05)
    assert by_target[a_leg_uri]["master_call_id"] == a and by_target[b_leg_uri]["master_call_id"] == b
    assert by_target[plain_uri]["master_call_id"] == "" and by_target[a_uri]["master_call_id"] == ""

    for call_id in (a, b, plain):
        await client.post(f"/v1.0/calls/{call_id}/hangup", params=alice.auth)
    for _, process in phones:
        await sipp.finish(process, timeout=10)
    ended = await legs()
    assert {c["status"] for c in ended.values()} == {"hangup"}
    assert {c["hangup_reason"] for c in ended.values()} == {"normal"}  # the legs end with their masters
