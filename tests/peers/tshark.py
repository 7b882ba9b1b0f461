"""tshark capture of RTP on loopback, and its stream statistics (packets, loss, jitter)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Self


def available() -> bool:
    return shutil.which("tshark") is not None


@dataclass(frozen=True)
class RtpStream:
    source: str
    destination: str
    packets: int
    lost: int
    max_jitter_ms: float
    mean_jitter_ms: float


class Capture:
    def __init__(self, path: Path, capture_filter: str) -> None:
        self.path = path
        self.capture_filter = capture_filter
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Self:
        # Its own process group, so stopping it also stops the dumpcap it starts.
        self._process = await asyncio.create_subprocess_exec(
            "tshark", "-q", "-i", "lo", "-f", self.capture_filter, "-w", str(self.path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        try:
            await self._wait_until_capturing()
        except BaseException:
            await self._stop()
            raise
        return self

    async def _wait_until_capturing(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        lines: list[bytes] = []
        while not lines or b"Capturing on" not in lines[-1]:  # tshark may warn about root first
            line = await asyncio.wait_for(self._process.stderr.readline(), 20)
            assert line, b"".join(lines)
            lines.append(line)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.5)  # let the last packets reach the file
        await self._stop()

    async def _stop(self) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()

    async def rtp_streams(self) -> list[RtpStream]:
        process = await asyncio.create_subprocess_exec(
            "tshark", "-r", str(self.path), "-q", "--enable-heuristic", "rtp_udp", "-z", "rtp,streams",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        return parse_streams(out.decode(errors="replace"))


# tshark 4.0: "start end src sport dst dport 0xSSRC payload pkts lost (x%) min/mean/max delta,
# min/mean/max jitter [problems]"; older versions lack the times and the minimum columns.
_ROW = re.compile(
    r"^\s*(?:[\d.]+\s+[\d.]+\s+)?(?P<src>\d\S*)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+(?P<dport>\d+)\s+0x[0-9A-Fa-f]+\s+.*?"
    r"\s(?P<pkts>\d+)\s+(?P<lost>-?\d+)\s+\([-\d.]+%\)(?P<numbers>(?:\s+[\d.]+)+)"
)


def parse_streams(report: str) -> list[RtpStream]:
    streams = []
    for line in report.splitlines():
        if match := _ROW.match(line):
            numbers = [float(n) for n in match["numbers"].split()]
            streams.append(
                RtpStream(
                    source=f"{match['src']}:{match['sport']}",
                    destination=f"{match['dst']}:{match['dport']}",
                    packets=int(match["pkts"]),
                    lost=int(match["lost"]),
                    max_jitter_ms=numbers[-1],
                    mean_jitter_ms=numbers[-2],
                )
            )
    return streams
