"""A conference mixed on node A, joined by phones registered on node B: each hears the others,
not itself; node B's API mutes and kicks its participants (the requests go to node A)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.backends import backend_changes
from tests.conftest import ADMIN, Tenant, make_settings, new_tenant
from tests.live import free_port
from tests.peers.baresip import RATE, Baresip, tone
from tests.telephony.conftest import until
from tests.telephony.softphones import until_status
from tests.telephony.test_conferences import PRESENT, TONES, Wire, joined, share_at
from voipbin.api.app import create_app
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]

MIXER, LINKED, LINKED_TOO = TONES  # the first phone registers on node A, the others on node B


async def node(stack: AsyncExitStack, data_dir: Path, changes: dict[str, str]) -> tuple[Platform, httpx.AsyncClient]:
    """A platform serving its API over loopback HTTP in this loop: the other node forwards to it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    platform = Platform(make_settings(data_dir, internal_url=url, **changes))
    await platform.start()
    stack.push_async_callback(platform.stop)
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # leave pytest's SIGINT alone
    serving = asyncio.create_task(server.serve())

    async def stop_serving() -> None:
        server.should_exit = True
        await asyncio.wait_for(asyncio.gather(serving, return_exceptions=True), 15)

    stack.push_async_callback(stop_serving)
    async with asyncio.timeout(15):
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.02)
    client = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=20))
    return platform, client


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient, Platform, httpx.AsyncClient]]:
    async with backend_changes("postgres") as changes, AsyncExitStack() as stack:
        node_a, client_a = await node(stack, tmp_path / "a", changes)
        node_b, client_b = await node(stack, tmp_path / "b", changes)
        yield node_a, client_a, node_b, client_b


async def test_phones_on_another_node_join_through_a_link_and_are_muted_and_kicked_from_theirs(
    tmp_path: Path, two_nodes: tuple[Platform, httpx.AsyncClient, Platform, httpx.AsyncClient]
) -> None:
    node_a, client_a, node_b, client_b = two_nodes
    operator = (await client_a.post("/auth/login", json=ADMIN)).json()["token"]
    alice: Tenant = await new_tenant(client_a, Tenant("", "", operator, ""), "linked@example.com")
    home = {MIXER: node_a, LINKED: node_b, LINKED_TOO: node_b}
    phones: dict[str, Baresip] = {}
    try:
        for extension, platform in home.items():
            body = {"extension": extension, "password": f"secret-{extension}", "name": f"p{extension}", "detail": "d"}
            assert (await client_a.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
            phones[extension] = Baresip.start(
                tmp_path / extension, user=extension, password=f"secret-{extension}",
                domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port,
                microphone=tone(tmp_path / f"{extension}.wav", TONES[extension], seconds=60),
            )  # fmt: skip
        for extension, platform in home.items():
            await until(lambda e=extension, p=platform: p.sip.registrations(alice.customer_id, e), timeout=15)
        created = await client_b.post("/v1.0/conferences", params=alice.auth, json={"type": "conference", "name": "x"})
        conference_id = created.json()["id"]
        address = f"sip:conference%3A{conference_id}@{alice.customer_id}.registrar.voipbin.test"

        phones[MIXER].command("dial", address)  # the first to join makes node A mix it
        await joined(client_a, alice, conference_id, 1)
        for extension in (LINKED, LINKED_TOO):
            phones[extension].command("dial", address)
        in_conference = await joined(client_b, alice, conference_id, 3)
        conference = (await client_b.get(f"/v1.0/conferences/{conference_id}", params=alice.auth)).json()
        assert len(conference["conferencecall_ids"]) == 3
        assert set(node_a.conferences.rooms) == {conference_id} and not node_b.conferences.rooms

        # Each participant is the phone's own call, on the phone's own node.
        call_of = {home[e].calls.live[c].source["target"]: c for p in in_conference
                   for e in home if (c := p["reference_id"]) in home[e].calls.live}  # fmt: skip
        assert set(call_of) == set(TONES), call_of
        participant = {e: next(p["id"] for p in in_conference if p["reference_id"] == call_of[e]) for e in TONES}
        wires = {e: Wire() for e in TONES}
        for extension, call_id in call_of.items():
            endpoint = home[extension].calls.live[call_id].endpoint
            assert endpoint is not None
            endpoint.add_tap("out", wires[extension].tap)

        all_in = time.monotonic()
        await asyncio.sleep(2.5)
        muted = await client_b.put(f"/v1.0/conferencecalls/{participant[LINKED_TOO]}", params=alice.auth, json={"muted": True})
        assert muted.status_code == 200 and muted.json()["muted"] is True, muted.text
        one_muted = time.monotonic()
        await asyncio.sleep(2.5)
        kicked = await client_b.delete(f"/v1.0/conferencecalls/{participant[LINKED]}", params=alice.auth)
        assert kicked.status_code == 200, kicked.text
        await until_status(client_b, alice, call_of[LINKED], "hangup", timeout=10)  # its flow ends after the join
        one_gone = time.monotonic()
        await asyncio.sleep(2.0)
        remaining = await joined(client_b, alice, conference_id, 2)
        assert {p["reference_id"] for p in remaining} == {call_of[MIXER], call_of[LINKED_TOO]}
        deleted = await client_b.delete(f"/v1.0/conferences/{conference_id}", params=alice.auth)
        assert deleted.status_code == 200, deleted.text
        for extension in (MIXER, LINKED_TOO):  # the linked call ends with the conference too
            await until_status(client_a, alice, call_of[extension], "hangup", timeout=10)
        ended = time.monotonic()
    finally:
        for phone in phones.values():
            phone.stop()

    def heard(extension: str, start: float, end: float) -> set[str]:
        window = wires[extension].between(start + 0.5, end - 0.2)
        return {e for e, f in TONES.items() if share_at(window, f) > PRESENT}

    assert heard(MIXER, all_in, one_muted) == {LINKED, LINKED_TOO}
    assert heard(LINKED, all_in, one_muted) == {MIXER, LINKED_TOO}
    assert heard(LINKED_TOO, all_in, one_muted) == {MIXER, LINKED}
    assert heard(MIXER, one_muted, one_gone) == {LINKED}
    assert heard(LINKED_TOO, one_gone, ended) == {MIXER}
    assert not node_a.conferences.rooms and not node_b.calls.live
    # What the kicked phone on node B recorded itself: the two others, never its own tone.
    recording = phones[LINKED].heard()
    assert recording is not None and len(recording) > 3 * RATE
    own, others = share_at(recording, TONES[LINKED]), [share_at(recording, TONES[e]) for e in (MIXER, LINKED_TOO)]
    assert own < 0.01 and min(others) > PRESENT / 2, (own, others)
