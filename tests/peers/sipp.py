"""sipp (Debian sip-tester) driven from async tests, so the platform keeps running in-process."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).with_name("sipp")


def available() -> bool:
    return shutil.which("sipp") is not None


@dataclass
class SippResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run_sipp(*args: str, timeout: float = 30.0, cwd: Path | None = None) -> SippResult:
    """Run sipp to completion (``-m`` bounds it); rc 0 means every call succeeded."""
    process = await asyncio.create_subprocess_exec(
        "sipp", *args, "-nostdin", "-timeout", f"{int(timeout)}s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout + 10)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    return SippResult(process.returncode if process.returncode is not None else -1, out.decode(errors="replace"))


async def start_sipp(*args: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
    """Start sipp in the background (e.g. a UAS waiting for our call)."""
    return await asyncio.create_subprocess_exec(
        "sipp", *args, "-nostdin", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd
    )


async def finish(process: asyncio.subprocess.Process, timeout: float = 15.0) -> SippResult:
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
    return SippResult(process.returncode if process.returncode is not None else -1, out.decode(errors="replace"))
