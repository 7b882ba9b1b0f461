"""ElevenLabs TTS against a local fake of its HTTP streaming endpoint (chunked raw PCM)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import soxr

from tests.speech.audio import RATE
from tests.speech.fakes import fake_servers
from voipbin.speech import EspeakTts, TtsCache, TtsConfigError, TtsError, TtsService
from voipbin.speech.cloud.elevenlabs import ADAM, RACHEL, ElevenLabsTts

KEY = "sk_test_4f1d2c3b5a6e7f8091a2b3c4d5e6f7a8"
TEXT = "Thank you for calling. Please hold."


def chirp16k(seconds: float) -> bytes:
    """A rising tone: resampled out of order, it would not match the one-shot resampling."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * (200 + 1200 * t) * t) * 12000).astype("<i2").tobytes()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeElevenLabs:
    """``POST /v1/text-to-speech/{voice}/stream`` on 127.0.0.1, answering like ElevenLabs.

    200: ``pieces`` as HTTP chunks; with ``hold``, the rest only after ``release`` is set.
    Any other ``status``: ``error`` as a JSON body.
    """

    pieces: list[bytes] = field(default_factory=list)
    status: int = 200
    error: dict[str, object] = field(default_factory=dict)
    hold: bool = False
    requests: list[Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await self._read(reader))
            if self.status == 200:
                await self._stream(writer)
            else:
                body = json.dumps(self.error).encode()
                writer.write(
                    f"HTTP/1.1 {self.status} Refused\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                )
            await writer.drain()
        finally:
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Request:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *lines = head.strip().split("\r\n")
        method, target, _version = request_line.split(" ")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        return Request(method, parts.path, parse_qs(parts.query), headers, body)

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/pcm\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        for index, piece in enumerate(self.pieces):
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            if index == 0 and self.hold:
                await self.release.wait()
        writer.write(b"0\r\n\r\n")
        self.finished.set()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[FakeElevenLabs]]]:
    async with fake_servers(FakeElevenLabs) as start:
        yield start


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in pieces of ``sizes`` (odd ones split samples), then the rest."""
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(data[offset : offset + size])
        offset += size
    return [*pieces, data[offset:]]


async def test_streamed_pcm_arrives_resampled_in_order_from_the_documented_request(
    serve: Callable[..., Awaitable[FakeElevenLabs]],
) -> None:
    source = chirp16k(1.0)
    fake = await serve(pieces=split(source, [8000, 1001, 777, 3333, 6]))
    engine = ElevenLabsTts(KEY, base_url=fake.url)

    chunks = [chunk async for chunk in engine.stream(TEXT)]

    assert len(chunks) > 1 and all(len(chunk) % 2 == 0 for chunk in chunks)
    got = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.int32)
    whole = soxr.resample(np.frombuffer(source, dtype="<i2"), 16000, RATE).astype(np.int32)
    assert len(got) == len(whole) == RATE
    assert np.abs(got - whole).max() <= 8  # streaming and one-shot resampling agree to a few LSB
    [request] = fake.requests  # the whole text in one request: ElevenLabs streams it
    assert (request.method, request.path) == ("POST", f"/v1/text-to-speech/{RACHEL}/stream")
    assert request.query == {"output_format": ["pcm_16000"]}
    assert request.headers["xi-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"text": TEXT, "model_id": "eleven_flash_v2_5"}


async def test_voice_and_gender_choose_the_voice_id(serve: Callable[..., Awaitable[FakeElevenLabs]]) -> None:
    fake = await serve(pieces=[bytes(3200)])
    engine = ElevenLabsTts(KEY, base_url=fake.url)

    await engine.synthesize("Hi.", gender="male")
    await engine.synthesize("Hi.", voice="AZnzlk1XvdvUeBnXmlld")
    for voice in ("../../v1/user", "a b", "x" * 65):
        with pytest.raises(TtsConfigError, match="not an ElevenLabs voice id"):
            await engine.synthesize("Hi.", voice=voice)
    with pytest.raises(TtsConfigError, match="gender"):
        await engine.synthesize("Hi.", gender="robot")

    assert [r.path for r in fake.requests] == [
        f"/v1/text-to-speech/{ADAM}/stream",
        "/v1/text-to-speech/AZnzlk1XvdvUeBnXmlld/stream",
    ]


async def test_first_chunk_plays_before_elevenlabs_has_sent_everything(
    serve: Callable[..., Awaitable[FakeElevenLabs]],
) -> None:
    fake = await serve(pieces=[chirp16k(0.25), chirp16k(0.5)], hold=True)
    chunks = ElevenLabsTts(KEY, base_url=fake.url).stream(TEXT)

    first = await asyncio.wait_for(anext(chunks), 5)  # waits forever if the engine buffers the answer

    assert first and not fake.finished.is_set()
    fake.release.set()
    rest = [chunk async for chunk in chunks]
    assert fake.finished.is_set()
    assert len(first) + sum(map(len, rest)) == int(0.75 * RATE) * 2


async def test_a_refused_key_names_the_setting_and_the_key_appears_nowhere(
    serve: Callable[..., Awaitable[FakeElevenLabs]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await serve(status=401, error={"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})

    with pytest.raises(TtsError) as refused:
        await ElevenLabsTts(KEY, base_url=fake.url).synthesize(TEXT)

    assert "VOIPBIN_ELEVENLABS_API_KEY" in str(refused.value)
    assert "Invalid API key" in str(refused.value)
    assert "/v1/text-to-speech/" in caplog.text  # the request was logged (httpx, DEBUG and INFO) ...
    assert KEY not in caplog.text and KEY not in str(refused.value)  # ... without its key


async def test_an_error_echoing_the_key_is_redacted(serve: Callable[..., Awaitable[FakeElevenLabs]]) -> None:
    fake = await serve(status=400, error={"detail": {"message": f"key {KEY} lacks text_to_speech"}})

    with pytest.raises(TtsError, match="HTTP 400: key <key> lacks text_to_speech") as refused:
        await ElevenLabsTts(KEY, base_url=fake.url).synthesize(TEXT)
    assert KEY not in str(refused.value)


async def test_rate_limiting_is_explained(serve: Callable[..., Awaitable[FakeElevenLabs]]) -> None:
    fake = await serve(status=429, error={"detail": {"message": "too_many_concurrent_requests"}})

    with pytest.raises(TtsError, match=r"rate limiting this account \(HTTP 429\).*too_many_concurrent_requests"):
        await ElevenLabsTts(KEY, base_url=fake.url).synthesize(TEXT)


async def test_an_unreachable_service_is_a_tts_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(TtsError, match=f"ElevenLabs at http://127.0.0.1:{port} failed: ConnectError"):
        await ElevenLabsTts(KEY, base_url=f"http://127.0.0.1:{port}").synthesize(TEXT)


async def test_the_service_speaks_with_elevenlabs_only_when_its_key_is_set(
    serve: Callable[..., Awaitable[FakeElevenLabs]],
) -> None:
    fake = await serve(pieces=[chirp16k(0.5)])
    keyed = TtsService(
        cache=TtsCache(),
        environ={"VOIPBIN_ELEVENLABS_API_KEY": KEY, "VOIPBIN_ELEVENLABS_BASE_URL": fake.url},
    )

    engine = keyed.engine_for("ElevenLabs")
    assert isinstance(engine, ElevenLabsTts) and engine.base_url == fake.url
    assert KEY not in repr(engine)
    first = await keyed.synthesize("Hello.", provider="elevenlabs")
    again = await keyed.synthesize("Hello.", provider="elevenlabs")  # a cache hit: no second request
    assert first == again and len(first) == int(0.5 * RATE) * 2
    assert len(fake.requests) == 1
    espeak = EspeakTts()
    unkeyed = TtsService(espeak=espeak, environ={"VOIPBIN_ELEVENLABS_BASE_URL": fake.url})
    assert unkeyed.engine_for("elevenlabs") is espeak  # a base URL without a key changes nothing
    assert ElevenLabsTts.from_environ({"VOIPBIN_ELEVENLABS_API_KEY": KEY}).base_url == "https://api.elevenlabs.io"
