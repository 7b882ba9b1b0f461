"""Real-time voice latency and capacity: talk, say and transcription on real calls.

An in-process :class:`~voipbin.runtime.Platform` (temporary data dir, SIP on a free loopback port)
is driven through its API with an httpx ASGI client, as tests/telephony does. A customer and its
extensions are created through the API; the phones are real SIP user agents on loopback.

Latency (baresip, one call at a time, ``--repeats`` calls after one unmeasured warm-up call).
baresip registers to an extension, auto-answers, and its microphone (aufile) plays a WAV made with
the platform's own TTS: ~1.5 s of silence, one sentence, then silence. Each call is the seed's
real-time voice call (transcribe_start + talk + sleep; transcription of direction ``in`` only, so
the caller's sentence is decoded without queueing behind the greeting):

* ``post_to_invite_ms``: POST /v1.0/calls sent -> the first INVITE leaves ``SipStack._send``;
* ``answer_to_first_audio_ms``: the phone's 200 OK to the INVITE arrives (``SipStack.receive``)
  -> the first non-silent frame of the talk action's TTS on the endpoint's ``out`` tap (also
  reported from the ``call_progressing`` event's publication on the bus);
* ``say_to_first_speech_rtp_ms``: with the flow in its ``sleep``, POST /v1.0/speakings/{id}/say
  sent -> the first non-silent ``out`` frame;
* ``end_of_speech_to_transcript_ms``: the last voiced frame of the caller's sentence on the ``in``
  tap -> ``transcript_created`` (direction ``in``) published on the bus.

Each call's greeting and said text start with a sentence unique to the call, so the TTS cache never
answers for the first sentence: the figures include a real piper synthesis.

Capacity (sipp echo phones). For N in ``--levels`` (default 1,2,3,4,6,8,12), N sipp UAS processes (``-rtp_echo``) register
to N fresh extensions; N calls are placed, their starts staggered evenly over one talk period, each
running transcribe_start (direction ``both``, the seed's default) then ``--rounds`` x (talk, sleep
1 s) then a long sleep. sipp sends back what we say, so every spoken sentence must come back as one
``in`` transcript, and as one ``out`` transcript. The prompts are the same for every call and
synthesised once before the first level (an IVR prompt is cached). Per N: CPU of the platform
process (``time.process_time`` / wall) and of its speech workers and of sipp, media engine
lateness, transcripts produced vs expected (one per spoken sentence per direction), the
end-of-speech -> transcript latency (last voiced frame of a sentence on the tap -> its transcript
published), and whether N passes: latency p99 < 3 s over both directions and nothing lost. Levels
stop at the first that fails.

Breakdowns come from wrapping the piper engine's ``render`` and the STT pool's ``transcribe``
(when a synthesis / decode was asked for and answered) in this process.

Everything shares this machine's cores with the load generators and with whatever else runs on the
box (baresip is configured as in tests/peers/baresip.py except that what it hears goes to aubridge:
the fixture's ALSA null player spins a whole core during a call). Before each measured call and level
the script waits (at most ``--quiet-wait`` s, ``--quiet-budget`` s in all) for the rest of the box
to use under ``--quiet-pct`` % of a core, and records what other work ran meanwhile; figures are
floors for the platform alone.

    .venv/bin/python bench/voice.py [--repeats 8] [--levels 1,2,3,4,6,8,12] [--rounds 3]
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
import time
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
from voipbin.api.app import create_app  # noqa: E402
from voipbin.runtime import Platform  # noqa: E402

VOICED_LEVEL = 200.0  # mean |sample| of a 20 ms frame above which it counts as sound
SEGMENT_GAP_S = 0.6  # voiced frames further apart than this belong to different sentences
LATENCY_LIMIT_S = 3.0
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

        async def timed_transcribe(pcm8k: bytes, language: str = "en") -> Any:
            began = time.perf_counter()
            result = await transcribe(pcm8k, language)
            self.decodes.append((began, time.perf_counter(), result.decode_ms / 1000, len(pcm8k) / 16000))
            return result

        pool.transcribe = timed_transcribe  # type: ignore[method-assign]
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


async def one_latency_call(bench: Bench, index: int) -> dict[str, float]:
    probes = bench.probes
    greeting = f"Hello caller number {index + 11}. This is the voice benchmark line."
    said = f"Your ticket number is {index + 407}. An agent will call you back soon."
    actions = [
        {"type": "transcribe_start", "option": {"language": "en-US", "direction": "in"}},
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
        transcript_at, transcript = await until(
            lambda: probes.event(
                "transcript_created", lambda d: d["transcribe_id"] == transcribe_id and d["direction"] == "in"
            ),
            40, "the caller's transcript", step=0.02,
        )
        last_voiced = max(t for t in recorder.voiced["in"] if t < transcript_at)

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
        greeting_first = greeting.split(". ")[0] + "."
        said_first = said.split(". ")[0] + "."
        greeting_render = next((r for r in probes.renders if r[0] > answered and r[2] == greeting_first), None)
        said_render = next((r for r in probes.renders if r[0] > say_sent and r[2] == said_first), None)
        decode = next((d for d in probes.decodes if d[0] > last_voiced and d[1] < transcript_at), None)
        breakdown: dict[str, float] = {}
        if greeting_render:
            breakdown["answer_to_tts_request"] = greeting_render[0] - answered
            breakdown["greeting_first_sentence_render"] = greeting_render[1] - greeting_render[0]
            breakdown["greeting_lead_silence"] = greeting_render[3]
            breakdown["greeting_rendered_to_first_sound"] = first_audio - greeting_render[1]
        if said_render:
            breakdown["say_to_tts_request"] = said_render[0] - say_sent
            breakdown["said_first_sentence_render"] = said_render[1] - said_render[0]
            breakdown["said_lead_silence"] = said_render[3]
            breakdown["said_rendered_to_first_sound"] = spoken - said_render[1]
        if decode:
            breakdown["speech_end_to_stt_request"] = decode[0] - last_voiced
            breakdown["stt_request_wall"] = decode[1] - decode[0]
            breakdown["stt_worker_decode"] = decode[2]
            breakdown["stt_reply_to_transcript_event"] = transcript_at - decode[1]
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
            "transcript": transcript["message"],
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
        phone.stop()
    if not calls:
        raise RuntimeError(f"no latency call succeeded: {failures}")
    keys = [k for k in calls[0] if k != "transcript" and ":" not in k]
    parts = sorted({k for c in calls for k in c if k.startswith("breakdown:")})
    return {
        **{f"{k}_ms": summary([c[k] for c in calls]) for k in keys},  # type: ignore[misc]
        "breakdown_ms": {
            k.split(":", 1)[1]: summary([c[k] for c in calls if k in c])  # type: ignore[misc]
            for k in parts
        },
        "first_call_ms": {k.split(":")[-1]: round(v * 1000, 1) for k, v in first.items() if k != "transcript" and not k.startswith("cpu:")},
        "failed_calls": failures,
        "baresip_cpu_pct": round(phone_cpu_pct, 1),
        "other_work_on_box_cpu_pct_per_call": [c["cpu:other_work_pct"] for c in calls],
        "bench_tree_cpu_pct_per_call": [c["cpu:bench_tree_pct"] for c in calls],
        "caller_transcripts": sorted({str(c["transcript"]) for c in calls}),
        "caller_said": CALLER_SAYS,
        "caller_speech_s": round(len(pcm) / 16000, 2),
    }


# ------------------------------------------------------------------------------------- capacity


async def start_echo_phone(bench: Bench, name: str, workdir: Path, started: list[asyncio.subprocess.Process]) -> None:
    """Register ``name`` from a port, then serve one call there with sipp's RTP echo (into ``started``)."""
    port = free_port()
    registered = await sipp.run_sipp(
        f"127.0.0.1:{bench.platform.sip.stack.port}", "-sf", str(sipp.SCENARIOS / "register.xml"),
        "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-s", name, "-au", name, "-ap", PHONE_PASSWORD,
        "-key", "domain", bench.domain, timeout=15,
    )
    assert registered.ok, registered.output[-1500:]
    # stdout to a file: sipp's screen output would fill a pipe nobody reads and stall it.
    with (workdir / f"{name}.log").open("wb") as log_file:
        started.append(
            await asyncio.create_subprocess_exec(
                "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-mi", "127.0.0.1",
                "-mp", str(free_port()), "-rtp_echo", "-nostdin", "-timeout", "120s",
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, cwd=workdir,
            )
        )


def match_latencies(ends: list[float], transcripts: list[float]) -> tuple[list[float], int, int]:
    """Each sentence end gets the earliest unclaimed transcript published after it.

    Returns (latencies, sentences without a transcript, transcripts left over)."""
    pending = sorted(transcripts)
    latencies: list[float] = []
    lost = 0
    for end in sorted(ends):
        match = next((t for t in pending if t > end), None)
        if match is None:
            lost += 1
            continue
        pending.remove(match)
        latencies.append(match - end)
    return latencies, lost, len(pending)


async def capacity_level(bench: Bench, level: int, rounds: int, period_s: float, gap_ms: int) -> dict[str, Any]:
    platform, probes = bench.platform, bench.probes
    workdir = bench.tmp / f"sipp-{level}"
    workdir.mkdir()
    names = [f"cap{level}x{i}" for i in range(level)]
    phones: list[asyncio.subprocess.Process] = []
    call_ids: list[str] = []
    passed = False
    actions: list[dict[str, Any]] = [{"type": "transcribe_start", "option": {"language": "en-US"}}]
    for r in range(rounds):
        actions.append({"type": "talk", "option": {"text": PROMPTS[r % len(PROMPTS)], "language": "en-US"}})
        actions.append({"type": "sleep", "option": {"duration": gap_ms if r < rounds - 1 else 600000}})
    try:
        for name in names:
            await bench.extension(name)
        await asyncio.gather(*(start_echo_phone(bench, n, workdir, phones) for n in names))
        await asyncio.sleep(0.5)  # let the UAS processes bind
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
            counts: dict[tuple[str | None, str], int] = {}
            for _, d in probes.all_events("transcript_created", began):
                key = (d["transcribe_id"], d["direction"])
                counts[key] = counts.get(key, 0) + 1
            return all(counts.get((transcribes.get(c), d), 0) >= rounds for c in call_ids for d in ("in", "out"))

        # Drain: everything spoken should be transcribed within the limit and then some.
        with contextlib.suppress(TimeoutError):
            await until(complete, LATENCY_LIMIT_S + 7, "the last transcripts", step=0.1)
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
            lost = extra = sentences = produced = 0
            for call_id in call_ids:
                recorder = await probes.recorder_of(call_id)
                segments = recorder.segments(direction)
                ends = [end for _, end in segments]
                # A sentence the phone never sent back is lost too (expected = rounds per call).
                missing = max(0, rounds - len(ends))
                times = transcripts_of(call_id, direction)
                got, unmatched, left = match_latencies(ends[:rounds], times)
                latencies += got
                lost += unmatched + missing
                extra += left
                sentences += len(ends)
                produced += len(times)
            per_direction[direction] = {
                "expected": rounds * level,
                "sentences_seen_on_tap": sentences,
                "transcripts": produced,
                "lost": lost,
                "extra": extra,
                "latency_ms": {k: v for k, v in summary(latencies).items() if k != "samples"},
            }
            all_latencies += latencies
            lost_total += lost
            extra_total += extra
        elapsed = wall1 - wall0
        p99 = percentile(all_latencies, 99) if all_latencies else float("inf")
        passed = bool(all_latencies) and p99 < LATENCY_LIMIT_S and lost_total == 0
        return {
            "calls": level,
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
            "dropped_by_stt_backlog": bench.counter.dropped,
            "stt_decode_failures": bench.counter.failed,
            "passed": passed,
        }
    finally:
        for call_id in call_ids:
            await bench.hangup(call_id)
        # Let the STT worker finish what these calls left queued before the next level (there is
        # none after a failed one: the platform's stop cuts the backlog short).
        started = {t for c in call_ids if (t := probes.transcribe_of(c))} if passed else set()
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
            break
        results.append(result)
        print(
            f"  N={level:>2}: cpu {result['platform_process_cpu_pct']}% + workers {result['speech_workers_cpu_pct']}%, "
            f"lateness p99 {result['media_lateness_ms']['p99']} ms, latency {result['latency_ms_both_directions']}, "
            f"lost in/out {result['transcripts']['in']['lost']}/{result['transcripts']['out']['lost']}, "
            f"passed {result['passed']}",
            flush=True,
        )
        if not result["passed"]:
            break
        capacity = level
    return {
        "levels": results,
        "max_calls_within_limits": capacity,
        "prompt_seconds": [round(d, 2) for d in durations],
        "period_s": round(period_s, 2),
    }


# ------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    counter = StderrCounter()
    platform_log = logging.getLogger("voipbin")
    platform_log.setLevel(logging.WARNING)  # counted; only errors are printed (root handler's level)
    platform_log.addHandler(counter)
    logging.getLogger("voipbin.speech.worker").setLevel(logging.INFO)  # "ready in N s" (counted, not printed)
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
            bench = Bench(platform, client, probes, tenant, source, tmp, counter, quiet)
            began = time.perf_counter()
            print(f"latency: 1 warm-up + {args.repeats} calls to baresip", flush=True)
            latency = await latency_phase(bench, args.repeats)
            latency_s = time.perf_counter() - began
            print(f"capacity: levels {args.levels}, {args.rounds} sentences per call, sipp echo phones", flush=True)
            began = time.perf_counter()
            capacity = await capacity_phase(bench, args.levels, args.rounds)
            capacity_s = time.perf_counter() - began
    finally:
        await platform.stop()
        platform_log.removeHandler(counter)
    return {
        "latency": latency,
        "capacity": capacity,
        "phase_seconds": {"latency": round(latency_s, 1), "capacity": round(capacity_s, 1)},
        "quiet_wait": {"waited_s": round(quiet.waited_s, 1), "gave_up": quiet.gave_up},
        "speech_worker_start_s": counter.worker_ready_s,
        "platform_warnings": counter.other,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=8, help="measured latency calls (after one warm-up)")
    parser.add_argument("--levels", default="1,2,3,4,6,8,12", help="concurrent calls per capacity level")
    parser.add_argument("--rounds", type=int, default=3, help="sentences each capacity call speaks")
    parser.add_argument("--quiet-pct", type=float, default=30.0, help="other work (%% of a core) to wait out")
    parser.add_argument("--quiet-wait", type=float, default=8.0, help="longest wait before one measurement")
    parser.add_argument("--quiet-budget", type=float, default=50.0, help="longest wait in all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "voice.json")
    args = parser.parse_args()
    args.levels = [int(n) for n in args.levels.split(",") if n.strip()]
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
    report = {
        "benchmark": "voice",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_id(),
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
            f"{args.repeats} measured calls, one at a time; actions transcribe_start (direction in) + talk "
            "('Hello caller number <n>. This is the voice benchmark line.') + sleep; then POST /v1.0/speakings "
            "and /say ('Your ticket number is <n>. ...'); the first sentence of each text is new to the TTS cache",
            "latency_timestamps": "post_to_invite: before POST /v1.0/calls -> first INVITE through SipStack._send; "
            "answer_to_first_audio: 200 OK for the INVITE in SipStack.receive -> first 'out' tap frame with mean "
            f"|sample| > {VOICED_LEVEL:.0f}; say_to_first_speech_rtp: before POST /say -> first such 'out' frame; "
            "end_of_speech_to_transcript: last 'in' frame over the threshold before the transcript -> "
            "transcript_created (direction in) entering EventBus.publish (after its commit)",
            "phones": "latency (1-4): baresip, one call at a time; capacity (5): sipp echo phones (-rtp_echo)",
            "capacity_phones": "sipp UAS processes (sip-tester, `-sn uas -rtp_echo`), each registered (register.xml, "
            "digest) to its own extension: they send back what the platform says, which must be transcribed as "
            "direction 'in' (and as 'out' from our side)",
            "capacity_calls": f"N calls placed with starts staggered evenly over one period (longest prompt + 1 s); "
            f"actions transcribe_start (direction both) + {args.rounds} x (talk prompt, sleep 1 s) + sleep; prompts "
            "identical for every call and pre-rendered into the TTS cache; expected = one transcript per prompt per "
            "direction; latency = last voiced tap frame of a prompt -> earliest unclaimed transcript after it",
            "capacity_pass": f"transcript latency p99 (both directions) < {LATENCY_LIMIT_S:.0f} s and no sentence "
            "without its transcript; levels stop at the first failure",
            "cpu": "platform_process_cpu_pct = time.process_time delta / wall (event loop, media, VAD, SQLite "
            "threads; includes this script's taps), speech_workers = Whisper + piper worker processes from /proc, "
            "all in % of one core; other_work_on_box = the whole machine's busy time (/proc/stat) minus this "
            "process tree's: the box is shared with other work",
            "quiet_wait": f"before each measured call / level: wait up to {args.quiet_wait:.0f} s ({args.quiet_budget:.0f} s "
            f"in all) for other work under {args.quiet_pct:.0f}% of a core",
            "breakdown": "piper render and Whisper decode timed by wrapping PiperTts.render and SttWorkerPool.transcribe "
            "on the running platform's objects; lead silence = first frame over the threshold in the rendered PCM",
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


if __name__ == "__main__":
    main()
