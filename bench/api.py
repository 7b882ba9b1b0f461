"""API throughput and latency on the embedded default (SQLite, one process).

Starts `voipbin start` on loopback, drives it with concurrent keep-alive clients for a fixed time
per scenario, and writes requests/s and p50/p99 latency to bench/results/api.json. The load
generator shares the machine with the server, so figures are a floor for the server alone.

    .venv/bin/python bench/api.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import header  # noqa: E402  (after the path is set)
from tests.e2e.server import start_server  # noqa: E402

ADMIN = {"username": "admin@localhost", "password": "admin@localhost"}
Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def drive(client: httpx.AsyncClient, request: Request, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            response = await request(client)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


async def run(base_url: str, seconds: float, concurrency: int) -> dict[str, dict[str, float]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        token = (await client.post("/auth/login", json=ADMIN)).json()["token"]
        auth = {"token": token}
        for i in range(50):  # a realistic page to list
            body = {"name": f"seed-{i}", "detail": "bench", "extension": f"seed{i}", "password": "bench-pass"}
            await client.post("/v1.0/extensions", params=auth, json=body)
        counter = itertools.count()

        def create(c: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            n = next(counter)
            body = {"name": f"bench-{n}", "detail": "bench", "extension": f"b{n}", "password": "bench-pass"}
            return c.post("/v1.0/extensions", params=auth, json=body)

        scenarios: dict[str, Request] = {
            "login": lambda c: c.post("/auth/login", json=ADMIN),
            "get_extensions": lambda c: c.get("/v1.0/extensions", params={**auth, "page_size": 50}),
            "post_extensions": create,
        }
        return {name: await drive(client, request, seconds, concurrency) for name, request in scenarios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        try:
            results = asyncio.run(run(server.http_url, args.seconds, args.concurrency))
        finally:
            server.stop()

    report = {
        **header("api"),
        "setup": {
            "backend": "sqlite (embedded default), plain HTTP on loopback",
            "concurrency": args.concurrency,
            "seconds_per_scenario": args.seconds,
            "note": "client and server share the machine; login is argon2id-bound by design",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))


if __name__ == "__main__":
    main()
