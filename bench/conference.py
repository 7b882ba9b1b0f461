"""How many conference participants one platform process mixes: in one conference, and in all.

The harness is bench/media.py's (a far-end process sending each leg's paced PCMU tone and
counting what comes back; the platform's own MediaEngine on the same loopback), but here every
endpoint is a leg of a conference :class:`~voipbin.media.mixer.Mixer` instead of playing a tone:
each tick every leg's received frame is summed and each leg is sent the mix minus itself.

Two series, each level passing when the ticker's p99 lateness is under 5 ms and no packet is lost
or late either way (bench/media.py's criteria, attempts and quiet-box rules):
- ``one_conference``: N participants in a single conference;
- ``many_conferences``: N legs in conferences of ``--size`` participants (the total one core mixes).

    .venv/bin/python bench/conference.py [--one 10,25,50,100,150] [--many 50,100,200,300,400] [--size 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench import media  # noqa: E402
from bench.report import commit_id  # noqa: E402
from voipbin.media.endpoint import MediaEngine, RtpEndpoint  # noqa: E402
from voipbin.media.mixer import Mixer  # noqa: E402


def in_conferences(size: int | None) -> media.Setup:
    """Put the level's endpoints into conferences of ``size`` (None: all in one)."""

    def setup(engine: MediaEngine, endpoints: list[RtpEndpoint]) -> None:
        step = size or len(endpoints)
        for first in range(0, len(endpoints), step):
            mixer = Mixer()
            for endpoint in endpoints[first : first + step]:
                mixer.add(endpoint)
            engine.add_mixer(mixer)

    return setup


def series(levels: list[int], seconds: float, attempts: int, size: int | None) -> dict[str, Any]:
    results = asyncio.run(media.run(levels, seconds, attempts, in_conferences(size)))
    status, capacity = media.verdicts(levels, results)
    return {
        "levels": results,
        "max_legs_ok": capacity,
        "levels_ok": sorted(n for n, v in status.items() if v == "ok"),
        "levels_failed": sorted(n for n, v in status.items() if v == "fail"),
        "levels_inconclusive": sorted(n for n, v in status.items() if v == "inconclusive"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", default="10,25,50,100,150", help="participants in one conference, per level")
    parser.add_argument("--many", default="50,100,200,300,400", help="legs in all, per level")
    parser.add_argument("--size", type=int, default=5, help="participants per conference in the second series")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "conference.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.perf_counter()
    one = [int(x) for x in args.one.split(",") if x.strip()]
    many = [int(x) for x in args.many.split(",") if x.strip()]
    report = {
        "benchmark": "conference",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit_id(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "setup": {
            "mixer": "voipbin.media.mixer.Mixer on the MediaEngine ticker: 32-bit sum of every leg's frame, each leg "
            "sent the sum minus its own, a per-frame limiter",
            "leg": "one RtpEndpoint, PCMU, sendrecv, in the mix (no playback)",
            "peer": "bench/media.py --peer: one UDP socket per leg sending a paced PCMU tone, counting what returns",
            "pass_criteria": f"engine.lateness p99 < {media.P99_LIMIT_MS} ms and no packet lost or late in either "
            "direction (bench/media.py's attempts and quiet-box rules)",
            "seconds_per_level": args.seconds,
            "many_conferences_size": args.size,
        },
        "results": {
            "one_conference": series(one, args.seconds, args.attempts, None),
            "many_conferences": series(many, args.seconds, args.attempts, args.size),
            "run_seconds": 0.0,
        },
    }
    report["results"]["run_seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {name: {k: v for k, v in r.items() if k != "levels"} for name, r in report["results"].items() if name != "run_seconds"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
