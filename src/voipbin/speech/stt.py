"""Offline speech-to-text for live calls: VAD-endpointed utterances decoded by recogniser workers.

The media loop calls ``Transcriber.feed`` with every 20 ms frame; that only runs
WebRTC VAD, measures loudness and appends bytes. A pause of 200 ms sends the
utterance so far to a worker process running faster-whisper tiny.en (or
pocketsphinx, the fallback); a sentence that reads as finished is the final
``Utterance``, otherwise the turn ends after 600 ms of silence (or 15 s of
speech). Decoding never happens on, or waits for, the media loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import webrtcvad

from voipbin.speech.worker import SpeechError, WorkerError, WorkerProcess

logger = logging.getLogger(__name__)

RATE = 8000
FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
QUIET_RATIO = 0.1  # 20 dB under the utterance's peak counts as silence
PEAK_DECAY = 0.99  # per frame: the peak halves in ~1.4 s, following a speaker who gets quieter
# Whisper ends any fragment with a full stop; one ending in these words surely goes on. Words
# that often end what a caller says ("thank you", "hold on", "I think so", "yes it is") are not here.
_GOES_ON = frozenset({
    "a", "an", "the", "and", "or", "but", "because", "if", "than", "to", "of", "for", "with", "about",
    "at", "from", "by", "my", "your", "our", "their", "i", "we", "they", "he", "she",
})

# Whisper's non-speech captions ("[BLANK_AUDIO]", "(music)") are noise, not words.
_CAPTION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")

STT_ENGINES = ("whisper", "pocketsphinx")
ENGLISH_EXAMPLES = ("en", "en-US", "en-GB", "en-AU", "en-IN")


class SttError(SpeechError):
    """Speech recognition cannot be set up as asked."""


@dataclass(frozen=True)
class Transcription:
    text: str
    decode_ms: float


@dataclass(frozen=True)
class Utterance:
    """One recognised utterance; times are seconds of fed audio since the first frame.

    ``final`` is False for an interim hypothesis of speech still in progress (only
    from transcribers asked for interim results); the final one follows.
    """

    text: str
    start_time: float
    end_time: float
    decode_ms: float
    final: bool = True


@dataclass(frozen=True)
class SpeechBoundary:
    """The caller started (``"started"``) or stopped (``"ended"``) speaking, at ``time`` seconds of fed audio.

    Only transcribers asked for interim results report these.
    """

    kind: Literal["started", "ended"]
    time: float


@dataclass(frozen=True)
class SpeechDropped:
    """Speech from ``start_time`` to ``end_time`` was not transcribed: the recognisers were too far behind."""

    start_time: float
    end_time: float


TranscriberEvent = Utterance | SpeechBoundary | SpeechDropped


def _clean(text: str) -> str:
    text = " ".join(_CAPTION.sub(" ", text).split())
    return text if any(ch.isalnum() for ch in text) else ""


@dataclass
class _Request:
    pcm: bytes
    language: str
    interim: bool
    reply: asyncio.Future[Transcription]


class SttBusy(SpeechError):
    """An interim decode was refused: the workers have finals to decode first."""


def default_processes() -> int:
    """One recogniser process per core the platform may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class SttWorkerPool:
    """Recogniser worker processes shared by every call, one per core by default.

    Utterances queue in arrival order; a free worker takes up to ``max_batch`` of
    them in one request (Whisper decodes a batch of four in ~1.3x the time of one),
    so a busy pool catches up instead of falling further behind. Interim decodes
    only run when no final waits: they are the first thing shed under load.
    The engine is Whisper unless ``engine`` says pocketsphinx; if the Whisper
    workers cannot start, the pool warns and uses pocketsphinx from then on.
    """

    def __init__(
        self,
        processes: int | None = None,
        *,
        engine: str = "whisper",
        model: Path | None = None,
        cpu_threads: int | None = None,
        request_timeout: float = 60.0,
        max_batch: int = 4,
    ) -> None:
        """``model`` is a Whisper model directory; the bundled tiny.en by default."""
        processes = processes or default_processes()
        if processes < 1:
            raise ValueError("an STT pool needs at least one process")
        self._processes = processes
        self._model = model
        self._threads = cpu_threads or max(1, min(4, default_processes() // processes))
        self._request_timeout = request_timeout
        self._max_batch = max_batch
        self._finals: deque[_Request] = deque()
        self._interims: deque[_Request] = deque()
        self._waiting = asyncio.Event()  # set when a request joins the queues
        self._servers: dict[str, asyncio.Task[None]] = {}
        self._starting: asyncio.Task[None] | None = None
        self._stopped = False
        self._use(check_engine(engine))

    @property
    def pids(self) -> list[int]:
        return [pid for worker in self._workers if (pid := worker.pid) is not None]

    @property
    def processes(self) -> int:
        return self._processes

    @property
    def backlog(self) -> int:
        """Final decodes waiting for a worker."""
        return len(self._finals)

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

    async def transcribe(self, pcm8k: bytes, language: str = "en", *, interim: bool = False) -> Transcription:
        """Text of 8 kHz 16-bit mono PCM, decoded by the next free worker.

        With ``interim`` the decode is a hypothesis that may be refused (``SttBusy``)
        when finals are waiting, or overtaken by them.
        """
        await self.start()
        if self._stopped:
            raise WorkerError("the STT workers are stopped")
        if interim and self._finals:
            raise SttBusy("the recognisers are busy with final transcripts")
        self._serve_workers()
        request = _Request(pcm8k, language, interim, asyncio.get_running_loop().create_future())
        (self._interims if interim else self._finals).append(request)
        self._waiting.set()
        return await request.reply

    def _serve_workers(self) -> None:
        """One serving task per started worker: each takes the next batch as soon as it is free."""
        for worker in self._workers:
            if worker.name not in self._servers:
                self._servers[worker.name] = asyncio.get_running_loop().create_task(self._serve(worker))

    async def _serve(self, worker: WorkerProcess) -> None:
        while True:
            if not (batch := self._take_batch()):
                self._waiting.clear()
                await self._waiting.wait()
                continue
            try:
                await self._decode(worker, batch)
            except asyncio.CancelledError:  # the pool is stopping
                _fail(batch, None)
                raise
            except WorkerError as error:
                _fail(batch, error)
            except Exception as error:  # a garbled reply fails its batch, not the pool
                logger.exception("%s returned an unusable reply", worker.name)
                _fail(batch, WorkerError(f"{worker.name} returned an unusable reply: {error!r}"))

    def _take_batch(self) -> list[_Request]:
        """The oldest waiting requests of one language: finals first, interims only when none wait."""
        queue = self._finals or self._interims
        while queue and queue[0].reply.done():  # their callers gave up
            queue.popleft()
        if not queue:
            return []
        language = queue[0].language
        batch = [queue.popleft()]
        while queue and len(batch) < self._max_batch and queue[0].language == language:
            if not (request := queue.popleft()).reply.done():
                batch.append(request)
        return batch

    async def _decode(self, worker: WorkerProcess, batch: list[_Request]) -> None:
        header = {"rate": RATE, "language": batch[0].language, "lengths": [len(r.pcm) for r in batch]}
        reply, _ = await worker.request(header, b"".join(r.pcm for r in batch))
        decode_ms = float(reply["decode_ms"])
        for request, text in zip(batch, reply["texts"], strict=True):
            if not request.reply.done():
                request.reply.set_result(Transcription(str(text), decode_ms))

    async def stop(self) -> None:
        """Kill every worker; requests after this fail."""
        self._stopped = True  # before any await: a start in progress must not fall back now
        servers = list(self._servers.values())
        for server in servers:
            server.cancel()
        _fail([*self._finals, *self._interims], None)
        self._finals.clear()
        self._interims.clear()
        await asyncio.gather(*servers, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in self._workers))
        if self._starting is not None:
            await asyncio.wait([self._starting])  # it fails at once; let it finish cleaning up


def _fail(batch: list[_Request], error: BaseException | None) -> None:
    """End the batch's requests still waiting: with ``error``, or cancelled."""
    for request in batch:
        if not request.reply.done():
            if error is None:
                request.reply.cancel()
            else:
                request.reply.set_exception(error)


def check_language(language: str) -> None:
    """Nothing if the offline recognisers understand ``language``; else an ``SttError`` saying what does."""
    if language.strip().lower().replace("_", "-").split("-")[0] != "en":
        raise SttError(
            f"language {language!r} cannot be transcribed here: the offline recognisers (Whisper tiny.en, "
            f"pocketsphinx) understand English only ({', '.join(ENGLISH_EXAMPLES)}, or any en-*); "
            "other languages need the Deepgram provider (docs/speech.md)"
        )


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


@dataclass
class _Turn:
    """The utterance being spoken: its audio (lead-in included) and what is known of it."""

    audio: bytearray
    start_frame: int  # frame index of audio's first byte
    first_voiced: int
    last_voiced: int
    voiced: int = 0
    peak: float = 0.0  # decaying peak loudness of its speech
    speculation: tuple[int, asyncio.Task[Transcription | None]] | None = None  # (last_voiced then, its decode)
    interim: asyncio.Task[Transcription | None] | None = None
    interim_at: int = -(1 << 30)
    interim_text: str = ""
    started: bool = False  # its SpeechBoundary("started") has been emitted


class Transcriber:
    """Transcribes one direction of a call.

    Create it inside the event loop and always ``close`` it. ``feed`` is cheap and
    synchronous (a media tap callback); ``results`` yields events in order until
    ``close`` and the decodes queued before it are done: a final ``Utterance``
    per utterance, ``SpeechDropped`` when the recognisers fell too far behind to
    decode one, and with ``interim`` also ``SpeechBoundary`` and interim
    ``Utterance`` (``final=False``) events while the caller speaks; with
    ``boundaries`` only the ``SpeechBoundary`` ones (no decoding while they speak).
    ``start_ms`` holds "started" back until that much speech is heard (a cough is not a
    caller talking); the boundary's time is still the speech's first frame.

    End of turn: after ``quick_end_ms`` of silence the utterance so far is decoded
    at once; if its text ends a sentence and the caller has stayed silent, that is
    the final. Otherwise the turn ends after ``hangover_ms`` of silence, reusing
    that decode when no speech came since. Silence is what WebRTC VAD calls
    silence, or sound 20 dB under the utterance's recent peak (the VAD's own
    hangover keeps marking a fading voice as speech for ~100 ms).
    """

    def __init__(
        self,
        pool: SttWorkerPool,
        *,
        language: str = "en-US",
        interim: bool = False,
        boundaries: bool = False,
        start_ms: int = 0,
        vad_mode: int = 2,
        quick_end_ms: int = 200,
        hangover_ms: int = 600,
        preroll_ms: int = 300,
        min_speech_ms: int = 200,
        max_utterance_s: float = 15.0,
        max_pending: int = 4,
        interim_first_ms: int = 140,
        interim_every_ms: int = 250,
    ) -> None:
        check_language(language)
        self._pool = pool
        self._interim = interim
        self._boundaries = interim or boundaries
        self._start_voiced = start_ms // FRAME_MS
        self._vad = webrtcvad.Vad(vad_mode)
        self._quick = quick_end_ms // FRAME_MS
        self._hangover = max(self._quick + 1, hangover_ms // FRAME_MS)
        self._min_voiced = min_speech_ms // FRAME_MS
        self._max_frames = int(max_utterance_s * 1000) // FRAME_MS
        self._max_pending = max_pending
        self._interim_first = interim_first_ms // FRAME_MS
        self._interim_every = interim_every_ms // FRAME_MS
        # Speech onsets fool the VAD for a frame or two; keep audio from before the trigger.
        self._preroll_frames = preroll_ms // FRAME_MS
        self._preroll: deque[bytes] = deque(maxlen=self._preroll_frames)
        self._remainder = b""
        self._frames = 0  # frames fed so far: the media clock
        self._turn: _Turn | None = None
        self._closed = False
        self._decodes: set[asyncio.Task[Transcription | None]] = set()
        self._pending = 0  # finals cut but not yet decoded
        # What results() yields, in order; an entry may still be decoding.
        self._out: asyncio.Queue[asyncio.Future[TranscriberEvent | None] | None] = asyncio.Queue()

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
        turn = self._turn
        voiced = self._vad.is_speech(frame, RATE)
        if turn is None:
            if not voiced:
                self._preroll.append(frame)
                return
            turn = self._begin(index)
        turn.audio += frame
        if voiced and (level := _loudness(frame)) >= turn.peak * QUIET_RATIO:
            turn.peak = max(level, turn.peak * PEAK_DECAY)
            turn.last_voiced = index
            turn.voiced += 1
            if not turn.started and turn.voiced >= self._start_voiced:
                self._announce(turn)
            if turn.speculation is not None:  # the caller went on: that decode is moot
                turn.speculation[1].cancel()
                turn.speculation = None
        silent_for = index - turn.last_voiced
        if silent_for >= self._hangover or index - turn.start_frame + 1 >= self._max_frames:
            self._cut()
        elif silent_for == self._quick and turn.voiced >= self._min_voiced and self._pending < self._max_pending:
            self._speculate(turn)
        elif self._interim and silent_for < self._quick:
            self._maybe_interim(turn, index)

    def _begin(self, index: int) -> _Turn:
        # Whisper misreads the first word without a lead-in (measured: 1 clip in 20
        # without, 0 in 40 with), so speech from the very first frame gets silence.
        lead = bytes(FRAME_BYTES * (self._preroll_frames - len(self._preroll)))
        turn = _Turn(bytearray(lead + b"".join(self._preroll)), index - self._preroll_frames, index, index)
        self._preroll.clear()
        self._turn = turn
        if self._start_voiced == 0:
            self._announce(turn)
        return turn

    def _announce(self, turn: _Turn) -> None:
        turn.started = True
        if self._boundaries:
            self._emit(SpeechBoundary("started", turn.first_voiced * FRAME_S))

    def _speculate(self, turn: _Turn) -> None:
        """Decode the utterance so far; its text is the final if it ends a sentence in silence."""
        mark = turn.last_voiced
        decode = self._decode(bytes(turn.audio))
        turn.speculation = (mark, decode)
        decode.add_done_callback(lambda _: self._settle(turn, mark))

    def _settle(self, turn: _Turn, mark: int) -> None:
        if self._turn is not turn or turn.last_voiced != mark or turn.speculation is None:
            return  # the caller spoke again, or the turn has ended anyway
        if (result := _outcome(turn.speculation[1])) and ends_sentence(result.text):
            self._cut()

    def _maybe_interim(self, turn: _Turn, index: int) -> None:
        if turn.interim is not None and not turn.interim.done():
            return
        # An empty hypothesis (speech too short to read) is retried soon rather than in a full period.
        every = self._interim_every if turn.interim_text else 3
        if index - turn.first_voiced + 1 < self._interim_first or index - turn.interim_at < every:
            return
        turn.interim_at = index
        decode = self._decode(bytes(turn.audio), interim=True)
        turn.interim = decode
        decode.add_done_callback(lambda _: self._publish_interim(turn, decode))

    def _publish_interim(self, turn: _Turn, decode: asyncio.Task[Transcription | None]) -> None:
        result = _outcome(decode)
        if self._turn is not turn or result is None or result.text == turn.interim_text:
            return
        turn.interim_text = result.text
        end = (turn.last_voiced + 1) * FRAME_S
        self._emit(Utterance(result.text, turn.first_voiced * FRAME_S, end, result.decode_ms, final=False))

    def _cut(self) -> None:
        """End the utterance in progress and queue its final unless it was only a click."""
        turn, self._turn = self._turn, None
        if turn is None or turn.voiced < self._min_voiced:
            return
        start, end = turn.first_voiced * FRAME_S, (turn.last_voiced + 1) * FRAME_S
        if self._boundaries and turn.started:
            self._emit(SpeechBoundary("ended", end))
        if turn.speculation is not None and turn.speculation[0] == turn.last_voiced:
            decode = turn.speculation[1]  # no speech since: that decode heard it all
        elif self._pending >= self._max_pending:
            logger.warning("STT is %d utterances behind on one stream; dropping one", self._pending)
            self._emit(SpeechDropped(start, end))
            return
        else:
            decode = self._decode(bytes(turn.audio))
        self._pending += 1
        decode.add_done_callback(self._decoded)
        self._out.put_nowait(_then(decode, lambda r: Utterance(r.text, start, end, r.decode_ms)))

    def _decoded(self, _: asyncio.Task[Transcription | None]) -> None:
        self._pending -= 1

    def _decode(self, pcm: bytes, *, interim: bool = False) -> asyncio.Task[Transcription | None]:
        task = asyncio.get_running_loop().create_task(self._text_of(pcm, interim))
        self._decodes.add(task)
        task.add_done_callback(self._decodes.discard)
        return task

    async def _text_of(self, pcm: bytes, interim: bool) -> Transcription | None:
        """The cleaned text of ``pcm``; None for no words or a failed (or refused interim) decode."""
        try:
            result = await self._pool.transcribe(pcm, interim=interim)
        except SttBusy:
            return None
        except SpeechError as exc:
            logger.warning("STT decode failed: %s", exc)
            return None
        text = _clean(result.text)
        return Transcription(text, result.decode_ms) if text else None

    def _emit(self, event: TranscriberEvent) -> None:
        ready: asyncio.Future[TranscriberEvent | None] = asyncio.get_running_loop().create_future()
        ready.set_result(event)
        self._out.put_nowait(ready)

    async def results(self) -> AsyncIterator[TranscriberEvent]:
        while (item := await self._out.get()) is not None:
            if (event := await item) is not None:
                yield event
        self._out.put_nowait(None)  # later iterations end too

    def close(self) -> None:
        """Stop listening: the utterance in progress is decoded, then ``results`` ends."""
        if self._closed:
            return
        self._closed = True
        self._cut()
        self._out.put_nowait(None)

    async def aclose(self) -> None:
        """``close`` and wait for the queued decodes."""
        self.close()
        if self._decodes:
            await asyncio.wait(set(self._decodes))


def _outcome(decode: asyncio.Task[Transcription | None]) -> Transcription | None:
    if decode.cancelled():
        return None
    if (error := decode.exception()) is not None:  # a defect: decode failures are SpeechErrors, caught
        logger.error("STT decode crashed", exc_info=error)
        return None
    return decode.result()


def _then(
    decode: asyncio.Task[Transcription | None], make: Callable[[Transcription], Utterance]
) -> asyncio.Future[TranscriberEvent | None]:
    """A future of ``make(result)`` once ``decode`` has a result (None if it has no words)."""
    out: asyncio.Future[TranscriberEvent | None] = asyncio.get_running_loop().create_future()

    def done(task: asyncio.Task[Transcription | None]) -> None:
        if not out.done():
            out.set_result(make(result) if (result := _outcome(task)) else None)

    decode.add_done_callback(done)
    return out


def ends_sentence(text: str) -> bool:
    """Whether a decode reads as a finished sentence: a question or exclamation, or a full stop
    after a word that can end one."""
    if text.endswith(("?", "!")):
        return True
    words = text.lower().rstrip(".").split()
    return text.endswith(".") and bool(words) and words[-1].strip(",;:") not in _GOES_ON


def _loudness(frame: bytes) -> float:
    return float(np.abs(np.frombuffer(frame, dtype="<i2")).mean())
