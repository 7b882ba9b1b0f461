"""Offline speech-to-text for live calls: VAD-endpointed utterances decoded by recogniser workers.

The media loop calls ``Transcriber.feed`` with every 20 ms frame; that only runs
WebRTC VAD and appends bytes. When an utterance ends (500 ms without speech, or
15 s of it) its audio is queued for a worker process running faster-whisper
tiny.en (or pocketsphinx, the fallback), and the text comes back as an
``Utterance`` event. Decoding never happens on, or waits for, the media loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import webrtcvad

from voipbin.speech.worker import SpeechError, WorkerError, WorkerProcess

logger = logging.getLogger(__name__)

RATE = 8000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2

# Whisper's non-speech captions ("[BLANK_AUDIO]", "(music)") are noise, not words.
_CAPTION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")

STT_ENGINES = ("whisper", "pocketsphinx")


class SttError(SpeechError):
    """Speech recognition cannot be set up as asked."""


@dataclass(frozen=True)
class Transcription:
    text: str
    decode_ms: float


@dataclass(frozen=True)
class Utterance:
    """One recognised utterance; times are seconds of fed audio since the first frame."""

    text: str
    start_time: float
    end_time: float
    decode_ms: float


@dataclass(frozen=True)
class _Segment:
    pcm: bytes
    start_time: float
    end_time: float


def _clean(text: str) -> str:
    text = " ".join(_CAPTION.sub(" ", text).split())
    return text if any(ch.isalnum() for ch in text) else ""


class SttWorkerPool:
    """Recogniser worker processes shared by every call; each takes one utterance at a time.

    One process by default: on a 2-core box a single int8 decoder with two threads
    uses the CPU best, and utterances simply queue. The engine is Whisper unless
    ``engine`` says pocketsphinx; if the Whisper workers cannot start (model missing
    or failing to load), the pool warns and uses pocketsphinx from then on.
    """

    def __init__(
        self,
        processes: int = 1,
        *,
        engine: str = "whisper",
        model: Path | None = None,
        cpu_threads: int | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        """``model`` is a Whisper model directory; the bundled tiny.en by default."""
        if processes < 1:
            raise ValueError("an STT pool needs at least one process")
        self._processes = processes
        self._model = model
        self._threads = cpu_threads or max(1, min(4, (os.cpu_count() or 1) // processes))
        self._request_timeout = request_timeout
        self._starting: asyncio.Task[None] | None = None
        self._stopped = False
        self._use(check_engine(engine))

    @property
    def pids(self) -> list[int]:
        return [pid for worker in self._workers if (pid := worker.pid) is not None]

    def _use(self, engine: str) -> None:
        """Make (not start) the workers of ``engine``, replacing any before them."""
        module, args = "voipbin.speech.pocketsphinx_worker", []
        if engine == "whisper":
            module, args = "voipbin.speech.whisper_worker", [str(self._threads)]
            args += [str(self._model)] if self._model is not None else []
        self.engine = engine
        self._workers = [
            WorkerProcess(f"{engine}-{index}", module, args, request_timeout=self._request_timeout)
            for index in range(self._processes)
        ]
        self._idle: asyncio.Queue[WorkerProcess] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    async def start(self) -> None:
        """Start every worker and wait until each has loaded its model."""
        await asyncio.shield(self._begin())

    def warm(self) -> None:
        """Start the workers in the background, so the first utterance doesn't pay for loading."""
        self._begin()

    def _begin(self) -> asyncio.Task[None]:
        """The start of the workers: the one under way or done, or a new one if that failed."""
        if self._starting is None or _failed(self._starting):
            self._starting = asyncio.get_running_loop().create_task(self._start())
            self._starting.add_done_callback(_report_start)
        return self._starting

    async def _start(self) -> None:
        try:
            await self._start_workers()
        except WorkerError as error:
            if self.engine != "whisper" or self._stopped:
                raise
            logger.warning("Whisper STT could not start (%s); using pocketsphinx instead", error)
            whisper = self._workers
            self._use("pocketsphinx")
            await asyncio.gather(*(worker.close() for worker in whisper))
            await self._start_workers()

    async def _start_workers(self) -> None:
        # Every start runs to its end, so a failed pool leaves no worker loading behind.
        outcomes = await asyncio.gather(*(worker.start() for worker in self._workers), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def transcribe(self, pcm8k: bytes, language: str = "en") -> Transcription:
        """Text of 8 kHz 16-bit mono PCM, decoded by the next free worker."""
        await self.start()
        worker = await self._idle.get()
        try:
            reply, _ = await worker.request({"rate": RATE, "language": language}, pcm8k)
        finally:
            self._idle.put_nowait(worker)
        return Transcription(str(reply["text"]), float(reply["decode_ms"]))

    async def stop(self) -> None:
        """Kill every worker; requests after this fail."""
        self._stopped = True  # before any await: a start in progress must not fall back now
        await asyncio.gather(*(worker.close() for worker in self._workers))
        if self._starting is not None:
            await asyncio.wait([self._starting])  # it fails at once; let it finish cleaning up


def check_engine(engine: str) -> str:
    """``engine`` if it names a recogniser, else an ``SttError`` that lists them."""
    if engine not in STT_ENGINES:
        raise SttError(f"unknown STT engine {engine!r}: use one of {', '.join(STT_ENGINES)}")
    return engine


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _report_start(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("STT workers failed to start: %s", error)


class Transcriber:
    """Transcribes one direction of a call.

    Create it inside the event loop and always ``close`` it: its decode task runs
    until then. ``feed`` is cheap and synchronous (a media tap callback); ``results`` yields
    ``Utterance`` events in order until ``close`` and the decodes queued before it
    are done.
    """

    def __init__(
        self,
        pool: SttWorkerPool,
        *,
        language: str = "en-US",
        vad_mode: int = 2,
        hangover_ms: int = 500,
        preroll_ms: int = 300,
        min_speech_ms: int = 200,
        max_utterance_s: float = 15.0,
        max_pending: int = 8,
    ) -> None:
        if language.strip().lower().replace("_", "-").split("-")[0] != "en":
            raise SttError(
                f"the offline recognisers (Whisper tiny.en, pocketsphinx) understand English only, not {language!r}"
            )
        self._pool = pool
        self._vad = webrtcvad.Vad(vad_mode)
        self._hangover = hangover_ms // FRAME_MS
        self._min_voiced = min_speech_ms // FRAME_MS
        self._max_frames = int(max_utterance_s * 1000) // FRAME_MS
        self._max_pending = max_pending
        # Speech onsets fool the VAD for a frame or two; keep audio from before the trigger.
        self._preroll_frames = preroll_ms // FRAME_MS
        self._preroll: deque[bytes] = deque(maxlen=self._preroll_frames)
        self._remainder = b""
        self._frames = 0  # frames fed so far: the media clock
        self._audio: bytearray | None = None  # the utterance in progress
        self._audio_start = 0  # frame index of _audio's first byte (pre-roll included)
        self._first_voiced = 0
        self._last_voiced = 0
        self._voiced = 0
        self._closed = False
        self._pending: asyncio.Queue[_Segment | None] = asyncio.Queue()
        self._results: asyncio.Queue[Utterance | None] = asyncio.Queue()
        self._runner = asyncio.get_running_loop().create_task(self._run())

    def feed(self, pcm8k: bytes) -> None:
        """Take 8 kHz 16-bit mono PCM (normally one 20 ms frame); frames after ``close`` are ignored."""
        if self._closed:
            return
        data = self._remainder + pcm8k if self._remainder else pcm8k
        whole = len(data) - len(data) % FRAME_BYTES
        for offset in range(0, whole, FRAME_BYTES):
            self._frame(data[offset : offset + FRAME_BYTES])
        self._remainder = data[whole:]

    def _frame(self, frame: bytes) -> None:
        index = self._frames
        self._frames += 1
        voiced = self._vad.is_speech(frame, RATE)
        if self._audio is None:
            if not voiced:
                self._preroll.append(frame)
                return
            # Whisper misreads the first word without a lead-in (measured: 1 clip in 20
            # without, 0 in 40 with), so speech from the very first frame gets silence.
            lead = bytes(FRAME_BYTES * (self._preroll_frames - len(self._preroll)))
            self._audio = bytearray(lead + b"".join(self._preroll))
            self._audio_start = index - self._preroll_frames
            self._preroll.clear()
            self._first_voiced = index
            self._voiced = 0
        self._audio += frame
        if voiced:
            self._last_voiced = index
            self._voiced += 1
        silent_for = index - self._last_voiced
        if silent_for >= self._hangover or index - self._audio_start + 1 >= self._max_frames:
            self._cut()

    def _cut(self) -> None:
        """End the utterance in progress and queue it for decoding unless it was only a click."""
        audio, self._audio = self._audio, None
        if audio is None or self._voiced < self._min_voiced:
            return
        if self._pending.qsize() >= self._max_pending:
            logger.warning("STT is %d utterances behind; dropping one", self._pending.qsize())
            return
        self._pending.put_nowait(
            _Segment(
                bytes(audio),
                self._first_voiced * FRAME_MS / 1000,
                (self._last_voiced + 1) * FRAME_MS / 1000,
            )
        )

    async def _run(self) -> None:
        try:
            while (segment := await self._pending.get()) is not None:
                try:
                    result = await self._pool.transcribe(segment.pcm)
                except SpeechError as exc:
                    logger.warning("STT decode failed: %s", exc)
                    continue
                if text := _clean(result.text):
                    self._results.put_nowait(
                        Utterance(text, segment.start_time, segment.end_time, result.decode_ms)
                    )
        finally:
            self._results.put_nowait(None)

    async def results(self) -> AsyncIterator[Utterance]:
        while (utterance := await self._results.get()) is not None:
            yield utterance
        self._results.put_nowait(None)  # later iterations end too

    def close(self) -> None:
        """Stop listening: the utterance in progress is decoded, then ``results`` ends."""
        if self._closed:
            return
        self._closed = True
        self._cut()
        self._pending.put_nowait(None)

    async def aclose(self) -> None:
        """``close`` and wait for the queued decodes."""
        self.close()
        await asyncio.shield(self._runner)
