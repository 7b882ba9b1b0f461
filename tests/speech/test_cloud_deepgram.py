"""Deepgram live STT against a local fake of its streaming WebSocket API."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.speech.fakes import fake_servers
from voipbin.speech import SpeechService, Transcriber
from voipbin.speech.cloud.deepgram import DeepgramTranscriber
from voipbin.speech.stt import SpeechBoundary, TranscriberEvent, Utterance

KEY = "dg_test_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
FRAME = 320  # 20 ms of 8 kHz 16-bit PCM
FAKE_LOG = "tests.speech.fake_deepgram"  # the fake's own websockets log (it sees the key, as Deepgram does)
CLOSE_STREAM = json.dumps({"type": "CloseStream"})

Shape = tuple[Any, ...]


def results(text: str, start: float, duration: float, *, is_final: bool, speech_final: bool = False) -> dict[str, Any]:
    """A Deepgram ``Results`` message, trimmed to what a transcriber reads and a few fields beside."""
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": duration,
        "start": start,
        "is_final": is_final,
        "speech_final": speech_final,
        "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": []}]},
        "metadata": {"request_id": "fake"},
    }


def speech_started(timestamp: float) -> dict[str, Any]:
    return {"type": "SpeechStarted", "channel": [0, 1], "timestamp": timestamp}


METADATA = {"type": "Metadata", "request_id": "fake", "duration": 2.0, "channels": 1}

# Two is_final pieces make one utterance; interim hypotheses and a speech start come between.
CONVERSATION: list[tuple[int, dict[str, Any]]] = [
    (1 * FRAME, speech_started(0.5)),
    (2 * FRAME, results("hello", 0.4, 0.6, is_final=False)),
    (3 * FRAME, results("hello world", 0.4, 1.0, is_final=True)),
    (4 * FRAME, results("how are", 1.4, 0.5, is_final=False)),
    (5 * FRAME, results("how are you", 1.4, 0.8, is_final=True, speech_final=True)),
    (6 * FRAME, results("", 2.2, 0.5, is_final=True)),  # silence after it
]


@dataclass
class FakeDeepgram:
    """``/v1/listen`` on 127.0.0.1: sends each scripted message once that much audio has come in,
    ``at_close`` and a normal close on CloseStream (unless ``ignore_close``); ``drop`` aborts the
    connection once the script is sent; ``reject`` refuses the handshake with that status;
    ``gate`` holds the handshake until set."""

    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    at_close: list[dict[str, Any]] = field(default_factory=lambda: [METADATA])
    drop: bool = False
    ignore_close: bool = False
    reject: int = 0
    gate: asyncio.Event | None = None
    requests: list[Request] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    url: str = ""
    _server: Server | None = None

    @property
    def audio(self) -> bytes:
        return b"".join(message for message in self.received if isinstance(message, bytes))

    @property
    def texts(self) -> list[str]:
        return [message for message in self.received if isinstance(message, str)]

    async def start(self) -> None:
        logger = logging.getLogger(FAKE_LOG)
        self._server = await serve(self._serve, "127.0.0.1", 0, process_request=self._handshake, logger=logger)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.reject:
            return connection.respond(HTTPStatus(self.reject), "Invalid credentials.\n")
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        pending, audio = list(self.script), 0
        async for message in ws:
            self.received.append(message)
            audio += len(message) if isinstance(message, bytes) else 0
            while pending and pending[0][0] <= audio:
                await ws.send(json.dumps(pending.pop(0)[1]))
            if self.drop and not pending:
                ws.transport.abort()  # no close frame: the network or Deepgram failed
                return
            if message == CLOSE_STREAM and not self.ignore_close:
                for reply in self.at_close:
                    await ws.send(json.dumps(reply))
                await ws.close()
                return


@pytest.fixture
async def fake_deepgram() -> AsyncIterator[Callable[..., Awaitable[FakeDeepgram]]]:
    async with fake_servers(FakeDeepgram) as start:
        yield start


def shape(event: TranscriberEvent) -> Shape:
    if isinstance(event, SpeechBoundary):
        return ("boundary", event.kind, round(event.time, 3))
    return ("final" if event.final else "interim", event.text, round(event.start_time, 3), round(event.end_time, 3))


async def transcribe(transcriber: DeepgramTranscriber, audio: list[bytes]) -> list[TranscriberEvent]:
    for frame in audio:
        transcriber.feed(frame)
    transcriber.close()
    return await asyncio.wait_for(collect(transcriber), 10)


async def collect(transcriber: DeepgramTranscriber) -> list[TranscriberEvent]:
    return [event async for event in transcriber.results()]


def numbered_frames(count: int) -> list[bytes]:
    """Frames that differ, so their order on the wire shows."""
    return [bytes([index]) * FRAME for index in range(count)]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the transcriber's side logged (not the fake's own server log)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(FAKE_LOG))


async def test_the_documented_request_carries_the_audio_in_order_then_closestream(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await fake_deepgram()
    audio = numbered_frames(12)

    events = await transcribe(DeepgramTranscriber(KEY, language="en-US", base_url=fake.url), audio)

    assert events == []
    [request] = fake.requests
    assert urlsplit(request.path).path == "/v1/listen"
    assert parse_qs(urlsplit(request.path).query) == {
        "encoding": ["linear16"],
        "sample_rate": ["8000"],
        "channels": ["1"],
        "model": ["nova-2"],
        "language": ["en-US"],
        "interim_results": ["true"],
        "endpointing": ["300"],
        "vad_events": ["true"],
    }
    assert request.headers["Authorization"] == f"Token {KEY}"
    assert fake.audio == b"".join(audio)
    assert fake.texts == [CLOSE_STREAM] and fake.received[-1] == CLOSE_STREAM
    assert "Authorization" in caplog.text  # the fake's websockets logged the header at DEBUG ...
    assert KEY not in logged(caplog)  # ... and ours did not


async def test_with_interim_results_hypotheses_and_boundaries_come_before_the_final(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram(script=CONVERSATION)

    events = await transcribe(DeepgramTranscriber(KEY, interim=True, base_url=fake.url), numbered_frames(8))

    assert [shape(event) for event in events] == [
        ("boundary", "started", 0.5),
        ("interim", "hello", 0.4, 1.0),
        ("interim", "hello world how are", 0.4, 1.9),  # the utterance so far, not the piece alone
        ("boundary", "ended", 2.2),
        ("final", "hello world how are you", 0.4, 2.2),
    ]


async def test_without_interim_results_only_the_final_utterance_comes(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram(script=CONVERSATION)

    events = await transcribe(DeepgramTranscriber(KEY, base_url=fake.url), numbered_frames(8))

    assert [shape(event) for event in events] == [("final", "hello world how are you", 0.4, 2.2)]
    assert all(isinstance(event, Utterance) and event.decode_ms >= 0 for event in events)


async def test_with_boundaries_only_the_speech_edges_come_beside_the_final(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram(script=CONVERSATION)

    events = await transcribe(DeepgramTranscriber(KEY, boundaries=True, base_url=fake.url), numbered_frames(8))

    assert [shape(event) for event in events] == [
        ("boundary", "started", 0.5), ("boundary", "ended", 2.2), ("final", "hello world how are you", 0.4, 2.2),
    ]


async def test_pieces_deepgram_finalises_at_closestream_end_the_last_utterance(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram(
        script=[(FRAME, results("call me back", 0.2, 0.9, is_final=True))],
        at_close=[results("tomorrow", 1.1, 0.6, is_final=True), METADATA],
    )

    events = await transcribe(DeepgramTranscriber(KEY, interim=True, base_url=fake.url), numbered_frames(3))

    assert [shape(event) for event in events] == [
        ("boundary", "ended", 1.7),
        ("final", "call me back tomorrow", 0.2, 1.7),
    ]


async def test_a_dropped_connection_ends_results_cleanly(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]], caplog: pytest.LogCaptureFixture
) -> None:
    fake = await fake_deepgram(
        script=[
            (FRAME, results("first words", 0.0, 0.8, is_final=True, speech_final=True)),
            (2 * FRAME, results("and then", 0.8, 0.4, is_final=True)),
        ],
        drop=True,
    )
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url)
    for frame in numbered_frames(2):
        transcriber.feed(frame)

    events = await asyncio.wait_for(collect(transcriber), 10)  # ends without close()

    assert [shape(event) for event in events] == [
        ("final", "first words", 0.0, 0.8),
        ("final", "and then", 0.8, 1.2),  # what Deepgram had finalised is not lost
    ]
    assert "Deepgram dropped the stream" in caplog.text
    transcriber.feed(bytes(FRAME))  # feeding a dead stream is harmless
    await transcriber.aclose()


async def test_a_refused_key_is_logged_without_it_and_ends_results(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = await fake_deepgram(reject=401)
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url)
    transcriber.feed(bytes(FRAME))

    assert await asyncio.wait_for(collect(transcriber), 10) == []

    transcriber.feed(bytes(FRAME))
    transcriber.close()
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "refused the API key (HTTP 401): check VOIPBIN_DEEPGRAM_API_KEY" in error.getMessage()
    assert fake.requests[0].headers["Authorization"] == f"Token {KEY}"
    assert KEY not in logged(caplog)


async def test_an_unreachable_deepgram_is_logged_and_ends_results(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    transcriber = DeepgramTranscriber(KEY, base_url=f"ws://127.0.0.1:{port}")
    transcriber.feed(bytes(FRAME))

    assert await asyncio.wait_for(collect(transcriber), 10) == []
    assert f"cannot stream to Deepgram at ws://127.0.0.1:{port}/v1/listen" in caplog.text


async def test_audio_beyond_the_backlog_is_dropped_with_one_warning(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]], caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()  # Deepgram is slow to answer the handshake: audio queues meanwhile
    fake = await fake_deepgram(gate=gate)
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url, max_backlog_s=0.1)  # five frames
    audio = numbered_frames(9)
    for frame in audio:
        transcriber.feed(frame)
    gate.set()

    await transcribe(transcriber, [])

    assert fake.audio == b"".join(audio[:5])
    assert [r.getMessage() for r in caplog.records].count(
        "Deepgram stream is 5 frames behind; dropping audio until it catches up"
    ) == 1


async def test_a_quiet_stream_is_kept_alive(fake_deepgram: Callable[..., Awaitable[FakeDeepgram]]) -> None:
    fake = await fake_deepgram()
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url, keepalive_s=0.05)
    await asyncio.sleep(0.4)

    await transcribe(transcriber, [])

    assert fake.texts[0] == json.dumps({"type": "KeepAlive"}) and fake.texts[-1] == CLOSE_STREAM


async def test_aclose_gives_up_on_a_deepgram_that_never_closes(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram(ignore_close=True)
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url, finish_timeout_s=0.2)
    transcriber.feed(bytes(FRAME))

    await asyncio.wait_for(transcriber.aclose(), 5)

    assert await asyncio.wait_for(collect(transcriber), 1) == []
    assert fake.texts == [CLOSE_STREAM]


async def test_decode_ms_is_how_long_after_its_last_audio_the_result_came(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    # Audio to 0.5 s, 0.6 s later audio to 1.0 s, 0.3 s later more: only then Deepgram answers for
    # 0.5-1.0 s, 0.3 s after its last audio was fed (0.9 s after its first).
    fake = await fake_deepgram(script=[(65 * FRAME, results("hello", 0.5, 0.5, is_final=True, speech_final=True))])
    transcriber = DeepgramTranscriber(KEY, base_url=fake.url)
    for count, pause in ((25, 0.6), (25, 0.3)):
        for frame in numbered_frames(count):
            transcriber.feed(frame)
        await asyncio.sleep(pause)

    [utterance] = await transcribe(transcriber, numbered_frames(15))

    assert isinstance(utterance, Utterance)
    assert 250 <= utterance.decode_ms < 700


async def test_the_speech_service_uses_deepgram_when_asked_and_keyed(
    fake_deepgram: Callable[..., Awaitable[FakeDeepgram]],
) -> None:
    fake = await fake_deepgram()
    keyed = {"VOIPBIN_DEEPGRAM_API_KEY": KEY, "VOIPBIN_DEEPGRAM_BASE_URL": fake.url}
    cases = [
        (keyed, {"provider": "deepgram"}, DeepgramTranscriber),
        (keyed, {"provider": "Deepgram", "interim": True}, DeepgramTranscriber),
        ({**keyed, "VOIPBIN_STT_PROVIDER": "deepgram"}, {}, DeepgramTranscriber),
        (keyed, {}, Transcriber),  # keyed, but nobody asked for it
        ({"VOIPBIN_STT_PROVIDER": "deepgram"}, {"provider": "deepgram"}, Transcriber),  # asked, but no key
    ]
    for environ, options, kind in cases:
        service = SpeechService(stt_engine="pocketsphinx", environ=environ)
        try:
            transcriber = service.transcriber(language="en-US", **options)
            assert type(transcriber) is kind, (environ, options)
            await transcriber.aclose()
        finally:
            await service.stop()
    assert len(fake.requests) == 3
