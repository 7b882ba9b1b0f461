"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` as OpenAI does: with ``"stream": true`` as Server-Sent
Events of ``chat.completion.chunk`` objects ending in ``data: [DONE]`` (text word by word, tool
call arguments in several pieces), otherwise as one ``chat.completion``. Each request takes the
next :class:`Scripted` reply. Plain HTTP/1.1 on ``asyncio.start_server``, one request per
connection, so a client that closes its stream early is seen at once (``cancelled``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


@dataclass(frozen=True)
class Scripted:
    text: str = ""  # streamed word by word
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, arguments), arguments in several pieces
    status: int = 200  # non-200: an OpenAI-style error JSON with that status
    delay_s: float | None = None  # overrides first_token_delay_s for this reply


DEFAULT_REPLY = Scripted(text="All right.")


class FakeLlm:
    def __init__(self, *, first_token_delay_s: float = 0.0, token_interval_s: float = 0.0) -> None:
        self.first_token_delay_s = first_token_delay_s
        self.token_interval_s = token_interval_s
        self.url = ""
        self.requests: list[dict[str, Any]] = []  # every request body, in order
        self.cancelled = 0  # streams the client closed before the reply was complete
        self._script: deque[Scripted] = deque()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def script(self, *replies: Scripted) -> None:
        """Queue replies, served in order, one per request; after them, DEFAULT_REPLY."""
        self._script.extend(replies)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # --- one connection ---------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client gone or speaking nonsense: nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.rstrip("\r\n").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        if not 0 <= length <= MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(length)
        if (method, path) != ("POST", "/v1/chat/completions"):
            await _send_json(writer, 404, _error(404, f"no route {method} {path}"))
            return
        request = json.loads(body)
        self.requests.append(request)
        reply = self._script.popleft() if self._script else DEFAULT_REPLY
        await asyncio.sleep(self.first_token_delay_s if reply.delay_s is None else reply.delay_s)
        if reply.status != 200:
            # Echo the credential, as some servers do ("Incorrect API key provided: sk-..."): the
            # client must not pass it on.
            message = f"Incorrect API key provided: {headers.get('authorization', '')}"
            await _send_json(writer, reply.status, _error(reply.status, message))
        elif request.get("stream"):
            await self._stream(reader, writer, request, reply)
        else:
            await _send_json(writer, 200, _completion(request, reply))

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any], reply: Scripted
    ) -> None:
        events = [json.dumps(_chunk(request, delta, finish)) for delta, finish in _deltas(reply)]
        events.append("[DONE]")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for number, event in enumerate(events):
            if number:
                await asyncio.sleep(self.token_interval_s)
            if reader.at_eof():  # the client closed its end: the reply was abandoned
                self.cancelled += 1
                return
            data = f"data: {event}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            try:
                await writer.drain()
            except ConnectionError:
                self.cancelled += 1
                return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _deltas(reply: Scripted) -> list[tuple[dict[str, Any], str | None]]:
    """The stream's deltas, each with its finish_reason: role, words, tool call pieces, the end."""
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": word}, None) for word in re.findall(r"\S+\s*", reply.text)]
    for index, (name, arguments) in enumerate(reply.tool_calls):
        opening = {"index": index, "id": f"call_fake{index}", "type": "function"}
        deltas.append(({"tool_calls": [{**opening, "function": {"name": name, "arguments": ""}}]}, None))
        text = json.dumps(arguments)
        step = max(1, len(text) // 3)
        for start in range(0, len(text), step):
            piece = {"index": index, "function": {"arguments": text[start : start + step]}}
            deltas.append(({"tool_calls": [piece]}, None))
    deltas.append(({}, "tool_calls" if reply.tool_calls else "stop"))
    return deltas


def _chunk(request: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(request: dict[str, Any], reply: Scripted) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_fake{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _error(status: int, message: str) -> dict[str, Any]:
    code = "invalid_api_key" if status == 401 else "scripted_error"
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


async def _send_json(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    reason = _REASONS.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
