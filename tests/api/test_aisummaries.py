"""``/v1.0/aisummaries``: a transcript summarised by the (scripted) model once complete, then the
customer's ``on_end_flow_id`` run without a call; refusals; one customer's summaries are its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.ai.fake_llm import FakeLlm, Scripted
from tests.conftest import Tenant
from tests.events.test_webhooks import Receiver, receiving
from tests.live import free_port
from tests.speech.fakes import fake_servers
from voipbin.calls import records
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import AiSummary, Call, Transcribe, Transcript

SUMMARY = "The caller asked when the bakery opens; it opens at seven."
LINES = [("in", "What time do you open tomorrow?"), ("out", "We open at seven tomorrow morning."), ("in", "Thank you.")]


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLlm]:
    async with fake_servers(FakeLlm) as start:
        fake = await start()
        monkeypatch.setenv("VOIPBIN_LLM_OLLAMA_URL", fake.url)
        monkeypatch.setenv("VOIPBIN_SUMMARY_ENGINE_MODEL", "ollama.scripted")
        yield fake


async def transcribe(platform: Platform, tenant: Tenant, status: str = "done", lines: list[tuple[str, str]] = LINES) -> str:
    """A transcription of a (finished) call, with its transcripts, as the call layer records them."""
    row = Transcribe(id=new_id(), customer_id=tenant.customer_id, reference_id=new_id(), status=status,
                     tm_create=platform.clock.now())
    await records.add(platform.store, row, "transcribe_created")
    for direction, message in lines:
        await add_transcript(platform, tenant, row.id, direction, message)
    return row.id


async def add_transcript(platform: Platform, tenant: Tenant, transcribe_id: str, direction: str, message: str) -> None:
    now = platform.clock.now()
    transcript = Transcript(id=new_id(), customer_id=tenant.customer_id, transcribe_id=transcribe_id,
                            direction=direction, message=message, tm_transcript=now, tm_create=now)
    await records.add(platform.store, transcript, "transcript_created")


async def summary_when(
    client: httpx.AsyncClient, tenant: Tenant, summary_id: str, status: str, timeout: float = 15
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            found = (await client.get(f"/v1.0/aisummaries/{summary_id}", params=tenant.auth)).json()
            if found["status"] == status:
                return dict(found)
            await asyncio.sleep(0.05)


async def create(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> httpx.Response:
    return await client.post("/v1.0/aisummaries", params=tenant.auth, json={"language": "en-US", **body})


async def test_a_transcribe_is_summarised_then_its_on_end_flow_runs_with_the_summary(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(text=SUMMARY))
    receiver = Receiver(free_port())
    actions = [
        {"type": "talk", "option": {"text": "Nobody hears this: the flow has no call."}},
        {"type": "webhook_send", "option": {
            "sync": True, "uri": receiver.url, "method": "POST", "data_type": "application/json",
            "data": '{"summary": "${voipbin.ai_summary.content}", "of": "${voipbin.ai_summary.reference_id}"}',
        }},
    ]  # fmt: skip
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "after", "actions": actions})
    transcribe_id = await transcribe(platform, alice, status="progressing")
    with receiving(receiver):
        created = await create(client, alice, reference_type="transcribe", reference_id=transcribe_id,
                               on_end_flow_id=flow.json()["id"])
        assert created.status_code == 200, created.text
        summary = created.json()
        assert summary["status"] == "progressing" and summary["content"] == ""
        await asyncio.sleep(0.3)
        assert not llm.requests  # not while the transcript still grows
        await records.change(platform.store, Transcribe, transcribe_id, "transcribe_done", status="done")
        done = await summary_when(client, alice, summary["id"], "done")
        async with asyncio.timeout(10):
            while not receiver.received:
                await asyncio.sleep(0.05)
    assert done["content"] == SUMMARY
    assert json.loads(receiver.received[0].body) == {"summary": SUMMARY, "of": transcribe_id}
    asked = llm.requests[0]["messages"][-1]["content"]
    assert "\n".join(f"{who}: {said}" for who, said in [
        ("Caller", "What time do you open tomorrow?"), ("Agent", "We open at seven tomorrow morning."), ("Caller", "Thank you."),
    ]) in asked  # fmt: skip
    activeflows = (await client.get("/v1.0/activeflows", params=alice.auth)).json()["result"]
    ran = next(a for a in activeflows if a["reference_type"] == "ai_summary")
    assert ran["reference_id"] == summary["id"] and ran["flow_id"] == flow.json()["id"]


async def test_a_finished_transcribe_is_summarised_at_once_and_an_empty_one_without_the_model(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(text=SUMMARY))
    created = await create(client, alice, reference_type="transcribe", reference_id=await transcribe(platform, alice))
    assert (await summary_when(client, alice, created.json()["id"], "done"))["content"] == SUMMARY
    silent = await create(client, alice, reference_type="transcribe", reference_id=await transcribe(platform, alice, lines=[]))
    assert (await summary_when(client, alice, silent.json()["id"], "done"))["content"] == ""
    assert len(llm.requests) == 1


async def test_a_model_that_fails_leaves_the_summary_done_and_empty(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(status=429))
    created = await create(client, alice, reference_type="transcribe", reference_id=await transcribe(platform, alice))
    assert (await summary_when(client, alice, created.json()["id"], "done"))["content"] == ""


async def test_a_summary_a_stopped_node_held_is_made_once_its_lease_runs_out(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(text=SUMMARY))
    transcribe_id = await transcribe(platform, alice, status="progressing")
    created = (await create(client, alice, reference_type="transcribe", reference_id=transcribe_id)).json()
    held_until = platform.clock.now() + timedelta(minutes=1)
    await records.change(platform.store, AiSummary, created["id"], None, lease_until=held_until)
    await records.change(platform.store, Transcribe, transcribe_id, "transcribe_done", status="done")
    await asyncio.sleep(0.5)
    assert (await client.get(f"/v1.0/aisummaries/{created['id']}", params=alice.auth)).json()["status"] == "progressing"
    await records.change(platform.store, AiSummary, created["id"], None, lease_until=platform.clock.now() - timedelta(seconds=1))
    await platform.summaries.take_ready()
    assert (await summary_when(client, alice, created["id"], "done"))["content"] == SUMMARY


async def test_a_summary_deleted_while_progressing_is_not_made(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    transcribe_id = await transcribe(platform, alice, status="progressing")
    created = (await create(client, alice, reference_type="transcribe", reference_id=transcribe_id)).json()
    deleted = await client.delete(f"/v1.0/aisummaries/{created['id']}", params=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["tm_delete"]
    await records.change(platform.store, Transcribe, transcribe_id, "transcribe_done", status="done")
    await platform.summaries.take_ready()
    await asyncio.sleep(0.3)
    assert not llm.requests
    assert (await client.get(f"/v1.0/aisummaries/{created['id']}", params=alice.auth)).status_code == 404


async def test_what_cannot_be_summarised_is_refused_with_a_reason(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant, llm: FakeLlm
) -> None:
    bobs_transcribe = await transcribe(platform, bob)
    bobs_flow = await client.post("/v1.0/flows", params=bob.auth, json={"name": "b", "actions": [{"type": "stop"}]})
    ended = Call(id=new_id(), customer_id=alice.customer_id, status="hangup", tm_create=platform.clock.now())
    await records.add(platform.store, ended, "call_created")
    cases = [
        ({"reference_type": "transcribe", "reference_id": bobs_transcribe}, 404, "TRANSCRIBE_NOT_FOUND"),
        ({"reference_type": "call", "reference_id": new_id()}, 404, "CALL_NOT_FOUND"),
        ({"reference_type": "call", "reference_id": ended.id}, 400, "CALL_NOT_TRANSCRIBED"),
        ({"reference_type": "recording", "reference_id": new_id()}, 400, "NOT_SUPPORTED"),
        ({"reference_type": "conference", "reference_id": new_id()}, 404, "CONFERENCE_NOT_FOUND"),
        ({"reference_type": "transcribe", "reference_id": "not-an-id"}, 400, "INVALID_REQUEST_PARAMETER"),
        ({"reference_type": "meeting", "reference_id": new_id()}, 400, None),
        ({"reference_type": "transcribe", "reference_id": await transcribe(platform, alice),
          "on_end_flow_id": bobs_flow.json()["id"]}, 400, "FLOW_NOT_FOUND"),
    ]  # fmt: skip
    for body, status, reason in cases:
        answer = await create(client, alice, **body)
        assert answer.status_code == status, (body, answer.text)
        if reason:
            assert answer.json()["error"]["reason"] == reason, answer.text
    assert (await client.get("/v1.0/aisummaries", params=alice.auth)).json()["result"] == []


async def test_a_conference_in_progress_is_transcribed_and_summarised_once_it_ends(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(text="Two people agreed to ship on Friday."))
    conference = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "planning"})).json()
    created = await create(client, alice, reference_type="conference", reference_id=conference["id"])
    assert created.status_code == 200, created.text
    transcribe_id = (await client.get(f"/v1.0/conferences/{conference['id']}", params=alice.auth)).json()["transcribe_id"]
    assert transcribe_id  # the summary started the conference's transcription
    for speaker, message in (("p1", "Can we ship on Friday?"), ("p2", "Yes, Friday works."), ("p1", "Great.")):
        now = platform.clock.now()
        row = Transcript(id=new_id(), customer_id=alice.customer_id, transcribe_id=transcribe_id, direction="in",
                         conferencecall_id=speaker, message=message, tm_transcript=now, tm_create=now)
        await records.add(platform.store, row, "transcript_created")
    await asyncio.sleep(0.3)
    assert not llm.requests  # not while the conference goes on
    assert (await client.delete(f"/v1.0/conferences/{conference['id']}", params=alice.auth)).status_code == 200
    done = await summary_when(client, alice, created.json()["id"], "done")
    assert done["content"] == "Two people agreed to ship on Friday."
    asked = llm.requests[0]["messages"][-1]["content"]
    assert "Participant 1: Can we ship on Friday?\nParticipant 2: Yes, Friday works.\nParticipant 1: Great." in asked


async def test_a_customer_sees_only_its_own_summaries(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant, llm: FakeLlm
) -> None:
    created = (await create(client, alice, reference_type="transcribe", reference_id=await transcribe(platform, alice))).json()
    assert (await client.get(f"/v1.0/aisummaries/{created['id']}", params=bob.auth)).status_code == 404
    assert (await client.delete(f"/v1.0/aisummaries/{created['id']}", params=bob.auth)).status_code == 404
    assert (await client.get("/v1.0/aisummaries", params=bob.auth)).json()["result"] == []
    mine = (await client.get("/v1.0/aisummaries", params={**alice.auth, "reference_id": created["reference_id"]})).json()
    assert [s["id"] for s in mine["result"]] == [created["id"]]
