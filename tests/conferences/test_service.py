"""The conference service without phones: endpoints of the node's media engine joined through the
calls' front door types, to check moderators, waiting with music, end_conference_on_exit and
talk detection events."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from voipbin.calls.service import ConferenceJoinRequest
from voipbin.conferences.service import ConferenceService, Participant
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import Conference, Conferencecall


async def conference(client: httpx.AsyncClient, alice: Tenant, **body: Any) -> str:
    created = await client.post("/v1.0/conferences", params=alice.auth, json={"name": "c", **body})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


@asynccontextmanager
async def attending(platform: Platform, alice: Tenant, conference_id: str, **options: bool) -> AsyncIterator[Participant]:
    """A participant on an endpoint with no far end, in the conference until the block ends."""
    endpoint = await platform.sip.media.open_endpoint()
    request = ConferenceJoinRequest(new_id(), alice.customer_id, "", endpoint, conference_id, options)
    seat = await platform.conferences.seat(request)
    stay = asyncio.create_task(seat.attend())
    try:
        async with asyncio.timeout(5):
            while (found := next((p for r in platform.conferences.rooms.values() for p in r.participants.values()
                                  if p.endpoint is endpoint), None)) is None:
                await asyncio.sleep(0.01)
        yield found
    finally:
        found_now = platform.conferences.find(found.row_id) if found else None
        if found_now is not None:
            found_now[1].left.set()
        await stay
        await endpoint.close()


async def test_a_participant_waiting_for_a_moderator_hears_music_until_one_joins(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference_id = await conference(client, alice)
    async with attending(platform, alice, conference_id, wait_for_moderator=True) as waiting:
        assert waiting.leg.muted and waiting.leg.deaf and waiting.music is not None
        await asyncio.sleep(0.05)
        assert waiting.endpoint.playing
        async with attending(platform, alice, conference_id, moderator=True) as moderator:
            assert not waiting.leg.muted and not waiting.leg.deaf and waiting.music is None
            assert not moderator.leg.muted
        assert waiting.leg.muted and waiting.music is not None  # the moderator left: waiting again


async def test_hold_takes_a_participant_out_of_the_mix_with_music(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference_id = await conference(client, alice)
    async with attending(platform, alice, conference_id) as held:
        rows = (await client.get("/v1.0/conferencecalls", params={**alice.auth, "conference_id": conference_id})).json()
        row_id = rows["result"][0]["id"]
        answer = await client.put(f"/v1.0/conferencecalls/{row_id}", params=alice.auth, json={"hold": True})
        assert answer.status_code == 200 and answer.json()["hold"] is True
        assert held.leg.muted and held.leg.deaf and held.music is not None
        answer = await client.put(f"/v1.0/conferencecalls/{row_id}", params=alice.auth, json={"hold": False, "deaf": True})
        assert answer.json()["hold"] is False and answer.json()["deaf"] is True
        assert not held.leg.muted and held.leg.deaf and held.music is None


async def test_end_conference_on_exit_ends_it_for_everyone(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    conference_id = await conference(client, alice)
    async with attending(platform, alice, conference_id) as staying:
        async with attending(platform, alice, conference_id, end_conference_on_exit=True):
            pass
        async with asyncio.timeout(5):
            await staying.left.wait()
    async with asyncio.timeout(5):
        while (found := (await client.get(f"/v1.0/conferences/{conference_id}", params=alice.auth)).json())["status"] != "terminated":
            await asyncio.sleep(0.05)
    assert found["conferencecall_ids"] == [] and found["tm_end"]


async def test_talking_is_announced_and_shown(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    conference_id = await conference(client, alice)
    events = platform.bus.subscribe()
    async with attending(platform, alice, conference_id) as talker:
        room = platform.conferences.rooms[conference_id]
        assert room.mixer.on_talking is not None
        talker.leg.talking = True
        room.mixer.on_talking(talker.leg, True)
        async with asyncio.timeout(5):
            async for event in events:
                if event.event_type == "conferencecall_talking_started":
                    assert event.data["talking"] is True and event.data["id"] == talker.row_id
                    break
    events.close()


async def test_the_participants_of_a_node_that_died_are_recorded_as_gone(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference_id = await conference(client, alice)
    row = Conferencecall(id=new_id(), customer_id=alice.customer_id, conference_id=conference_id, status="joined",
                         reference_id=new_id(), tm_create=platform.clock.now())
    async with platform.store.transaction() as tx:
        tx.session.add(row)
        stored = await tx.session.get(Conference, conference_id)
        assert stored is not None
        stored.node_id, stored.conferencecall_ids = "node-that-died", [row.id]
    untouched = await conference(client, alice)  # nobody joined it: no node, and nothing to forget
    await platform.conferences.forget_nodes(["node-that-died", ""])  # the reaper also names "" (calls from before nodes)
    assert (await client.get(f"/v1.0/conferences/{untouched}", params=alice.auth)).json()["tm_update"] == ""
    found = (await client.get(f"/v1.0/conferences/{conference_id}", params=alice.auth)).json()
    assert found["conferencecall_ids"] == [] and found["status"] == "progressing"
    gone = (await client.get(f"/v1.0/conferencecalls/{row.id}", params=alice.auth)).json()
    assert gone["status"] == "leaved"
    async with attending(platform, alice, conference_id):  # the next call mixes it here
        assert conference_id in platform.conferences.rooms


async def test_a_call_whose_media_closed_is_refused_and_not_left_joining(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    conference_id = await conference(client, alice)
    endpoint = await platform.sip.media.open_endpoint()
    await endpoint.close()  # the call hung up while its flow reached conference_join
    seat = await platform.conferences.seat(ConferenceJoinRequest(new_id(), alice.customer_id, "", endpoint, conference_id))
    await seat.attend()  # refused: the flow goes on
    rows = (await client.get("/v1.0/conferencecalls", params={**alice.auth, "conference_id": conference_id})).json()
    assert [r["status"] for r in rows["result"]] == ["leaved"]
    assert conference_id not in platform.conferences.rooms


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_nodes_joining_an_empty_conference_at_once_leave_it_mixed_on_one(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, backend: str
) -> None:
    links: list[tuple[str, str]] = []  # (the node that linked, the node it linked to)

    def node(node_id: str) -> ConferenceService:
        async def join_elsewhere(request: ConferenceJoinRequest, mixing: str) -> bool:
            links.append((node_id, mixing))
            return True

        return ConferenceService(dataclasses.replace(platform.conferences.ctx, node_id=node_id, join_elsewhere=join_elsewhere))

    nodes = [node("node-1"), node("node-2")]
    endpoints = [await platform.sip.media.open_endpoint() for _ in nodes]
    for attempt in range(5):
        links.clear()
        conference_id = await conference(client, alice, name=f"race {attempt}")
        requests = [ConferenceJoinRequest(new_id(), alice.customer_id, "", e, conference_id, {}) for e in endpoints]
        stays = [asyncio.create_task(n.attend(r)) for n, r in zip(nodes, requests, strict=True)]
        async with asyncio.timeout(5):
            while not (links and any(conference_id in n.rooms and n.rooms[conference_id].participants for n in nodes)):
                await asyncio.sleep(0.01)
        mixing = [n for n in nodes if conference_id in n.rooms]
        assert len(mixing) == 1
        mixer = mixing[0].ctx.node_id
        assert links == [("node-2" if mixer == "node-1" else "node-1", mixer)]
        await mixing[0].end(conference_id)
        await asyncio.gather(*stays)
    for service in nodes:
        await service.stop()
    for endpoint in endpoints:
        await endpoint.close()
