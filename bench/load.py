"""Sustained mixed load: registrations, calls with media and transcription, API traffic and events.

Starts `voipbin start` as a subprocess on loopback ports with its own data dir (tests/e2e/server.py):
embedded (SQLite, in-process bus) by default, scaled out with ``--database-url``/``--redis-url``
(a scratch database is created on that PostgreSQL server and dropped afterwards; Redis keys live
under a fresh namespace and are deleted afterwards). A customer is created by the operator; then,
together, for ``--seconds``:

* ``--extensions`` idle extensions stay registered: one sipp process (bench/load/register_refresh.xml)
  registers each with digest auth and refreshes it every ``--refresh`` s (Expires twice that); first
  registrations are spread over one refresh period, so REGISTER traffic is steady from the start;
* ``--calls`` phones (extensions registered once from the port of one sipp UAS that answers and
  echoes RTP back) each get one call after another through POST /v1.0/calls with a groupcall to the
  extension: transcribe_start (both directions) + talk + sleep + hangup;
* API traffic at ``--api-rate`` requests/s, open loop (each request starts on schedule whatever
  the others do): GET list of extensions and of calls, GET one extension, POST an extension,
  DELETE one created earlier;
* a WebSocket subscribed to ``customer_id:<customer>:*`` and a webhook receiver on loopback (set with
  PUT /v1.0/customer) record each event and its delivery latency: arrival - the event's ``timestamp``.

Lost events are events the bench's actions must have produced (extension_created per POST,
extension_deleted per DELETE, call_created/call_hangup per call, groupcall_created/groupcall_hangup
per groupcall) that never arrived on the WebSocket, or at the webhook, by the end of the drain.
The platform process's RSS is sampled every ``--sample-every`` s with its least-squares slope; CPU
is the platform process, its speech workers, the sipp peers, this script and the rest of the box.
Everything shares the machine's cores: figures are floors for the platform alone.

    .venv/bin/python bench/load.py [--seconds 120] [--extensions 100] [--calls 4] [--api-rate 10]
    .venv/bin/python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/test \\
        --redis-url redis://127.0.0.1:6379/0          # -> bench/results/load-scaleout.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.report import header  # noqa: E402  (after the path is set)
from tests.e2e.server import RunningServer, start_server  # noqa: E402
from tests.live import free_port  # noqa: E402
from voipbin.core.clock import parse_timestamp  # noqa: E402

SCENARIOS = ROOT / "bench" / "load"
RESULTS = ROOT / "bench" / "results"
ADMIN = {"username": "admin@localhost", "password": "admin@localhost"}
PASSWORD = "load-bench-pass"
PROMPT = "Thank you for calling. This is the load test line, please hold on."
PHONE_EXPIRES_S = 7200  # the registrar's longest: phones register once and never refresh
# One cycle of the API traffic: 60% lists, 10% reads of one row, 20% creates, 10% deletes.
API_MIX = ["list_extensions"] * 4 + ["list_calls"] * 2 + ["get_extension"] + ["create_extension"] * 2 + ["delete_extension"]
TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def stats_ms(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p99": round(percentile(ms, 99), 1), "max": round(max(ms), 1)}


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def concurrency(intervals: list[tuple[float, float]], start: float, end: float) -> dict[str, float]:
    """Peak and time-averaged number of intervals open within [start, end]."""
    inside = [(max(a, start), min(b, end)) for a, b in intervals if b > start and a < end]
    open_now = peak = 0
    for _, step in sorted([(a, 1) for a, _ in inside] + [(b, -1) for _, b in inside]):  # ends sort before starts
        open_now += step
        peak = max(peak, open_now)
    return {"peak": peak, "average": round(sum(b - a for a, b in inside) / (end - start), 2)}


# ------------------------------------------------------------------------------------- /proc


def cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def box_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / TICK


@dataclass
class CpuReading:
    wall: float
    platform: float
    workers: dict[int, float]
    sipp: float
    bench: float
    box: float


def read_cpu(platform_pid: int, sipp_pids: list[int]) -> CpuReading:
    own = os.times()
    return CpuReading(
        time.time(), cpu_s(platform_pid), {p: cpu_s(p) for p in children(platform_pid)},
        sum(cpu_s(p) for p in sipp_pids), own.user + own.system, box_busy_s(),
    )


def cpu_between(a: CpuReading, b: CpuReading) -> dict[str, float]:
    """Each part's CPU over the window, in % of one core (a worker that started meanwhile counts from 0)."""
    wall = b.wall - a.wall
    workers = sum(t - a.workers.get(pid, 0.0) for pid, t in b.workers.items())
    parts = {"platform_process": b.platform - a.platform, "speech_workers": workers, "sipp_peers": b.sipp - a.sipp,
             "load_generator": b.bench - a.bench}
    parts["rest_of_box"] = max(0.0, b.box - a.box - sum(parts.values()))
    return {f"{name}_pct": round(100 * seconds / wall, 1) for name, seconds in parts.items()}


@dataclass
class MemorySampler:
    platform_pid: int
    samples: list[dict[str, float]] = field(default_factory=list)

    async def run(self, every_s: float, began: float) -> None:
        while True:
            workers = await asyncio.to_thread(lambda: sum(rss_mb(p) for p in children(self.platform_pid)))
            self.samples.append({"t_s": round(time.time() - began, 1), "platform_rss_mb": round(rss_mb(self.platform_pid), 1),
                                 "speech_workers_rss_mb": round(workers, 1)})
            await asyncio.sleep(every_s)

    def summary(self) -> dict[str, Any]:
        platform = [(s["t_s"], s["platform_rss_mb"]) for s in self.samples]
        workers = [(s["t_s"], s["speech_workers_rss_mb"]) for s in self.samples]
        second_half = [p for p in platform if p[0] >= platform[-1][0] / 2]
        return {
            "platform_rss_mb": span(platform),
            "platform_slope_mb_per_min": round(slope_per_min(platform), 2),
            "platform_slope_second_half_mb_per_min": round(slope_per_min(second_half), 2),
            "speech_workers_rss_mb": span(workers),
            "speech_workers_slope_mb_per_min": round(slope_per_min(workers), 2),
            "samples": self.samples,
        }


def span(points: list[tuple[float, float]]) -> dict[str, float]:
    return {"first": points[0][1], "last": points[-1][1], "peak": max(v for _, v in points)}


# ------------------------------------------------------------------------------------- events


@dataclass
class Channel:
    """What arrived on one delivery path (WebSocket or webhook)."""

    latencies: list[float] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    types: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0

    def record(self, frame: dict[str, Any], arrived: float, unique_id: str) -> bool:
        """Count a frame once per event (WebSocket cursor, webhook delivery id); False for a repeat."""
        if unique_id in self.ids:
            self.duplicates += 1
            return False
        self.ids.add(unique_id)
        self.latencies.append(arrived - parse_timestamp(frame["timestamp"]).timestamp())
        self.seen.add((frame["event_type"], str(frame["data"].get("id", ""))))
        self.types[frame["event_type"]] += 1
        return True

    def report(self, expected: set[tuple[str, str]]) -> dict[str, Any]:
        lost = sorted(expected - self.seen)
        return {
            "events": sum(self.types.values()),
            "latency_ms": stats_ms(self.latencies),
            "expected": len(expected),
            "lost": len(lost),
            "lost_examples": [f"{t} {i}" for t, i in lost[:10]],
            "duplicates": self.duplicates,
            "by_type": dict(sorted(self.types.items())),
        }


class Events:
    """The expected events, what each channel received, and call hang-ups for the call drivers."""

    def __init__(self) -> None:
        self.expected: set[tuple[str, str]] = set()
        self.websocket = Channel()
        self.webhook = Channel()
        self.by_call: dict[str, set[str]] = {}  # call id -> call_* event types seen
        self.transcribe_of: dict[str, str] = {}  # transcribe id -> call id
        self.transcripts: Counter[str] = Counter()  # call id -> transcript_created seen
        self.transcribes_done: set[str] = set()
        self._hangups: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def expect(self, event_type: str, resource_id: str) -> None:
        self.expected.add((event_type, resource_id))

    def on_websocket(self, frame: dict[str, Any]) -> None:
        if not self.websocket.record(frame, time.time(), frame["cursor"]):
            return
        kind, data = frame["event_type"], frame["data"]
        if kind.startswith("call_"):
            self.by_call.setdefault(data["id"], set()).add(kind)
        if kind == "call_hangup" and not self._hangup(data["id"]).done():
            self._hangup(data["id"]).set_result(data)
        elif kind == "transcribe_created":
            self.transcribe_of[data["id"]] = data["reference_id"]
        elif kind == "transcript_created":
            self.transcripts[self.transcribe_of.get(data["transcribe_id"], "")] += 1
        elif kind == "transcribe_done":
            self.transcribes_done.add(data["id"])

    def _hangup(self, call_id: str) -> asyncio.Future[dict[str, Any]]:
        return self._hangups.setdefault(call_id, asyncio.get_running_loop().create_future())

    async def hangup_of(self, call_id: str, timeout: float) -> dict[str, Any] | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self._hangup(call_id)), timeout)
        return None

    def missing(self) -> int:
        return len(self.expected - self.websocket.seen) + len(self.expected - self.webhook.seen)

    def settled(self) -> bool:
        """Nothing expected is missing, every transcription is done, and the webhook has caught up with the WebSocket."""
        webhook_behind = sum(self.webhook.types.values()) < sum(self.websocket.types.values())
        return self.missing() == 0 and self.unfinished_transcribes() == 0 and not webhook_behind

    def unfinished_transcribes(self) -> int:
        """Transcriptions started whose transcribe_done has not come (their recogniser backlog is still queued)."""
        return len(set(self.transcribe_of) - self.transcribes_done)


async def read_websocket(url: str, customer_id: str, events: Events, subscribed: asyncio.Event) -> None:
    async with websockets.connect(url, max_size=None) as socket:
        await socket.send(json.dumps({"type": "subscribe", "topics": [f"customer_id:{customer_id}:*"]}))
        async for raw in socket:
            frame = json.loads(raw)
            if frame.get("type") == "subscribed":
                subscribed.set()
            elif "event_type" in frame:
                events.on_websocket(frame)


async def serve_webhooks(events: Events) -> tuple[asyncio.Server, str]:
    """A minimal HTTP/1.1 receiver (keep-alive) that records every delivery and answers 200."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled: the bench is ending with the dispatcher's keep-alive connection still open.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")[1:]
                headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                events.webhook.record(json.loads(body), time.time(), headers.get("x-voipbin-delivery-id", ""))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(connection, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/load/events"


# ------------------------------------------------------------------------------------- API


@dataclass
class Api:
    client: httpx.AsyncClient
    token: str
    events: Events

    @property
    def auth(self) -> dict[str, str]:
        return {"token": self.token}

    async def create_extension(self, name: str) -> httpx.Response:
        body = {"name": name, "detail": "load bench", "extension": name, "password": PASSWORD}
        response = await self.client.post("/v1.0/extensions", params=self.auth, json=body)
        if response.status_code == 200:
            self.events.expect("extension_created", response.json()["id"])
        return response

    async def delete_extension(self, extension_id: str) -> httpx.Response:
        response = await self.client.delete(f"/v1.0/extensions/{extension_id}", params=self.auth)
        if response.status_code == 200:
            self.events.expect("extension_deleted", extension_id)
        return response

    async def registered(self, extension_ids: set[str]) -> int:
        """How many of these extensions have a live registration (walks every page)."""
        found, token = 0, ""
        while True:
            page = (await self.client.get("/v1.0/extensions", params={**self.auth, "page_token": token})).json()
            found += sum(1 for e in page["result"] if e["id"] in extension_ids and e["registered"])
            token = page["next_page_token"]
            if not token:
                return found


async def new_customer(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A fresh customer made by the operator: (customer id, its admin's token, its first number)."""
    admin = (await client.post("/auth/login", json=ADMIN)).json()["token"]
    email = f"load-{secrets.token_hex(4)}@example.com"
    created = await client.post("/v1.0/customers", params={"token": admin}, json={"email": email, "password": PASSWORD})
    created.raise_for_status()
    token = (await client.post("/auth/login", json={"username": email, "password": PASSWORD})).json()["token"]
    number = (await client.get("/v1.0/numbers", params={"token": token})).json()["result"][0]["number"]
    return created.json()["id"], token, number


@dataclass
class ApiTraffic:
    """GET/POST/DELETE at a fixed rate, open loop; latency per request kind."""

    api: Api
    idle_ids: list[str]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    created: list[str] = field(default_factory=list)
    count: int = 0

    async def run(self, rate: float, deadline: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        began = time.time()
        while (due := began + self.count / rate) < deadline:
            await asyncio.sleep(max(0.0, due - time.time()))
            task = asyncio.create_task(self.one(API_MIX[self.count % len(API_MIX)], self.count))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.count += 1
        await asyncio.gather(*tasks)

    async def one(self, kind: str, n: int) -> None:
        began = time.perf_counter()
        try:
            response = await self.request(kind, n)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        self.latencies.setdefault(kind, []).append(time.perf_counter() - began)
        if not ok:
            self.errors[kind] += 1

    async def request(self, kind: str, n: int) -> httpx.Response:
        client, auth = self.api.client, self.api.auth
        if kind == "list_extensions":
            return await client.get("/v1.0/extensions", params={**auth, "page_size": 50})
        if kind == "list_calls":
            return await client.get("/v1.0/calls", params={**auth, "page_size": 50})
        if kind == "get_extension":
            return await client.get(f"/v1.0/extensions/{self.idle_ids[n % len(self.idle_ids)]}", params=auth)
        if kind == "delete_extension" and self.created:
            return await self.api.delete_extension(self.created.pop(0))
        response = await self.api.create_extension(f"api{n}")
        if response.status_code == 200:
            self.created.append(response.json()["id"])
        return response

    def report(self) -> dict[str, Any]:
        everything = [v for values in self.latencies.values() for v in values]
        return {
            "requests": len(everything),
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(self.errors),
            "latency_ms": stats_ms(everything),
            "latency_ms_by_kind": {kind: stats_ms(values) for kind, values in sorted(self.latencies.items())},
        }


# ------------------------------------------------------------------------------------- calls


@dataclass
class CallRecord:
    call_id: str
    posted_at: float
    post_s: float  # POST /v1.0/calls response time
    hangup_at: float = 0.0
    hangup_reason: str = ""


@dataclass
class CallDriver:
    """One phone: a call, then as soon as it has hung up the next, until the deadline."""

    api: Api
    phone: str
    source: str
    sleep_ms: int
    records: list[CallRecord]
    post_errors: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "source": {"type": "tel", "target": self.source},
            "destinations": [{"type": "extension", "target_name": self.phone}],
            "actions": [
                {"type": "transcribe_start", "option": {"language": "en-US"}},
                {"type": "talk", "option": {"text": PROMPT, "language": "en-US"}},
                {"type": "sleep", "option": {"duration": self.sleep_ms}},
                {"type": "hangup"},
            ],
        }

    async def run(self, deadline: float, timeout_s: float) -> None:
        while time.time() < deadline:
            record = await self.place()
            if record is None:
                self.post_errors += 1
                await asyncio.sleep(1)
                continue
            hangup = await self.api.events.hangup_of(record.call_id, timeout_s)
            if hangup is None:  # never heard of it again: hang it up so the phone is free
                with contextlib.suppress(httpx.HTTPError):
                    await self.api.client.post(f"/v1.0/calls/{record.call_id}/hangup", params=self.api.auth)
                continue
            record.hangup_at, record.hangup_reason = time.time(), hangup.get("hangup_reason", "")

    async def place(self) -> CallRecord | None:
        posted = time.time()
        try:
            response = await self.api.client.post("/v1.0/calls", params=self.api.auth, json=self.body())
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        groupcall = response.json()["groupcalls"][0]
        record = CallRecord(groupcall["call_ids"][0], posted, time.time() - posted)
        self.records.append(record)
        self.expect(groupcall["id"], record.call_id)
        return record

    def expect(self, groupcall_id: str, call_id: str) -> None:
        for kind, resource in (("groupcall_created", groupcall_id), ("groupcall_hangup", groupcall_id),
                               ("call_created", call_id), ("call_hangup", call_id)):
            self.api.events.expect(kind, resource)


def calls_report(records: list[CallRecord], events: Events, began: float, deadline: float, post_errors: int) -> dict[str, Any]:
    window = deadline - began
    answered = [r for r in records if "call_progressing" in events.by_call.get(r.call_id, set())]
    completed = [r for r in answered if r.hangup_reason == "normal"]
    intervals = [(r.posted_at, r.hangup_at or deadline) for r in records]
    transcripts = [events.transcripts.get(r.call_id, 0) for r in records]
    return {
        "placed": len(records),
        "answered": len(answered),
        "completed": len(completed),
        "post_errors": post_errors,
        "not_hung_up": sum(1 for r in records if not r.hangup_at),
        "hangup_reasons": dict(Counter(r.hangup_reason or "(none)" for r in records)),
        "placed_per_s": round(len(records) / window, 3),
        "completed_per_s": round(len(completed) / window, 3),
        "concurrent_calls": concurrency(intervals, began, deadline),
        "post_calls_latency_ms": stats_ms([r.post_s for r in records]),
        "call_duration_ms": stats_ms([r.hangup_at - r.posted_at for r in records if r.hangup_at]),
        "transcripts": sum(transcripts),
        "calls_without_transcript": sum(1 for n in transcripts if n == 0),
        "transcribes_unfinished_after_drain": events.unfinished_transcribes(),
    }


# ------------------------------------------------------------------------------------- sipp


def write_users(path: Path, names: list[str]) -> Path:
    """A sipp -inf file: extension; password; the [authentication] keyword for that user."""
    lines = [f"{n};{PASSWORD};[authentication username={n} password={PASSWORD}]" for n in names]
    path.write_text("SEQUENTIAL\n" + "\n".join(lines) + "\n")
    return path


def sipp_common(server: RunningServer, domain: str, users: Path, port: int, expires: int) -> list[str]:
    return ["sipp", f"127.0.0.1:{server.sip_port}", "-inf", str(users), "-i", "127.0.0.1", "-p", str(port), "-t", "u1",
            "-key", "domain", domain, "-key", "expires", str(expires), "-auth_uri", f"sip:{domain}", "-nostdin"]


def register_phones(server: RunningServer, domain: str, names: list[str], workdir: Path) -> int:
    """Registers every phone once from one port; returns that port, for the UAS."""
    port = free_port()
    command = sipp_common(server, domain, write_users(workdir / "phones.csv", names), port, PHONE_EXPIRES_S)
    command += ["-sf", str(SCENARIOS / "register_once.xml"), "-m", str(len(names)), "-l", str(len(names)), "-timeout", "30s"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"phones did not register: {result.stdout.decode(errors='replace')[-1500:]}")
    return port


def start_phone_uas(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """sipp's built-in UAS on the phones' port: answers every call and echoes its RTP back."""
    command = ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port()),
               "-rtp_echo", "-nostdin"]
    with (workdir / "uas.err").open("wb") as err:
        return subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)


def start_registrations(server: RunningServer, domain: str, names: list[str], refresh_s: float, workdir: Path
                        ) -> subprocess.Popen[bytes]:
    """Every idle extension registered, then refreshed every refresh_s; first registrations spread over one period."""
    command = sipp_common(server, domain, write_users(workdir / "idle.csv", names), free_port(), int(2 * refresh_s))
    command += ["-sf", str(SCENARIOS / "register_refresh.xml"), "-m", str(len(names)), "-l", str(len(names)),
                "-r", str(len(names)), "-rp", str(int(refresh_s * 1000)), "-d", str(int(refresh_s * 1000)),
                "-buff_size", str(4 << 20), "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "5"]
    with (workdir / "idle.err").open("wb") as err:
        return subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)


def registrations_report(workdir: Path, seconds: float, idle: int, registered_at_end: int) -> dict[str, Any]:
    times = [float(row[1]) / 1000 for path in workdir.glob("register_refresh_*_rtt.csv")
             for row in csv.reader(path.open(), delimiter=";") if len(row) >= 3 and row[2].strip() == "1"]
    stat: dict[str, str] = {}
    for path in workdir.glob("register_refresh_*_.csv"):
        rows = list(csv.reader(path.open(), delimiter=";"))
        stat = dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}
    return {
        "extensions": idle,
        "registered_at_end": registered_at_end,
        "registrations": len(times),
        "registrations_per_s": round(len(times) / seconds, 2),
        "registration_ms": stats_ms(times),
        "failed": int(stat.get("FailedCall(C)", 0)),
        "retransmissions": int(stat.get("Retransmissions(C)", 0)),
    }


def exited_peers(peers: dict[str, subprocess.Popen[bytes]], workdir: Path) -> dict[str, str]:
    """The sipp peers that are no longer running, with the end of what they printed (<name>.err)."""
    return {name: f"rc {p.returncode}: {(workdir / f'{name}.err').read_text(errors='replace')[-500:]}"
            for name, p in peers.items() if p.poll() is not None}


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ------------------------------------------------------------------------------------- backend


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    """The platform's SQLAlchemy URL (asyncpg driver) for database ``name`` on the server of ``url``."""
    return asyncpg_url(url).rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


async def postgres(url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_url(url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def backend(database_url: str, redis_url: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """`voipbin start` flags and environment: embedded, or a scratch database and Redis namespace."""
    name = f"vb_load_{secrets.token_hex(4)}"
    flags: list[str] = []
    env: dict[str, str] = {}
    if database_url:
        asyncio.run(postgres(database_url, f'CREATE DATABASE "{name}"'))
        flags += ["--database-url", with_database(database_url, name)]
    if redis_url:
        flags += ["--redis-url", redis_url]
        env["VOIPBIN_REDIS_NAMESPACE"] = f"vbload:{name}"
    try:
        yield flags, env
    finally:
        if database_url:
            asyncio.run(postgres(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if redis_url:
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"vbload:{name}:*"))
            if keys:
                client.delete(*keys)
            client.close()


def log_problems(log_path: Path) -> dict[str, Any]:
    """The platform's WARNING and ERROR lines, counted by message (the timestamp cut off)."""
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if " WARNING " in ln or " ERROR " in ln]
    messages = Counter(ln.split(" ", 2)[-1][:300] for ln in lines)
    return {"warnings_and_errors": len(lines), "by_message": dict(messages.most_common(10))}


# ------------------------------------------------------------------------------------- run


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.5) -> bool:
    deadline = time.time() + timeout
    while not await condition():
        if time.time() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def run(args: argparse.Namespace, server: RunningServer, workdir: Path) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.http_url, limits=limits, timeout=30) as client:
        customer_id, token, number = await new_customer(client)
        events = Events()
        api = Api(client, token, events)
        subscribed = asyncio.Event()
        ws_url = f"ws://127.0.0.1:{server.http_port}/v1.0/ws?token={token}"
        reader = asyncio.create_task(read_websocket(ws_url, customer_id, events, subscribed))
        receiver, hook_url = await serve_webhooks(events)
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            (await client.put("/v1.0/customer", params=api.auth, json={"webhook_uri": hook_url})).raise_for_status()
            return await load(args, server, api, customer_id, number, workdir)
        finally:
            reader.cancel()
            receiver.close()
            await asyncio.gather(reader, return_exceptions=True)


async def create_extensions(api: Api, names: list[str]) -> list[str]:
    responses = [await api.create_extension(name) for name in names]
    for response in responses:
        response.raise_for_status()
    return [r.json()["id"] for r in responses]


async def load(args: argparse.Namespace, server: RunningServer, api: Api, customer_id: str, number: str,
               workdir: Path) -> dict[str, Any]:
    domain = f"{customer_id}.registrar.voipbin.test"
    idle_names = [f"idle{i}" for i in range(args.extensions)]
    phone_names = [f"phone{i}" for i in range(args.calls)]
    idle_ids = await create_extensions(api, idle_names)
    phone_ids = await create_extensions(api, phone_names)
    port = await asyncio.to_thread(register_phones, server, domain, phone_names, workdir)

    async def phones_registered() -> bool:
        return await api.registered(set(phone_ids)) == len(phone_ids)

    peers = {"uas": start_phone_uas(port, workdir)}
    registering_since = time.time()
    peers["idle"] = start_registrations(server, domain, idle_names, args.refresh, workdir)
    try:
        if not await wait_for(phones_registered, 15):
            raise RuntimeError("the phones' registrations did not show up")
        if exited := exited_peers(peers, workdir):
            raise RuntimeError(f"sipp exited: {exited}")
        results = await measure(args, server, api, number, idle_ids, phone_names, [p.pid for p in peers.values()])
        registered = await api.registered(set(idle_ids))
        exited = exited_peers(peers, workdir)
    finally:
        for process in peers.values():
            stop(process)
    registering_s = time.time() - registering_since
    return {**results, "registrations": registrations_report(workdir, registering_s, len(idle_ids), registered),
            "sipp_exited_early": exited}


async def measure(args: argparse.Namespace, server: RunningServer, api: Api, number: str, idle_ids: list[str],
                  phone_names: list[str], sipp_pids: list[int]) -> dict[str, Any]:
    """The load itself: API traffic and calls until the deadline, then the calls' ends and the events' drain."""
    events = api.events
    began = time.time()
    deadline = began + args.seconds
    cpu_start = await asyncio.to_thread(read_cpu, server.process.pid, sipp_pids)
    memory = MemorySampler(server.process.pid)
    sampler = asyncio.create_task(memory.run(args.sample_every, began))
    traffic = ApiTraffic(api, idle_ids)
    records: list[CallRecord] = []
    drivers = [CallDriver(api, phone, number, args.sleep_ms, records) for phone in phone_names]
    await asyncio.gather(traffic.run(args.api_rate, deadline), *(d.run(deadline, args.call_timeout) for d in drivers))
    ended = time.time()
    cpu_end = await asyncio.to_thread(read_cpu, server.process.pid, sipp_pids)
    sampler.cancel()

    async def settled() -> bool:
        return events.settled()

    await wait_for(settled, args.drain, step=0.2)
    drained = time.time()
    return {
        "load_s": round(ended - began, 1),
        "drain_s": round(drained - ended, 1),
        "calls": calls_report(records, events, began, deadline, sum(d.post_errors for d in drivers)),
        "api": traffic.report(),
        "events": {"websocket": events.websocket.report(events.expected), "webhook": events.webhook.report(events.expected)},
        "memory": memory.summary(),
        "cpu_pct_of_one_core": cpu_between(cpu_start, cpu_end),
    }


def summary(results: dict[str, Any]) -> dict[str, Any]:
    calls, api, events, memory = results["calls"], results["api"], results["events"], results["memory"]
    return {
        "calls_placed_per_s": calls["placed_per_s"],
        "calls_completed_per_s": calls["completed_per_s"],
        "calls_placed_completed_failed": [calls["placed"], calls["completed"], calls["placed"] - calls["completed"]],
        "concurrent_calls_peak_average": [calls["concurrent_calls"]["peak"], calls["concurrent_calls"]["average"]],
        "api_requests_errors": [api["requests"], api["errors"]],
        "api_latency_ms_p50_p99": [api["latency_ms"].get("p50"), api["latency_ms"].get("p99")],
        "websocket_event_latency_ms_p50_p99": [events["websocket"]["latency_ms"].get("p50"),
                                               events["websocket"]["latency_ms"].get("p99")],
        "webhook_event_latency_ms_p50_p99": [events["webhook"]["latency_ms"].get("p50"),
                                             events["webhook"]["latency_ms"].get("p99")],
        "lost_events_websocket_webhook": [events["websocket"]["lost"], events["webhook"]["lost"]],
        "events_received_websocket_webhook": [events["websocket"]["events"], events["webhook"]["events"]],
        "registrations_per_s": results["registrations"]["registrations_per_s"],
        "registered_at_end": f"{results['registrations']['registered_at_end']}/{results['registrations']['extensions']}",
        "platform_rss_mb": memory["platform_rss_mb"],
        "platform_rss_slope_mb_per_min": memory["platform_slope_mb_per_min"],
        "platform_rss_slope_second_half_mb_per_min": memory["platform_slope_second_half_mb_per_min"],
        "cpu_pct_of_one_core": results["cpu_pct_of_one_core"],
    }


def setup(args: argparse.Namespace) -> dict[str, Any]:
    scaled = bool(args.database_url or args.redis_url)
    return {
        "platform": "`voipbin start` subprocess (tests/e2e/server.py) on loopback ports, own data dir; API over plain HTTP",
        "backend": "PostgreSQL (scratch database) + Redis (fresh namespace)" if scaled else "embedded: SQLite, in-process bus",
        "seconds": args.seconds,
        "idle_extensions": f"{args.extensions}, sipp bench/load/register_refresh.xml, digest, refresh every {args.refresh:g} s "
        f"(Expires {int(2 * args.refresh)}); registration_ms from sipp -trace_rtt (REGISTER sent -> 200, both round "
        "trips), in multiples of sipp's ~4 ms clock",
        "calls": f"{args.calls} sipp-UAS phones (-rtp_echo), one call after another each; actions transcribe_start "
        f"(both directions) + talk ({PROMPT!r}) + sleep {args.sleep_ms} ms + hangup",
        "api": f"{args.api_rate:g} requests/s open loop, cycling {API_MIX}",
        "events": "WebSocket subscribed to customer_id:<customer>:*, webhook receiver on loopback; latency = arrival - "
        "event timestamp (same clock); lost = expected events (extension_created/deleted per API call, call_created/"
        "call_hangup and groupcall_created/groupcall_hangup per call) not received by the end of the drain "
        f"(until none is missing, every transcribe_created has its transcribe_done and the webhook has as many events "
        f"as the WebSocket, at most {args.drain:g} s after the last call ended)",
        "rates": "placed/completed per s over --seconds; completed = answered (call_progressing) and hung up normally",
        "memory": f"VmRSS every {args.sample_every:g} s from the start of the load to the last call's end; slope by least squares",
        "cpu": "% of one core over the same span, from /proc: platform process, its speech workers, the sipp peers, "
        "this script, and everything else on the (shared) box",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long calls and API traffic are started")
    parser.add_argument("--extensions", type=int, default=100, help="idle registered extensions")
    parser.add_argument("--refresh", type=float, default=30.0, help="their registration refresh interval, s (>= 30)")
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls (one phone each)")
    parser.add_argument("--sleep-ms", type=int, default=3000, help="each call's sleep after its talk")
    parser.add_argument("--call-timeout", type=float, default=60.0, help="longest wait for a call's hangup event")
    parser.add_argument("--api-rate", type=float, default=10.0, help="API requests per second")
    parser.add_argument("--sample-every", type=float, default=5.0, help="memory sampling interval, s")
    parser.add_argument("--drain", type=float, default=30.0, help="longest wait for outstanding events after the load")
    parser.add_argument("--database-url", default="", help="PostgreSQL server to make a scratch database on "
                        "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--redis-url", default="", help="Redis to share events through (e.g. redis://127.0.0.1:6379/0)")
    parser.add_argument("--out", type=Path, help="default bench/results/load.json, or load-scaleout.json when scaled out")
    args = parser.parse_args()
    if args.refresh < 30:
        parser.error("--refresh must be at least 30 s: the registrar's shortest Expires is 60 s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind through the finally blocks
    out = args.out or RESULTS / ("load-scaleout.json" if args.database_url or args.redis_url else "load.json")

    loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
    with backend(args.database_url, args.redis_url) as (flags, env), tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        server = start_server(workdir / "data", *flags, env=env)
        try:
            results = asyncio.run(run(args, server, workdir))
        finally:
            server.stop()
        results["platform_log"] = log_problems(server.log_path)
    results["box_loadavg"] = {"before": loadavg_before, "after": Path("/proc/loadavg").read_text().split()[:3]}

    report = {**header("load"), "setup": setup(args), "results": {"summary": summary(results), **results}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"]["summary"], indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
