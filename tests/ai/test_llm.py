"""OpenAiChat against a scripted OpenAI-compatible server, and where each engine_model is served."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from tests.ai.fake_llm import FakeLlm, Scripted
from tests.speech.fakes import fake_servers
from voipbin.ai.config import ENGINE_TARGETS, AiConfigError
from voipbin.ai.llm import ChatModel, LlmDelta, LlmEndpoint, LlmError, LlmText, LlmToolCall, OpenAiChat, endpoint_for

KEY = "sk-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"})
TOOLS = tuple(
    {"type": "function", "function": {"name": name, "description": name, "parameters": {"type": "object"}}}
    for name in ("set_variables", "stop_service")
)

StartFake = Callable[..., Awaitable[FakeLlm]]


@pytest.fixture
async def start_fake() -> AsyncIterator[StartFake]:
    async with fake_servers(FakeLlm) as start:
        yield start


@pytest.fixture
async def fake(start_fake: StartFake) -> FakeLlm:
    return await start_fake()


async def collect(
    chat: ChatModel, messages: Sequence[Mapping[str, Any]] = MESSAGES, tools: Sequence[Mapping[str, Any]] = ()
) -> list[LlmDelta]:
    try:
        return [delta async for delta in chat.reply(messages, tools)]
    finally:
        await chat.close()


def chat_on(fake: FakeLlm, **options: Any) -> OpenAiChat:
    return OpenAiChat(LlmEndpoint(fake.url, "fake-model", KEY), **options)


async def wait_for_cancelled(fake: FakeLlm, count: int) -> None:
    for _ in range(100):
        if fake.cancelled >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the fake saw {fake.cancelled} closed streams, not {count}")


# --- streaming ----------------------------------------------------------------


async def test_text_streams_in_order_without_a_tools_key(fake: FakeLlm) -> None:
    fake.script(Scripted(text="Hello there. How can I help you today?"))
    deltas = await collect(chat_on(fake))
    assert all(isinstance(delta, LlmText) for delta in deltas)
    assert [d.text for d in deltas if isinstance(d, LlmText)] == ["Hello ", "there. ", "How ", "can ", "I ", "help ", "you ", "today?"]  # fmt: skip
    [request] = fake.requests
    assert request["model"] == "fake-model"
    assert request["messages"] == list(MESSAGES)
    assert request["stream"] is True
    assert "tools" not in request  # a server without tool support must not see the key
    assert fake.cancelled == 0  # a stream read to its end is no abandoned one


async def test_two_tool_calls_are_reassembled_from_split_pieces(fake: FakeLlm) -> None:
    arguments = {"variables": {"customer.name": "Ada", "order": "12345"}}
    fake.script(Scripted(text="One moment.", tool_calls=(("set_variables", arguments), ("stop_service", {}))))
    deltas = await collect(chat_on(fake), tools=TOOLS)
    assert deltas[:2] == [LlmText("One "), LlmText("moment.")]
    calls = deltas[2:]
    assert [(c.call_id, c.name) for c in calls if isinstance(c, LlmToolCall)] == [
        ("call_fake0", "set_variables"),
        ("call_fake1", "stop_service"),
    ]
    assert [json.loads(c.arguments) for c in calls if isinstance(c, LlmToolCall)] == [arguments, {}]
    assert fake.requests[0]["tools"] == list(TOOLS)


async def test_only_known_parameters_of_the_right_type_and_range_are_sent(fake: FakeLlm) -> None:
    parameter = {
        "temperature": 0.3,
        "top_p": 2,  # out of range
        "max_tokens": 100_000,  # bounded
        "max_completion_tokens": 50,
        "presence_penalty": "high",  # not a number
        "frequency_penalty": -0.5,
        "seed": True,  # a boolean is not a seed
        "stop": ["\n\n", "Caller:"],
        "tool_choice": "required",  # not on the list
        "base_url": "http://169.254.169.254/",
        "model": "something-else",
        "stream": False,
    }
    await collect(chat_on(fake, parameter=parameter))
    [request] = fake.requests
    sent = {name: value for name, value in request.items() if name not in {"model", "messages", "stream"}}
    assert sent == {
        "temperature": 0.3,
        "max_tokens": 4096,
        "max_completion_tokens": 50,
        "frequency_penalty": -0.5,
        "stop": ["\n\n", "Caller:"],
    }
    assert (request["model"], request["stream"]) == ("fake-model", True)


async def test_a_keyless_ollama_is_reached_through_the_operators_url(fake: FakeLlm) -> None:
    endpoint = endpoint_for("ollama.llama3.2", "", {"VOIPBIN_LLM_OLLAMA_URL": fake.url})
    assert (endpoint.model, endpoint.api_key) == ("llama3.2", "")
    fake.script(Scripted(text="Hi."))
    assert await collect(OpenAiChat(endpoint)) == [LlmText("Hi.")]


async def test_the_fake_answers_without_streaming_too(fake: FakeLlm) -> None:
    fake.script(Scripted(text="Done.", tool_calls=(("stop_service", {}),)))
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{fake.url}/chat/completions", json={"model": "m", "messages": []})
    [choice] = answer.json()["choices"]
    assert choice["message"]["content"] == "Done."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "stop_service", "arguments": "{}"}
    assert choice["finish_reason"] == "tool_calls"


# --- failures -------------------------------------------------------------------


async def test_a_refused_key_is_reported_without_the_key(fake: FakeLlm) -> None:
    fake.script(Scripted(status=401), Scripted(status=401))
    # The fake echoes the credential, as some servers do: the raw answer has the key in it ...
    async with httpx.AsyncClient() as client:
        raw = await client.post(f"{fake.url}/chat/completions", json={}, headers={"Authorization": f"Bearer {KEY}"})
    assert raw.status_code == 401 and KEY in raw.text
    # ... the error does not, nor anything chained to it that a traceback in a log would show.
    with pytest.raises(LlmError) as caught:
        await collect(chat_on(fake))
    assert str(caught.value) == "the model server answered 401 (invalid key?): invalid_api_key"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert KEY not in repr(LlmEndpoint(fake.url, "m", KEY))


async def test_a_server_failure_and_an_unknown_model_are_named(fake: FakeLlm) -> None:
    fake.script(Scripted(status=500), Scripted(status=404))
    with pytest.raises(LlmError, match=r"^the model server answered 500 \(the server failed\): scripted_error$"):
        await collect(chat_on(fake))
    with pytest.raises(LlmError, match=r"^the model server answered 404 \(no model 'fake-model' there\?\)"):
        await collect(chat_on(fake))
    assert len(fake.requests) == 2  # max_retries=0: each failure is one request


async def test_a_refused_connection_names_the_host_only() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    chat = OpenAiChat(LlmEndpoint(f"http://user:pw@127.0.0.1:{port}/v1?token=x", "m", KEY))
    with pytest.raises(LlmError) as caught:
        await collect(chat)
    assert str(caught.value) == f"cannot reach the model server at 127.0.0.1:{port}"


async def test_a_silent_server_times_out(fake: FakeLlm) -> None:
    fake.script(Scripted(text="Too late.", delay_s=2.0))
    started = time.monotonic()
    with pytest.raises(LlmError, match=r"did not answer within 0.3 s$"):
        await collect(chat_on(fake, timeout_s=0.3))
    assert time.monotonic() - started < 1.5


# --- the caller barges in ---------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_stream_at_once(start_fake: StartFake) -> None:
    fake = await start_fake(token_interval_s=0.05)
    fake.script(Scripted(text=" ".join(["word"] * 200)))  # ten seconds of reply
    chat = chat_on(fake)
    first = asyncio.Event()
    received: list[LlmDelta] = []

    async def consume() -> None:
        async for delta in chat.reply(MESSAGES):
            received.append(delta)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_cancelled(fake, 1)
    assert time.monotonic() - started < 1.0
    assert len(received) < 20
    await chat.close()


async def test_closing_the_reply_early_closes_the_stream(start_fake: StartFake) -> None:
    fake = await start_fake(token_interval_s=0.05)
    fake.script(Scripted(text=" ".join(["word"] * 200)))
    chat = chat_on(fake)
    async with aclosing(chat.reply(MESSAGES)) as deltas:
        async for _ in deltas:
            break
    await wait_for_cancelled(fake, 1)
    await chat.close()


# --- what other servers send -------------------------------------------------------


def sse_client(*events: dict[str, Any] | str) -> httpx.AsyncClient:
    """An httpx client whose every request streams ``events`` back (a dict as a chunk's JSON)."""
    body = "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def call(name: str | None, arguments: str, *, index: int | None, call_id: str | None = None) -> dict[str, Any]:
    piece: dict[str, Any] = {"function": {"arguments": arguments, **({"name": name} if name else {})}}
    if index is not None:
        piece["index"] = index
    if call_id is not None:
        piece["id"] = call_id
    return {"tool_calls": [piece]}


async def on_lent_client(client: httpx.AsyncClient) -> list[LlmDelta]:
    async with client:
        deltas = await collect(OpenAiChat(LlmEndpoint("http://llm.test/v1", "m"), http_client=client))
        assert not client.is_closed  # a lent client stays its owner's to close
    return deltas


async def test_gemini_calls_without_an_index_and_ollama_calls_all_at_index_0() -> None:
    gemini = sse_client(
        chunk(call("get_variables", "{}", index=None, call_id="g1")),
        chunk(call("set_variables", '{"a":', index=None, call_id="g2")),
        chunk(call(None, ' "1"}', index=None)),
        chunk({}, "stop"),  # Gemini ends a tool call with "stop"
    )
    assert await on_lent_client(gemini) == [
        LlmToolCall("g1", "get_variables", "{}"),
        LlmToolCall("g2", "set_variables", '{"a": "1"}'),
    ]
    ollama = sse_client(
        chunk(call("get_variables", "{}", index=0, call_id="o1")),
        chunk(call("stop_service", "{}", index=0, call_id="o2")),
        chunk({}, "tool_calls"),
    )
    assert await on_lent_client(ollama) == [
        LlmToolCall("o1", "get_variables", "{}"),
        LlmToolCall("o2", "stop_service", "{}"),
    ]


async def test_a_call_without_an_id_gets_one() -> None:
    [made] = await on_lent_client(sse_client(chunk(call("stop_service", "{}", index=0)), chunk({}, "tool_calls")))
    assert isinstance(made, LlmToolCall) and made.name == "stop_service"
    assert made.call_id.startswith("call_") and len(made.call_id) > len("call_")


@pytest.mark.parametrize(
    "event",
    [
        "{not json",
        json.dumps(chunk({"content": 5})),
        json.dumps({"choices": "nonsense"}),
        json.dumps(chunk(call(None, "{}", index=0, call_id="x"))),  # a call with no name
    ],
)
async def test_a_malformed_stream_is_an_llm_error(event: str) -> None:
    with pytest.raises(LlmError, match=r"^the model server sent (a malformed stream|a tool call without a name)$"):
        await on_lent_client(sse_client(event))


async def test_an_error_event_mid_stream_is_an_llm_error() -> None:
    error = {"error": {"message": f"overloaded, key {KEY}", "code": "server_overloaded"}}
    with pytest.raises(LlmError) as caught:
        await on_lent_client(sse_client(chunk({"content": "Hel"}), error))
    assert str(caught.value) == "the model server failed mid-reply: server_overloaded"


# --- where each engine_model is served ------------------------------------------------


def test_every_target_but_local_has_a_default_url() -> None:
    expected = {
        "openai": "https://api.openai.com/v1",
        "grok": "https://api.x.ai/v1",
        "groq": "https://api.groq.com/openai/v1",
        "openrouter": "https://openrouter.ai/api/v1",
        "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
        "mistral": "https://api.mistral.ai/v1",
        "deepseek": "https://api.deepseek.com/v1",
        "together": "https://api.together.xyz/v1",
        "ollama": "http://127.0.0.1:11434/v1",
    }
    assert set(expected) == set(ENGINE_TARGETS) - {"local"}
    for target, url in expected.items():
        assert endpoint_for(f"{target}.some-model", "k", {}) == LlmEndpoint(url, "some-model", "k")


def test_the_model_is_everything_after_the_first_dot() -> None:
    assert endpoint_for("openai.gpt-5.2", "k", {}).model == "gpt-5.2"
    assert endpoint_for("openrouter.meta-llama/llama-3.1-8b", "k", {}).model == "meta-llama/llama-3.1-8b"


def test_the_operator_overrides_urls_and_supplies_keys() -> None:
    environ = {"VOIPBIN_LLM_OPENAI_URL": "http://10.0.0.5:8000/v1/", "VOIPBIN_LLM_OPENAI_KEY": "operator-key"}
    assert endpoint_for("openai.gpt-5-mini", "", environ) == LlmEndpoint("http://10.0.0.5:8000/v1", "gpt-5-mini", "operator-key")  # fmt: skip
    assert endpoint_for("openai.gpt-5-mini", "customer-key", environ).api_key == "customer-key"
    assert endpoint_for("groq.llama-3.1-8b-instant", "k", environ).base_url == "https://api.groq.com/openai/v1"


def test_a_cloud_target_without_a_key_names_both_settings() -> None:
    with pytest.raises(AiConfigError) as caught:
        endpoint_for("openai.gpt-5-mini", "", {"VOIPBIN_LLM_GROQ_KEY": "not-this-one"})
    assert str(caught.value) == (
        "engine_model openai.gpt-5-mini needs a key: set the AI's engine_key or VOIPBIN_LLM_OPENAI_KEY"
    )


def test_local_and_unknown_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="in process"):
        endpoint_for("local.qwen2.5-0.5b", "", {})
    with pytest.raises(AiConfigError, match="must be <target>.<model>"):
        endpoint_for("anthropic.claude", "k", {})
