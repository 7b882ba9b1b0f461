"""Streaming chat with any server speaking OpenAI's chat completions: OpenAI, Ollama, llama.cpp's
server, vLLM, Groq, OpenRouter, Gemini's OpenAI endpoint and the like.

:class:`OpenAiChat` turns one request into :data:`LlmDelta` values: text as it streams (so the
first sentence can be spoken while the rest is generated) and each tool call once complete. Every
failure becomes :class:`LlmError`, whose message may be shown to the customer: it names the status
or the host, never the key, the request or what the server echoed back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from voipbin.ai.config import AiConfigError, checked_engine_model

if TYPE_CHECKING:
    import httpx2

MAX_TOKENS: Final = 4096
"""The most tokens a reply may ask for: a spoken answer never needs more, and a bill must not run away."""

_BASE_URLS: Final = {
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
_KEYLESS: Final = frozenset({"ollama"})

# What of the AI's free ``parameter`` object a chat request may carry, and in which range.
_NUMBER_RANGES: Final = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_TOKEN_LIMITS: Final = ("max_tokens", "max_completion_tokens")
_MAX_STOPS: Final = 4  # OpenAI's limit on stop sequences

# An error ``code`` a server sends (``invalid_api_key``, ``context_length_exceeded``): an
# identifier, so it cannot carry a key or a sentence quoting the request.
_ERROR_CODE: Final = re.compile(r"[a-z][a-z0-9_]{2,63}")
_MALFORMED: Final = "the model server sent a malformed stream"
_STATUS_HINTS: Final = {
    400: "the request was refused",
    401: "invalid key?",
    402: "out of credit?",
    403: "the key may not use this model?",
    408: "it timed out",
    413: "the conversation is too long",
    422: "the request was refused",
    429: "rate limited or out of quota",
}


@dataclass(frozen=True)
class LlmText:
    """A piece of the reply's text, as streamed."""

    text: str


@dataclass(frozen=True)
class LlmToolCall:
    """One complete tool call; ``arguments`` is the JSON text as the model wrote it."""

    call_id: str
    name: str
    arguments: str


LlmDelta = LlmText | LlmToolCall


class LlmError(Exception):
    """The model could not answer; the message is fit to show a customer."""


@dataclass(frozen=True)
class LlmEndpoint:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)


class ChatModel(Protocol):
    def reply(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
    ) -> AsyncIterator[LlmDelta]:
        """The next assistant message for ``messages`` (OpenAI chat shape), as it streams.

        Cancelling the task that reads it (the caller barged in) ends the generation at once."""
        ...

    async def close(self) -> None: ...


def endpoint_for(engine_model: str, engine_key: str, environ: Mapping[str, str]) -> LlmEndpoint:
    """Where VoIPBIN's ``<target>.<model>`` is served, and with which key: the AI's own
    ``engine_key``, else the operator's ``VOIPBIN_LLM_<TARGET>_KEY``.

    The base URL is the target's default or the operator's ``VOIPBIN_LLM_<TARGET>_URL``; it never
    comes from the customer, so it needs no egress (SSRF) check: an operator may well point it at a
    server on their own network. ``local`` runs in process and has no endpoint (ValueError)."""
    engine_model = checked_engine_model(engine_model)
    target, _, model = engine_model.partition(".")
    if target not in _BASE_URLS:
        raise ValueError(f"engine_model {engine_model} runs in process, not over the OpenAI protocol")
    setting = f"VOIPBIN_LLM_{target.upper()}"
    base_url = environ.get(f"{setting}_URL", "").strip() or _BASE_URLS[target]
    api_key = engine_key.strip() or environ.get(f"{setting}_KEY", "").strip()
    if not api_key and target not in _KEYLESS:
        raise AiConfigError(f"engine_model {engine_model} needs a key: set the AI's engine_key or {setting}_KEY")
    return LlmEndpoint(base_url.rstrip("/"), model, api_key)


def _request_options(parameter: Mapping[str, Any]) -> dict[str, Any]:
    """What of the AI's ``parameter`` goes into a chat request: known sampling options of the
    right type and range; anything else is left out rather than sent to a server that may refuse it."""
    options = {name: _checked_option(name, value) for name, value in parameter.items()}
    return {name: value for name, value in options.items() if value is not None}


def _checked_option(name: str, value: object) -> object | None:
    if isinstance(value, bool):
        return None  # a JSON true is not the number 1
    if name in _NUMBER_RANGES:
        low, high = _NUMBER_RANGES[name]
        return value if isinstance(value, int | float) and low <= value <= high else None
    if name in _TOKEN_LIMITS:
        return min(value, MAX_TOKENS) if isinstance(value, int) and value > 0 else None
    if name == "seed":
        return value if isinstance(value, int) else None
    if name == "stop":
        stops = [value] if isinstance(value, str) else value
        valid = (
            isinstance(stops, list) and 0 < len(stops) <= _MAX_STOPS and all(isinstance(s, str) and s for s in stops)
        )
        return value if valid else None
    return None


class OpenAiChat:
    """A :class:`ChatModel` on one OpenAI-compatible endpoint."""

    def __init__(
        self,
        endpoint: LlmEndpoint,
        *,
        parameter: Mapping[str, Any] = {},
        timeout_s: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._options = _request_options(parameter)
        self._host = urlsplit(endpoint.base_url).netloc.rpartition("@")[2] or "(no host)"
        self._timeout_s = timeout_s
        self._owns_client = http_client is None  # a client the caller lent stays theirs to close
        self._client = openai.AsyncOpenAI(
            # The library insists on a key; a keyless server (Ollama) ignores this one.
            api_key=endpoint.api_key or "unused",
            base_url=endpoint.base_url,
            timeout=timeout_s,
            max_retries=0,  # a caller on the line cannot wait out retries: fail, and let the AI say so
            # openai runs on httpx2 and takes an httpx client as well (checked when it is built).
            http_client=cast("httpx2.AsyncClient | None", http_client),
        )

    async def reply(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
    ) -> AsyncGenerator[LlmDelta, None]:
        options = dict(self._options)
        if tools:
            options["tools"] = list(tools)  # never empty: a server without tool support refuses the key
        calls = _ToolCalls()
        try:
            stream = await self._client.chat.completions.create(
                model=self._endpoint.model,
                messages=cast("list[ChatCompletionMessageParam]", list(messages)),
                stream=True,
                **options,
            )
            async with stream:  # closed however the loop ends: cancelled by a barge-in, or an error
                async for chunk in stream:
                    for delta in _read(chunk, calls):
                        yield delta
            for call in calls.finish():
                yield call
        # ``from None`` throughout: the library's exception quotes the server's body, which may
        # echo the key, and would follow this one into the logs.
        except openai.APIStatusError as exc:
            raise LlmError(self._status_message(exc)) from None
        except openai.APITimeoutError:
            raise LlmError(f"the model server at {self._host} did not answer within {self._timeout_s:g} s") from None
        except openai.APIConnectionError:
            raise LlmError(f"cannot reach the model server at {self._host}") from None
        except openai.APIError as exc:  # an error event in the middle of the stream
            raise LlmError(self._with_code("the model server failed mid-reply", exc)) from None
        except ValueError:  # a chunk that is not JSON
            raise LlmError(_MALFORMED) from None

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    def _status_message(self, exc: openai.APIStatusError) -> str:
        status = exc.status_code
        if status == 404:
            hint = f"no model {self._endpoint.model!r} there?"
        else:
            hint = _STATUS_HINTS.get(status, "the server failed" if status >= 500 else "refused")
        return self._with_code(f"the model server answered {status} ({hint})", exc)

    def _with_code(self, message: str, exc: openai.APIError) -> str:
        code = exc.code
        if code and _ERROR_CODE.fullmatch(code) and not (self._endpoint.api_key and self._endpoint.api_key in code):
            return f"{message}: {code}"
        return message


@dataclass
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _ToolCalls:
    """Tool calls assembled from their streamed pieces: the id and name come first, the arguments
    in pieces, all under the call's index."""

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._by_index: dict[int | None, _PartialCall] = {}

    def add(self, piece: ChoiceDeltaToolCall) -> None:
        # Gemini sends no index (None here); Ollama sends index 0 for every call. Either way a new
        # id at an index already taken starts a new call, and a piece without an id continues one.
        index = piece.index if isinstance(piece.index, int) else None
        call = self._by_index.get(index)
        if call is None or (piece.id and call.call_id and piece.id != call.call_id):
            call = self._by_index[index] = _PartialCall()
            self._calls.append(call)
        if piece.id:
            call.call_id = _checked_str(piece.id)
        if piece.function is not None:
            if piece.function.name:
                call.name = _checked_str(piece.function.name)  # some servers repeat it in every piece
            if piece.function.arguments:
                call.arguments.append(_checked_str(piece.function.arguments))

    def finish(self) -> list[LlmToolCall]:
        """The calls assembled so far, complete; the next piece starts afresh."""
        calls, self._calls, self._by_index = self._calls, [], {}
        if any(not call.name for call in calls):
            raise LlmError("the model server sent a tool call without a name")
        return [LlmToolCall(c.call_id or f"call_{secrets.token_hex(12)}", c.name, "".join(c.arguments)) for c in calls]


def _read(chunk: ChatCompletionChunk, calls: _ToolCalls) -> list[LlmDelta]:
    """The deltas of one streamed chunk. The library builds chunks without checking their shape,
    so one that is not a chunk fails here, as LlmError."""
    try:
        out: list[LlmDelta] = []
        for choice in chunk.choices or ():  # usage and content-filter chunks carry no choice
            delta = choice.delta
            # Text only: a reasoning model's ``reasoning_content`` is not for the caller's ears.
            if delta.content:
                out.append(LlmText(_checked_str(delta.content)))
            for piece in delta.tool_calls or ():
                calls.add(piece)
            if choice.finish_reason == "tool_calls":
                out += calls.finish()
        return out
    except (AttributeError, TypeError):
        raise LlmError(_MALFORMED) from None


def _checked_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value
