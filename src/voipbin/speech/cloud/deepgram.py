"""Deepgram live speech-to-text over its streaming WebSocket API.

``DeepgramTranscriber`` has the public interface of ``speech.stt.Transcriber``: the
media loop's ``feed`` only queues bytes, a sender task streams them to Deepgram as
binary frames, and a receiver task turns Deepgram's JSON messages into ``Utterance``
and ``SpeechBoundary`` events. Failures are logged and end ``results``; they never
reach ``feed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus, WebSocketException

from voipbin.speech.stt import SpeechBoundary, TranscriberEvent, Utterance

logger = logging.getLogger(__name__)
# websockets logs every request header, the Authorization key among them, at DEBUG: its
# logger for our connections stops at INFO whatever the root level is.
_WS_LOGGER = logging.getLogger(f"{__name__}.websocket")
_WS_LOGGER.setLevel(logging.INFO)

API_KEY_SETTING = "VOIPBIN_DEEPGRAM_API_KEY"
BASE_URL_SETTING = "VOIPBIN_DEEPGRAM_BASE_URL"
DEFAULT_BASE_URL = "wss://api.deepgram.com"

RATE = 8000
_BYTES_PER_S = RATE * 2
_CLOSE_STREAM = json.dumps({"type": "CloseStream"})
_KEEP_ALIVE = json.dumps({"type": "KeepAlive"})
_DETAIL_CHARS = 200


class DeepgramTranscriber:
    """Transcribes one direction of a call with Deepgram.

    Create it inside the event loop and always ``close`` it. ``results`` yields final
    ``Utterance`` events, and with ``interim`` also interim ones and ``SpeechBoundary``
    events (with ``boundaries`` only the latter; ``start_ms`` is the local recogniser's and
    not applied: Deepgram's own voice detection says when speech starts), until Deepgram has answered everything sent before ``close``. An utterance's
    ``decode_ms`` is how long after its last audio was fed Deepgram's answer came.
    """

    def __init__(
        self,
        api_key: str,
        *,
        language: str = "en-US",
        interim: bool = False,
        boundaries: bool = False,
        start_ms: int = 0,  # the local recogniser's option, accepted for the same call
        base_url: str = DEFAULT_BASE_URL,
        model: str = "nova-2",
        endpointing_ms: int = 300,
        max_backlog_s: float = 5.0,
        keepalive_s: float = 5.0,
        finish_timeout_s: float = 10.0,
        open_timeout_s: float = 10.0,
    ) -> None:
        self._key = api_key
        self._interim = interim
        self._boundaries = interim or boundaries
        self._url = _listen_url(base_url, language, model, endpointing_ms)
        self._max_backlog = int(max_backlog_s * 1000) // 20  # in frames: the media loop feeds 20 ms ones
        self._keepalive_s = keepalive_s
        self._finish_timeout_s = finish_timeout_s
        self._open_timeout_s = open_timeout_s
        self._closed = False
        self._warned_behind = False
        self._fed_bytes = 0
        # (bytes fed so far, when) per feed: how long after its audio each result came.
        self._fed_at: deque[tuple[int, float]] = deque(maxlen=30 * 1000 // 20)
        self._pieces: list[Utterance] = []  # is_final pieces of the utterance in progress
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._results: asyncio.Queue[TranscriberEvent | None] = asyncio.Queue()
        self._runner = asyncio.get_running_loop().create_task(self._run())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **options: Any) -> DeepgramTranscriber:
        return cls(environ[API_KEY_SETTING], base_url=environ.get(BASE_URL_SETTING) or DEFAULT_BASE_URL, **options)

    def __repr__(self) -> str:  # never the key
        return f"DeepgramTranscriber({self._url!r})"

    def feed(self, pcm8k: bytes) -> None:
        """Queue 8 kHz 16-bit mono PCM; ignored after ``close`` or once the stream has ended."""
        if self._closed or self._runner.done():
            return
        if self._audio.qsize() >= self._max_backlog:
            if not self._warned_behind:
                self._warned_behind = True
                logger.warning("Deepgram stream is %d frames behind; dropping audio until it catches up",
                               self._max_backlog)
            return
        self._fed_bytes += len(pcm8k)
        self._fed_at.append((self._fed_bytes, time.monotonic()))
        self._audio.put_nowait(pcm8k)

    async def results(self) -> AsyncIterator[TranscriberEvent]:
        while (event := await self._results.get()) is not None:
            yield event
        self._results.put_nowait(None)  # later iterations end too

    def close(self) -> None:
        """Stop listening: Deepgram finishes what it was sent, then ``results`` ends."""
        if not self._closed:
            self._closed = True
            self._audio.put_nowait(None)

    async def aclose(self) -> None:
        """``close`` and wait for Deepgram's last results."""
        self.close()
        await asyncio.shield(self._runner)

    async def _run(self) -> None:
        try:
            async with connect(
                self._url,
                additional_headers={"Authorization": f"Token {self._key}"},
                open_timeout=self._open_timeout_s,
                logger=_WS_LOGGER,
            ) as ws:
                sender = asyncio.create_task(self._send(ws))
                try:
                    await self._receive(ws)
                finally:
                    sender.cancel()
                    # A send into a connection the server dropped fails; the receiver reports that.
                    await asyncio.gather(sender, return_exceptions=True)
        except InvalidStatus as exc:
            logger.error("%s", self._redact(_refusal(exc)))
        except ConnectionClosedError as exc:
            logger.warning("Deepgram dropped the stream (%s); transcription of it has ended", exc)
        except (OSError, TimeoutError, WebSocketException) as exc:
            logger.warning("cannot stream to Deepgram at %s: %s", self._url.split("?")[0], self._redact(str(exc)))
        finally:
            self._flush()
            self._results.put_nowait(None)

    async def _send(self, ws: ClientConnection) -> None:
        while True:
            try:
                pcm = await asyncio.wait_for(self._audio.get(), self._keepalive_s)
            except TimeoutError:  # Deepgram ends a stream that is silent for 10 s
                await ws.send(_KEEP_ALIVE)
                continue
            if pcm is None:
                break
            await ws.send(pcm)
        await ws.send(_CLOSE_STREAM)
        # Deepgram closes once it has sent its last results; don't wait forever for that.
        await asyncio.sleep(self._finish_timeout_s)
        await ws.close()

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            if isinstance(message, str):
                try:
                    self._on_message(json.loads(message))
                except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                    logger.warning("ignoring a Deepgram message we cannot read (%r): %.200s", exc, message)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "Results":
            self._on_results(message)
        elif kind == "SpeechStarted" and self._boundaries:
            self._emit(SpeechBoundary("started", float(message["timestamp"])))

    def _on_results(self, message: dict[str, Any]) -> None:
        text = str(message["channel"]["alternatives"][0]["transcript"]).strip()
        start = float(message["start"])
        end = start + float(message["duration"])
        piece = Utterance(text, start, end, self._latency_ms(end), final=False)
        if not message.get("is_final"):
            if self._interim and text:
                self._emit(_joined([*self._pieces, piece], final=False))
            return
        if text:
            self._pieces.append(piece)
        if message.get("speech_final"):
            self._flush()

    def _flush(self) -> None:
        """Emit the utterance in progress as final (Deepgram ended it, or the stream did)."""
        if not self._pieces:
            return
        utterance = _joined(self._pieces, final=True)
        self._pieces = []
        if self._boundaries:
            self._emit(SpeechBoundary("ended", utterance.end_time))
        self._emit(utterance)

    def _latency_ms(self, end: float) -> float:
        """Milliseconds since the audio up to ``end`` seconds was fed (our ``decode_ms``)."""
        # Results come in time order, so feeds wholly before this one's end are needed no more.
        while len(self._fed_at) > 1 and self._fed_at[0][0] < end * _BYTES_PER_S - 1:
            self._fed_at.popleft()
        return (time.monotonic() - self._fed_at[0][1]) * 1000 if self._fed_at else 0.0

    def _emit(self, event: TranscriberEvent) -> None:
        self._results.put_nowait(event)

    def _redact(self, message: str) -> str:
        return message.replace(self._key, "<key>") if self._key else message


def _listen_url(base_url: str, language: str, model: str, endpointing_ms: int) -> str:
    query = urlencode({
        "encoding": "linear16",
        "sample_rate": RATE,
        "channels": 1,
        "model": model,
        "language": language,
        "interim_results": "true",
        "endpointing": endpointing_ms,
        "vad_events": "true",
    })
    return f"{base_url.rstrip('/')}/v1/listen?{query}"


def _joined(pieces: list[Utterance], *, final: bool) -> Utterance:
    """One utterance of consecutive pieces; its latency is the last piece's."""
    text = " ".join(piece.text for piece in pieces)
    return Utterance(text, pieces[0].start_time, pieces[-1].end_time, pieces[-1].decode_ms, final=final)


def _refusal(exc: InvalidStatus) -> str:
    status = exc.response.status_code
    if status == 401:
        return f"Deepgram refused the API key (HTTP 401): check {API_KEY_SETTING}"
    body = exc.response.body.decode(errors="replace").strip()[:_DETAIL_CHARS] if exc.response.body else ""
    return f"Deepgram refused the stream (HTTP {status}){': ' + body if body else ''}"
