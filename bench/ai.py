"""AI voice agents: end of the caller's speech -> the AI's first audio on the wire, and capacity.

Each call is placed to a baresip phone whose microphone asks a question every ``QUESTION_EVERY_S``;
the call's flow is ``ai_talk``. Taps on the call's RTP endpoint time the frames: the end of a
question is its last loud inbound frame, the reply's start the first loud outbound frame after it.
Wrappers around the session's conversation (installed here, the code itself unchanged) time the
steps between: the recogniser's final, the model request and its first token, the first sentence
sent to be spoken. Two models in one run: a scripted OpenAI-compatible server on loopback (the
platform's own overhead) and the shipped local model (SmolLM2-135M on llama.cpp). Capacity: levels
of concurrent AI calls on the scripted model, a level passing while reply latency p95 stays under
``REPLY_LIMIT_S``, media lateness p99 under 5 ms and no question goes unanswered.

    .venv/bin/python -m bench.ai [--quick] [--out bench/results/ai.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import commit_id
from bench.voice import LATENESS_LIMIT_MS, percentile, start_baresip
from tests.ai.fake_llm import FakeLlm, Scripted
from tests.conftest import ADMIN, Tenant, login, make_settings, new_tenant

from voipbin.ai import conversation as cv
from voipbin.ai.session import AiTalkSession
from voipbin.api.app import create_app
from voipbin.runtime import Platform

LOUD = 300.0  # mean |sample| of a 20 ms frame of speech
QUESTION_EVERY_S = 7.0
FIRST_QUESTION_S = 4.0
REPLY_LIMIT_S = 1.5
PASSWORD = "bench-ai-pass-1"
QUESTIONS = [
    "What time do you open tomorrow?", "Do you have rye bread today?", "Can I order a birthday cake?",
    "Where is the shop?", "Do you deliver on Sundays?", "How much is a loaf of sourdough?",
]  # fmt: skip
PROMPT = "You answer the phone for Rosa's Bakery. It opens at 7 am and closes at 6 pm. Answer in one short sentence."


@dataclass
class Marks:
    """perf_counter times of one call's steps, in order of occurrence."""

    finals: list[float] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)
    first_says: list[float] = field(default_factory=list)
    _turn_said: set[int] = field(default_factory=set)
    _turn_token: set[int] = field(default_factory=set)


MARKS: dict[str, Marks] = {}  # by call id


def install_probes() -> None:
    """Time the conversation's steps by wrapping the session's two entry points."""
    carry_out, handle = AiTalkSession._carry_out, cv.Conversation.handle

    async def timed_carry_out(self: AiTalkSession, command: cv.Command) -> None:
        marks = MARKS.setdefault(self.request.call_id, Marks())
        now = time.perf_counter()
        if isinstance(command, cv.Generate):
            marks.requests.append(now)
        elif isinstance(command, cv.Say):
            turn = len(marks.requests)
            if turn not in marks._turn_said:
                marks._turn_said.add(turn)
                marks.first_says.append(now)
        await carry_out(self, command)

    def timed_handle(self: cv.Conversation, event: cv.Event) -> list[cv.Command]:
        marks = getattr(self, "bench_marks", None)
        if marks is not None:
            now = time.perf_counter()
            if isinstance(event, cv.CallerSaid):
                marks.finals.append(now)
            elif isinstance(event, cv.ReplyText) and event.turn not in marks._turn_token:
                marks._turn_token.add(event.turn)
                marks.first_tokens.append(now)
        return handle(self, event)

    original_init = AiTalkSession.__init__

    def init(self: AiTalkSession, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._conversation.bench_marks = MARKS.setdefault(self.request.call_id, Marks())  # type: ignore[attr-defined]

    AiTalkSession._carry_out = timed_carry_out  # type: ignore[method-assign]
    cv.Conversation.handle = timed_handle  # type: ignore[method-assign]
    AiTalkSession.__init__ = init  # type: ignore[method-assign]


@dataclass
class Tap:
    """Each frame's perf_counter time when it was loud, per direction."""

    loud: dict[str, list[float]] = field(default_factory=lambda: {"in": [], "out": []})

    def callback(self, direction: str) -> Callable[[bytes], None]:
        times = self.loud[direction]

        def record(pcm: bytes) -> None:
            if np.abs(np.frombuffer(pcm, "<i2").astype(np.int32)).mean() > LOUD:
                times.append(time.perf_counter())

        return record


def bursts(times: list[float], gap_s: float = 0.6) -> list[tuple[float, float]]:
    """Loud frames grouped into utterances: (first frame, last frame)."""
    out: list[tuple[float, float]] = []
    for t in times:
        if out and t - out[-1][1] <= gap_s:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


async def microphone(platform: Platform, path: Path, questions: list[str]) -> Path:
    rate = 8000
    pcm = np.zeros(0, dtype="<i2")
    for n, text in enumerate(questions):
        spoken = np.frombuffer(await platform.speech.tts.synthesize(text), dtype="<i2")
        at = int((FIRST_QUESTION_S + n * QUESTION_EVERY_S) * rate)
        pcm = np.concatenate([pcm, np.zeros(max(0, at - len(pcm)), dtype="<i2"), spoken])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes() + bytes(rate * 2 * 30))
    return path


@dataclass
class Rig:
    platform: Platform
    client: httpx.AsyncClient
    tenant: Tenant
    source: str
    tmp: Path
    phones: int = 0

    async def ai(self, engine_model: str) -> str:
        body = {"name": engine_model, "engine_model": engine_model, "init_prompt": PROMPT}
        created = await self.client.post("/v1.0/ais", params=self.tenant.auth, json=body)
        assert created.status_code == 200, created.text
        return str(created.json()["id"])

    async def call(self, ai_id: str, questions: list[str]) -> dict[str, Any]:
        """One call asking ``questions``; each question's reply latency and its split."""
        self.phones += 1
        name = f"ai{self.phones}"
        body = {"name": name, "detail": "bench", "extension": name, "password": PASSWORD}
        assert (await self.client.post("/v1.0/extensions", params=self.tenant.auth, json=body)).status_code == 200
        mic = await microphone(self.platform, self.tmp / f"{name}.wav", questions)
        domain = f"{self.tenant.customer_id}.registrar.voipbin.test"
        phone = start_baresip(self.tmp / name, user=name, password=PASSWORD, domain=domain,
                              sip_port=self.platform.sip.stack.port, microphone=mic)
        try:
            await until(lambda: bool(self.platform.sip.registrations(self.tenant.customer_id, name)), 15)
            request = {
                "source": {"type": "tel", "target": self.source},
                "destinations": [{"type": "extension", "target_name": name}],
                "actions": [{"type": "ai_talk", "option": {"assistance_id": ai_id, "duration": 600}}],
            }
            placed = await self.client.post("/v1.0/calls", params=self.tenant.auth, json=request)
            assert placed.status_code == 200, placed.text
            call_id = placed.json()["groupcalls"][0]["call_ids"][0]
            await until(lambda: (live := self.platform.calls.live.get(call_id)) is not None and live.endpoint is not None, 15)
            endpoint = self.platform.calls.live[call_id].endpoint
            assert endpoint is not None
            tap = Tap()
            endpoint.add_tap("in", tap.callback("in"))
            endpoint.add_tap("out", tap.callback("out"))
            await asyncio.sleep(FIRST_QUESTION_S + len(questions) * QUESTION_EVERY_S + 1)
            await self.client.delete(f"/v1.0/calls/{call_id}", params=self.tenant.auth)
        finally:
            phone.stop()
        return turns(tap, MARKS.get(call_id, Marks()), len(questions))


def turns(tap: Tap, marks: Marks, asked: int) -> dict[str, Any]:
    """Each question (an inbound burst) with the reply that followed it."""
    questions = bursts(tap.loud["in"])[-asked:]
    out_frames = tap.loud["out"]
    results: list[dict[str, float]] = []
    for _, end in questions:
        reply = next((t for t in out_frames if t > end), None)
        final = next((t for t in marks.finals if t > end - 0.2), None)
        if reply is None or final is None:
            continue
        request = next((t for t in marks.requests if t >= final), None)
        token = next((t for t in marks.first_tokens if request is not None and t >= request), None)
        say = next((t for t in marks.first_says if token is not None and t >= token), None)
        if None in (request, token, say) or reply - end > QUESTION_EVERY_S:
            continue
        assert request is not None and token is not None and say is not None
        results.append({
            "total": reply - end, "end_of_turn": final - end, "stt_final_to_llm_request": request - final,
            "llm_first_token": token - request, "first_sentence": say - token, "tts_first_audio": reply - say,
        })  # fmt: skip
    return {"asked": asked, "answered": len(results), "turns": results}


def split(all_turns: list[dict[str, float]]) -> dict[str, Any]:
    if not all_turns:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(all_turns)}
    for key in all_turns[0]:
        values = [t[key] * 1000 for t in all_turns]
        out[key] = {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1)}
    return out


async def latency(rig: Rig, ai_id: str, calls: int, per_call: int) -> dict[str, Any]:
    found: list[dict[str, float]] = []
    asked = 0
    for n in range(calls):
        result = await rig.call(ai_id, [QUESTIONS[(n + i) % len(QUESTIONS)] for i in range(per_call)])
        found += result["turns"]
        asked += result["asked"]
    return {"asked": asked, "answered": len(found), **split(found)}


async def capacity(rig: Rig, ai_id: str, levels: list[int], per_call: int) -> dict[str, Any]:
    engine = rig.platform.sip.media
    results = []
    for level in levels:
        before = engine.lateness.count
        outcomes = await asyncio.gather(*(rig.call(ai_id, QUESTIONS[:per_call]) for _ in range(level)))
        samples = list(engine.lateness._samples)
        fresh = min(len(samples), engine.lateness.count - before)
        lateness = [s * 1000 for s in samples[len(samples) - fresh :]] or [0.0]
        found = [t for o in outcomes for t in o["turns"]]
        asked = sum(o["asked"] for o in outcomes)
        totals = [t["total"] for t in found] or [float("inf")]
        entry = {
            "calls": level, "asked": asked, "answered": len(found),
            "reply_p50_ms": round(percentile(totals, 50) * 1000, 1), "reply_p95_ms": round(percentile(totals, 95) * 1000, 1),
            "media_lateness_p99_ms": round(percentile(lateness, 99), 2),
        }  # fmt: skip
        entry["passes"] = (
            len(found) == asked and percentile(totals, 95) < REPLY_LIMIT_S and entry["media_lateness_p99_ms"] < LATENESS_LIMIT_MS
        )
        results.append(entry)
        print(f"  capacity {level}: {entry}", flush=True)
    passing = [r["calls"] for r in results if r["passes"]]
    return {"levels": results, "max_calls_within_limits": max(passing, default=0)}


async def until(condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("timed out")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    install_probes()
    fake = FakeLlm()
    await fake.start()
    os.environ["VOIPBIN_LLM_OLLAMA_URL"] = fake.url
    fake.script(*(Scripted(text=f"Sure, noted, number {n}.") for n in range(10_000)))
    platform = Platform(make_settings(tmp / "data"))
    await platform.start()
    began = time.perf_counter()
    try:
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver", timeout=30) as client:
            token = await login(client, **ADMIN)
            me = (await client.get("/v1.0/customer", params={"token": token})).json()
            tenant = await new_tenant(client, Tenant(me["id"], ADMIN["username"], token, ""), "ai-bench@example.com")
            source = (await client.get("/v1.0/numbers", params=tenant.auth)).json()["result"][0]["number"]
            rig = Rig(platform, client, tenant, source, tmp)
            scripted, local = await rig.ai("ollama.scripted"), await rig.ai("local.smollm2")
            await platform.local_llm.endpoint("smollm2")  # started before timing: a fresh install starts it on first use
            print("latency: scripted model", flush=True)
            scripted_latency = await latency(rig, scripted, args.calls, args.questions)
            print("latency: local model", flush=True)
            local_latency = await latency(rig, local, args.calls, args.questions)
            print(f"capacity: levels {args.levels}", flush=True)
            load = await capacity(rig, scripted, args.levels, args.questions)
    finally:
        await platform.stop()
        await fake.stop()
    return {
        "latency_scripted_model": scripted_latency,
        "latency_local_model": local_latency,
        "capacity_scripted_model": load,
        "run_seconds": round(time.perf_counter() - began, 1),
    }


def must_show(results: dict[str, Any]) -> dict[str, Any]:
    def reply(latency: dict[str, Any]) -> dict[str, Any]:
        return {"reply_p50_ms": latency.get("total", {}).get("p50"), "reply_p95_ms": latency.get("total", {}).get("p95"),
                "answered": f"{latency['answered']}/{latency['asked']}"}

    return {
        "end_of_speech_to_first_ai_audio_scripted": reply(results["latency_scripted_model"]),
        "end_of_speech_to_first_ai_audio_local": reply(results["latency_local_model"]),
        "max_concurrent_ai_calls_2_cores": results["capacity_scripted_model"]["max_calls_within_limits"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one call per model, levels 1 and 2")
    parser.add_argument("--calls", type=int, default=4, help="latency calls per model")
    parser.add_argument("--questions", type=int, default=5, help="questions per call")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 6, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ai.json")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.questions, args.levels = 1, 3, [1, 2]
    with tempfile.TemporaryDirectory(prefix="bench-ai-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    report = {"commit": commit_id(), "cores": os.cpu_count(), "must_show": must_show(results), **results}
    print(json.dumps(report["must_show"], indent=2))
    if not args.quick:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
