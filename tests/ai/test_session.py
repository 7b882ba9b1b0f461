"""The AI session's wing: recogniser events in, playbacks, model calls, tools and aimessages out.

The call's endpoint, the recogniser and the model are fakes driven by the test, so each rule is
checked without a phone or a clock to wait on (the real-phone tests are tests/telephony/test_ai_talk.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from voipbin.ai.llm import LlmDelta, LlmError, LlmText, LlmToolCall
from voipbin.ai.session import AiContext, AiTalkSession
from voipbin.calls.context import AiTalkRequest, AiTalkResult
from voipbin.core.egress import EgressPolicy
from voipbin.core.ids import new_id
from voipbin.media.endpoint import Playback
from voipbin.runtime import Platform
from voipbin.speech.stt import SpeechBoundary, TranscriberEvent, Utterance
from voipbin.store.models import Ai, AiCall, AiMessage

CUSTOMER = "cccccccc-0000-4000-8000-000000000001"


class FakeEndpoint:
    """Playbacks that finish when the test says, or are cut off by cancel."""

    def __init__(self) -> None:
        self.playing: list[Playback] = []
        self.cancelled: list[Playback] = []

    def play_stream(self, chunks: AsyncIterator[bytes]) -> Playback:
        playback = Playback(complete=False)  # the speech is never rendered: nobody listens
        self.playing.append(playback)
        return playback

    def cancel(self, playback: Playback) -> None:
        if not playback.done.done():
            playback.done.set_result("stopped")
            self.cancelled.append(playback)

    def finish_all(self) -> None:
        for playback in self.playing:
            if not playback.done.done():
                playback.done.set_result("finished")

    def add_tap(self, direction: str, callback: Callable[[bytes], None]) -> Callable[[], None]:
        return lambda: None


class FakeTranscriber:
    def __init__(self) -> None:
        self.events: asyncio.Queue[TranscriberEvent | None] = asyncio.Queue()

    def feed(self, pcm: bytes) -> None:
        pass

    def close(self) -> None:
        self.events.put_nowait(None)

    async def results(self) -> AsyncIterator[TranscriberEvent]:
        while (event := await self.events.get()) is not None:
            yield event


HOLD = None  # in a scripted reply: the model goes quiet here until the test sets ``hold``


class FakeModel:
    """Replies in order, each a list of deltas (HOLD: wait there), or an error to raise."""

    def __init__(self, *replies: Sequence[LlmDelta | None] | LlmError) -> None:
        self.replies = list(replies)
        self.asked: list[list[dict[str, Any]]] = []
        self.tools: list[list[str]] = []
        self.asked_tools: list[list[dict[str, Any]]] = []
        self.hold = asyncio.Event()
        self.cancelled = 0
        self.closed = False

    async def reply(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()) -> AsyncIterator[LlmDelta]:
        self.asked.append([dict(m) for m in messages])
        self.tools.append([t["function"]["name"] for t in tools])
        self.asked_tools.append([dict(t) for t in tools])
        reply = self.replies.pop(0) if self.replies else [LlmText("Okay.")]
        if isinstance(reply, LlmError):
            raise reply
        try:
            for delta in reply:
                if delta is HOLD:
                    await self.hold.wait()
                else:
                    yield delta
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def close(self) -> None:
        self.closed = True


class Rig:
    def __init__(self, platform: Platform, model: FakeModel, egress: EgressPolicy | None = None, **ai: Any) -> None:
        self.endpoint = FakeEndpoint()
        self.transcriber = FakeTranscriber()
        self.transcriber_options: dict[str, Any] = {}
        self.model = model
        self.ai = Ai(id=new_id(), customer_id=CUSTOMER, engine_model="ollama.x", init_prompt="You sell bread.",
                     parameter={}, vad_config=ai.pop("vad_config", {}), tool_names=ai.pop("tool_names", []), http_tools=ai.pop("http_tools", []), tts_type="", tts_voice_id="",
                     stt_type="", stt_language="en-US", **ai)
        ctx = AiContext(platform.store, platform.clock, platform.speech.tts, self._transcriber, egress or platform.egress)
        request = AiTalkRequest(new_id(), CUSTOMER, new_id(), self.endpoint, self.ai.id, 0, {"voipbin.call.id": "c1"})  # type: ignore[arg-type]
        self.session = AiTalkSession(ctx, self.ai, request, model)  # type: ignore[arg-type]
        self.platform = platform
        self.task: asyncio.Task[AiTalkResult] | None = None

    def _transcriber(self, **options: Any) -> FakeTranscriber:
        self.transcriber_options = options
        return self.transcriber

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.session.run())

    def say(self, *events: TranscriberEvent) -> None:
        for event in events:
            self.transcriber.events.put_nowait(event)

    async def spoken(self, count: int) -> None:
        """Wait until ``count`` sentences were sent to be played, then let them all finish."""
        async with asyncio.timeout(5):
            while len(self.endpoint.playing) < count:
                await asyncio.sleep(0.01)
        self.endpoint.finish_all()

    async def result(self) -> AiTalkResult:
        assert self.task is not None
        async with asyncio.timeout(5):
            return await self.task

    async def messages(self) -> list[tuple[str, str]]:
        async with self.platform.store.session() as session:
            rows = (await session.scalars(select(AiMessage).where(AiMessage.aicall_id == self.session.id))).all()
        return [(m.role, m.content) for m in sorted(rows, key=lambda m: m.tm_create)]

    async def status(self) -> str:
        async with self.platform.store.session() as session:
            row = await session.get(AiCall, self.session.id)
        assert row is not None
        return row.status


def said(text: str) -> Utterance:
    return Utterance(text, 0.0, 1.0, 10.0, final=True)


async def settled() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def rig(platform: Platform) -> Callable[..., Rig]:
    return lambda model, **ai: Rig(platform, model, **ai)


async def test_greets_answers_and_stops_when_the_model_calls_stop_service(rig: Callable[..., Rig]) -> None:
    model = FakeModel(
        [LlmText("Hello, "), LlmText("bakery. How can I help?")],
        [LlmText("Goodbye."), LlmToolCall("call_1", "stop_service", "{}")],
    )
    r = rig(model, tool_names=["stop_service"])
    r.start()
    await r.spoken(2)  # "Hello, bakery." and "How can I help?"
    r.say(SpeechBoundary("started", 0.0), said("That is all, thanks."))
    await r.spoken(3)
    result = await r.result()
    assert result.stop_flow is False and result.connect == ()
    assert result.variables["voipbin.aicall.id"] == r.session.id
    assert await r.messages() == [
        ("assistant", "Hello, bakery. How can I help?"),
        ("user", "That is all, thanks."),
        ("assistant", "Goodbye."),
        ("tool", '{"result": "success"}'),
    ]
    assert model.tools[0] == ["stop_service"] and "You sell bread." in model.asked[0][0]["content"]
    assert await r.status() == "terminated" and model.closed


async def test_barge_in_cancels_playback_and_generation_and_keeps_what_was_heard(rig: Callable[..., Rig]) -> None:
    model = FakeModel([LlmText("Hi.")], [LlmText("We have rye. "), LlmText("And spelt. And more"), HOLD], [LlmText("Sure.")])
    r = rig(model)
    r.start()
    await r.spoken(1)
    r.say(said("What bread do you have?"))
    async with asyncio.timeout(5):
        while len(r.endpoint.playing) < 3:
            await asyncio.sleep(0.01)
    r.endpoint.playing[1].done.set_result("finished")  # "We have rye." was heard; "And spelt." is playing
    await settled()
    r.say(SpeechBoundary("started", 0.0))  # the reply is still streaming when the caller cuts in
    await settled()
    assert r.endpoint.playing[2:] == r.endpoint.cancelled  # cut off at once
    assert model.cancelled == 1
    r.say(said("Do you have white bread?"))
    await r.spoken(4)
    await r.session.terminate()
    await r.result()
    assert ("assistant", "We have rye.") in await r.messages()
    assert not any("spelt" in content for _, content in await r.messages())


async def test_connect_call_and_set_variables_become_the_result(rig: Callable[..., Rig]) -> None:
    model = FakeModel(
        [LlmToolCall("c1", "set_variables", '{"variables": {"order.size": "large", "voipbin.call.id": "x"}}')],
        [LlmToolCall("c2", "set_variables", '{"variables": {"order.size": "large"}}')],
        [LlmText("Putting you through."), LlmToolCall("c3", "connect_call", '{"destination": "2001"}')],
    )
    r = rig(model, tool_names=["all"])
    r.start()
    await r.spoken(1)
    result = await r.result()
    assert result.connect == ({"type": "extension", "target": "2001"},)
    assert result.variables["order.size"] == "large" and "voipbin.call.id" not in result.variables
    assert "not voipbin.*" in model.asked[1][-1]["content"]  # the refused call was reported to the model


async def test_vad_config_start_secs_is_how_much_voice_makes_a_barge_in(rig: Callable[..., Rig]) -> None:
    r = rig(FakeModel([LlmText("Hi.")]), vad_config={"start_secs": 0.3})
    r.start()
    await r.spoken(1)
    await r.session.terminate()
    await r.result()
    assert r.transcriber_options["boundaries"] is True and r.transcriber_options["start_ms"] == 300


async def test_a_model_that_fails_ends_the_ai_s_part(rig: Callable[..., Rig]) -> None:
    r = rig(FakeModel(LlmError("the model server answered 401 (invalid key?)")))
    r.start()
    await r.result()
    assert await r.status() == "terminated"


async def test_injected_messages_reach_the_conversation(rig: Callable[..., Rig]) -> None:
    model = FakeModel([LlmText("Hi.")], [LlmText("Yes, we are open.")])
    r = rig(model)
    r.start()
    await r.spoken(1)
    stored = await r.session.inject("user", "Are you open?")
    assert (stored.role, stored.content, stored.direction) == ("user", "Are you open?", "incoming")
    await r.spoken(2)
    await r.session.terminate()
    await r.result()
    assert model.asked[1][-1] == {"role": "user", "content": "Are you open?"}
