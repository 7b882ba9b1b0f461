"""Runaway flows (security issue, item 6): a flow is customer input, and however it loops, grows or
calls itself, it ends, and the call with it, within bounds the platform sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Tenant
from tests.live import free_port
from tests.peers import sipp
from tests.security.conftest import Server, serving
from voipbin.core.clock import parse_timestamp
from voipbin.flows.engine import FlowLimits

pytestmark = pytest.mark.slow

A = "aaaaaaaa-0000-4000-8000-000000000001"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose flows may call a sipp phone on loopback (a lab's allow-list)."""
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8") as server:
        yield server


async def answered_call(server: Server, who: Tenant, actions: list[dict[str, Any]], phone_port: int) -> str:
    body = {"source": {"type": "sip", "target": "lab"},
            "destinations": [{"type": "sip", "target": f"sip:phone@127.0.0.1:{phone_port}"}], "actions": actions}
    placed = await server.client.post("/v1.0/calls", params=who.auth, json=body)
    assert placed.status_code == 200, placed.text
    return str(placed.json()["calls"][0]["id"])


async def ended(server: Server, who: Tenant, call_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        call = (await server.client.get(f"/v1.0/calls/{call_id}", params=who.auth)).json()
        if call["status"] == "hangup":
            return dict(call)
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} still {call['status']} after {within} s")


async def phone() -> tuple[int, Any]:
    """A sipp phone for one call, on ports of its own."""
    port = free_port()
    process = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-mp", str(free_port()))
    await asyncio.sleep(0.3)
    return port, process


async def test_a_goto_loop_around_a_1_ms_sleep_ends_with_its_call(lab: Server) -> None:
    operator = await lab.operator()
    port, uas = await phone()
    loop = [{"id": A, "type": "sleep", "option": {"duration": 1}},
            {"type": "goto", "option": {"target_id": A, "loop_count": 1_000_000}}]

    call = await ended(lab, operator, await answered_call(lab, operator, loop, port), within=30)

    assert call["hangup_reason"] == "failed" and call["hangup_by"] == "local"
    [activeflow] = (await lab.client.get("/v1.0/activeflows", params=operator.auth)).json()["result"]
    limits = FlowLimits()
    seconds = (parse_timestamp(call["tm_hangup"]) - parse_timestamp(call["tm_progressing"])).total_seconds()
    assert len(activeflow["executed_actions"]) <= limits.steps_burst + limits.steps_per_second * seconds + 1
    await sipp.finish(uas)


async def test_a_self_doubling_variable_ends_with_its_call(lab: Server) -> None:
    operator = await lab.operator()
    port, uas = await phone()
    doubling = [{"id": A, "type": "variable_set", "option": {"key": "x", "value": "x${x}${x}"}},
                {"type": "goto", "option": {"target_id": A, "loop_count": 100}}, {"type": "sleep", "option": {"duration": 60000}}]

    call = await ended(lab, operator, await answered_call(lab, operator, doubling, port), within=30)

    assert call["hangup_reason"] == "failed"
    activeflows = (await lab.client.get("/v1.0/activeflows", params=operator.auth)).json()["result"]
    assert activeflows[0]["status"] == "ended"
    await sipp.finish(uas)


async def test_a_call_ends_at_the_maximum_duration_whatever_its_flow_says(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8", max_call_duration_s=2.0) as lab:
        operator = await lab.operator()
        port, uas = await phone()
        sleeping = [{"type": "sleep", "option": {"duration": 600000}}]

        call = await ended(lab, operator, await answered_call(lab, operator, sleeping, port), 15)
        await sipp.finish(uas)

    assert call["hangup_reason"] == "timeout" and call["hangup_by"] == "local"
    lasted = (parse_timestamp(call["tm_hangup"]) - parse_timestamp(call["tm_progressing"])).total_seconds()
    assert 1.9 <= lasted <= 4.0


async def test_out_of_range_durations_are_refused_not_crashed_on(lab: Server) -> None:
    operator = await lab.operator()
    body = {"source": {"type": "sip", "target": "lab"}, "destinations": [{"type": "sip", "target": "sip:x@127.0.0.1:9"}]}

    huge = await lab.client.post("/v1.0/calls", params=operator.auth, json={**body, "actions": [
        {"type": "sleep", "option": {"duration": 10**400}}]})
    long_text = await lab.client.post("/v1.0/calls", params=operator.auth, json={**body, "actions": [
        {"type": "talk", "option": {"text": "x" * 6000}}]})

    assert huge.status_code == long_text.status_code == 400
    assert huge.json()["error"]["reason"] == "INVALID_ACTION" and "duration" in huge.json()["error"]["message"]


async def test_a_number_whose_flow_calls_itself_makes_a_bounded_chain(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8") as lab:
        operator = await lab.operator()
        [number] = (await lab.client.get("/v1.0/numbers", params=operator.auth)).json()["result"]
        ourselves = f"sip:{number['number']}@127.0.0.1:{lab.platform.sip.stack.port}"
        flow = await lab.client.post("/v1.0/flows", params=operator.auth, json={"name": "loop", "actions": [
            {"type": "connect", "option": {"destinations": [{"type": "sip", "target": ourselves}]}}]})
        await lab.client.put(f"/v1.0/numbers/{number['id']}", params=operator.auth, json={"call_flow_id": flow.json()["id"]})

        placed = await lab.client.post("/v1.0/calls", params=operator.auth, json={
            "source": {"type": "tel", "target": number["number"]}, "destinations": [{"type": "sip", "target": ourselves}],
            "actions": [{"type": "hangup"}]})
        assert placed.status_code == 200, placed.text
        calls: list[dict[str, Any]] = []
        for _ in range(200):
            await asyncio.sleep(0.1)
            calls = (await lab.client.get("/v1.0/calls", params={**operator.auth, "page_size": 100})).json()["result"]
            if len(calls) > 2 and all(c["status"] == "hangup" for c in calls):
                break
        chain = lab.platform.settings.max_calls_per_chain

    incoming = [c for c in calls if c["direction"] == "incoming"]
    assert all(c["status"] == "hangup" for c in calls), [c["status"] for c in calls]
    # Each round is our leg out and the same call coming back in; the chain stops the rounds.
    assert 2 <= len(incoming) <= chain and len(calls) <= 2 * chain + 1
    assert "failed" in {c["hangup_reason"] for c in calls if c["direction"] == "outgoing"}  # the one refused (482)


async def test_a_customer_holds_a_bounded_number_of_live_calls(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8", max_live_calls_per_customer=2) as lab:
        operator = await lab.operator()
        phones = [await phone() for _ in range(2)]  # one phone per call, as real phones are
        ids = [await answered_call(lab, operator, [{"type": "sleep", "option": {"duration": 600000}}], port)
               for port, _ in phones]

        refused = await lab.client.post("/v1.0/calls", params=operator.auth, json={
            "source": {"type": "sip", "target": "lab"}, "destinations": [{"type": "sip", "target": "sip:x@127.0.0.1:9"}],
            "actions": [{"type": "hangup"}]})
        for call_id in ids:
            await lab.client.post(f"/v1.0/calls/{call_id}/hangup", params=operator.auth)
        for _, uas in phones:
            await sipp.finish(uas)

    assert refused.status_code == 400 and refused.json()["error"]["reason"] == "CALL_LIMIT"


async def test_a_flow_runner_that_fails_hangs_its_call_up(lab: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from voipbin.calls.runner import FlowRunner

    async def broken(self: FlowRunner, command: object) -> None:
        raise RuntimeError("a bug in the runner")

    monkeypatch.setattr(FlowRunner, "_do_Talk", broken)
    operator = await lab.operator()
    port, uas = await phone()

    call = await ended(lab, operator, await answered_call(lab, operator, [
        {"type": "talk", "option": {"text": "Hello."}}, {"type": "sleep", "option": {"duration": 600000}}], port), 10)

    assert call["hangup_reason"] == "failed"
    await sipp.finish(uas)
