"""DTMF over RFC 4733 with a real peer: sipp presses a key the flow branches on; the flow's digits reach sipp."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.live import free_port
from tests.peers import sipp, tshark
from voipbin.core.ids import new_id
from voipbin.runtime import Platform

KEY_ONE = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")  # shipped with Debian's sip-tester

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sipp.available() or not KEY_ONE.exists(), reason="sipp is installed by `make test`"),
]

NUMBER = "+89950002222"


async def call_in_pressing_one(
    platform: Platform, client: httpx.AsyncClient, tenant: Tenant, actions: list[dict[str, Any]], tmp_path: Path, media_port: int
) -> dict[str, Any]:
    """sipp calls a number running ``actions``, presses 1 half a second after the answer and waits for
    our BYE; returns the call."""
    flow = await client.post("/v1.0/flows", params=tenant.auth, json={"name": "dtmf", "actions": actions})
    assert flow.status_code == 200, flow.text
    number = {"number": NUMBER, "call_flow_id": flow.json()["id"]}
    assert (await client.post("/v1.0/numbers", params=tenant.auth, json=number)).status_code == 200
    scenario = tmp_path / "uac_dtmf.xml"
    scenario.write_text((sipp.SCENARIOS / "uac_dtmf.xml").read_text().replace("DTMF_PCAP", str(KEY_ONE)))

    result = await sipp.run_sipp(
        f"127.0.0.1:{platform.sip.stack.port}", "-sf", str(scenario), "-s", NUMBER, "-i", "127.0.0.1",
        "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(media_port), "-m", "1", timeout=20,
    )

    assert result.ok, result.output[-2000:]  # ok means our flow hung up (sipp waits for our BYE)
    for _ in range(100):  # the BYE's answer is recorded just after sipp has sent it
        [call] = (await client.get("/v1.0/calls", params=tenant.auth)).json()["result"]
        if call["status"] == "hangup":
            break
        await asyncio.sleep(0.05)
    assert call["status"] == "hangup" and call["hangup_by"] == "local"
    return dict(call)


async def test_a_pressed_key_picks_the_branch(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, tmp_path: Path
) -> None:
    pressed_one, otherwise = new_id(), new_id()
    actions = [
        {"type": "answer"},
        {"type": "digits_receive", "option": {"duration": 5000, "length": 1}},
        {"type": "variable_set", "option": {"key": "pressed", "value": "${voipbin.call.digits}"}},
        {"type": "branch", "option": {"target_ids": {"1": pressed_one}, "default_target_id": otherwise}},
        {"id": pressed_one, "type": "variable_set", "option": {"key": "choice", "value": "one"}},
        {"type": "hangup"},
        {"id": otherwise, "type": "variable_set", "option": {"key": "choice", "value": "other"}},
        {"type": "hangup"},
    ]
    call = await call_in_pressing_one(platform, client, alice, actions, tmp_path, free_port())

    activeflow = (await client.get(f"/v1.0/activeflows/{call['activeflow_id']}", params=alice.auth)).json()
    variables = [a["option"]["value"] for a in activeflow["executed_actions"] if a.get("type") == "variable_set"]
    assert variables == ["1", "one"]


@pytest.mark.skipif(not tshark.available(), reason="tshark is installed by `make test`")
async def test_digits_send_reaches_the_peer_as_rfc4733(
    platform: Platform, client: httpx.AsyncClient, alice: Tenant, tmp_path: Path
) -> None:
    actions = [
        {"type": "answer"},
        {"type": "sleep", "option": {"duration": 300}},
        {"type": "digits_send", "option": {"digits": "4#2", "duration": 100, "interval": 100}},
        {"type": "hangup"},
    ]
    media_port = free_port()
    async with tshark.Capture(tmp_path / "dtmf.pcap", f"udp and dst port {media_port}") as capture:
        await call_in_pressing_one(platform, client, alice, actions, tmp_path, media_port)

    assert await rfc4733_digits(capture.path, media_port) == "4#2"


async def rfc4733_digits(pcap: Path, port: int) -> str:
    """The keys of the RFC 4733 events sent to ``port``, in order (one per event, however often repeated)."""
    process = await asyncio.create_subprocess_exec(
        "tshark", "-r", str(pcap), "-d", f"udp.port=={port},rtp", "-Y", "rtpevent",
        "-T", "fields", "-e", "rtp.timestamp", "-e", "rtpevent.event_id",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    events: dict[str, str] = {}  # every packet of one event repeats its start timestamp
    for line in out.decode().splitlines():
        timestamp, event_id = line.split("\t")
        events.setdefault(timestamp, "0123456789*#ABCD"[int(event_id)])
    return "".join(events.values())
