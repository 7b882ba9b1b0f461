"""Flows without a call (an AI summary's on_end_flow_id): what needs a call is skipped, the rest
runs; each is bounded in time and in number per customer, and can be stopped like any activeflow."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.events.test_webhooks import Receiver, receiving
from tests.live import free_port
from voipbin.calls import detached
from voipbin.calls.errors import CallError
from voipbin.runtime import Platform

SLEEP = [{"type": "sleep", "option": {"duration": 60_000}}]


async def saved_flow(client: httpx.AsyncClient, tenant: Tenant, actions: list[dict[str, Any]]) -> str:
    created = await client.post("/v1.0/flows", params=tenant.auth, json={"name": "no call", "actions": actions})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


async def activeflow_when_ended(client: httpx.AsyncClient, tenant: Tenant, activeflow_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while (found := (await client.get(f"/v1.0/activeflows/{activeflow_id}", params=tenant.auth)).json())["status"] != "ended":
            await asyncio.sleep(0.05)
    return dict(found)


async def test_a_flow_without_a_call_skips_what_needs_one_and_runs_the_rest(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    receiver = Receiver(free_port())
    flow_id = await saved_flow(client, alice, [
        {"type": "talk", "option": {"text": "Nobody is there to hear this."}},
        {"type": "connect", "option": {"destinations": [{"type": "extension", "target": "2001"}]}},
        {"type": "variable_set", "option": {"key": "greeting", "value": "hello ${who}"}},
        {"type": "webhook_send", "option": {"sync": True, "uri": receiver.url, "data": '{"said": "${greeting}"}'}},
    ])  # fmt: skip
    with receiving(receiver):
        activeflow_id = await platform.calls.start_flow(alice.customer_id, flow_id, {"who": "world"}, ("ai_summary", flow_id))
        ended = await activeflow_when_ended(client, alice, activeflow_id)
    assert [json.loads(r.body) for r in receiver.received] == [{"said": "hello world"}]
    assert [a["type"] for a in ended["executed_actions"]] == ["talk", "connect", "variable_set", "webhook_send"]
    assert ended["reference_type"] == "ai_summary" and ended["reference_id"] == flow_id


async def test_a_flow_without_a_call_ends_at_its_time_limit(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detached, "MAX_LIFE_S", 0.3)
    activeflow_id = await platform.calls.start_flow(alice.customer_id, await saved_flow(client, alice, SLEEP), {}, ("api", ""))
    await activeflow_when_ended(client, alice, activeflow_id)


async def test_a_customer_runs_a_bounded_number_of_flows_without_a_call(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detached, "MAX_PER_CUSTOMER", 2)
    flow_id = await saved_flow(client, alice, SLEEP)
    first = await platform.calls.start_flow(alice.customer_id, flow_id, {}, ("api", ""))
    await platform.calls.start_flow(alice.customer_id, flow_id, {}, ("api", ""))
    with pytest.raises(CallError) as refused:
        await platform.calls.start_flow(alice.customer_id, flow_id, {}, ("api", ""))
    assert (refused.value.status, refused.value.reason) == (429, "TOO_MANY_FLOWS")
    await platform.calls.start_flow(bob.customer_id, await saved_flow(client, bob, SLEEP), {}, ("api", ""))
    stopped = await client.post(f"/v1.0/activeflows/{first}/stop", params=alice.auth)
    assert stopped.status_code == 200 and stopped.json()["status"] == "ended", stopped.text
    await platform.calls.start_flow(alice.customer_id, flow_id, {}, ("api", ""))  # room again


async def test_another_customers_flow_is_not_run(client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant) -> None:
    bobs_flow = await saved_flow(client, bob, SLEEP)
    with pytest.raises(CallError) as refused:
        await platform.calls.start_flow(alice.customer_id, bobs_flow, {}, ("api", ""))
    assert refused.value.reason == "FLOW_NOT_FOUND"
