"""Model worker processes: the parent-side handle and the child-side request loop.

Speech models run in child processes for two reasons: piper-tts is GPL-3.0 and
must stay behind a process boundary, and CPU-heavy decoding must never stall the
media loop. The wire protocol on the child's stdin/stdout is one JSON header line
followed by ``size`` bytes of binary payload, in both directions. The first line
a child writes says whether its model loaded.

Children exit on stdin EOF, so they go away even if the parent is killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias

logger = logging.getLogger(__name__)

Header: TypeAlias = dict[str, Any]
Handler: TypeAlias = Callable[[Header, bytes], tuple[Header, bytes]]

_SRC_DIR = str(Path(__file__).resolve().parents[2])


class SpeechError(RuntimeError):
    """Base of every TTS/STT failure."""


class WorkerError(SpeechError):
    """A worker could not start, died, timed out, or reported an error."""


class _WorkerDied(WorkerError):
    pass


# What a dead child or a garbled pipe looks like from the reading side.
_BROKEN = (ConnectionError, asyncio.IncompleteReadError, ValueError)


def _encode(header: Header, payload: bytes) -> bytes:
    return json.dumps({**header, "size": len(payload)}).encode() + b"\n" + payload


def child_env() -> dict[str, str]:
    """The environment of a worker process: offline model lookups, and voipbin importable."""
    env = dict(os.environ)
    # Models come from installed wheels; a hub lookup would mean a download attempt.
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    # The child must import voipbin even when it runs from a source checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_DIR, env.get("PYTHONPATH", "")) if p)
    return env


def batch_pcm(header: Header, payload: bytes) -> list[bytes]:
    """The utterances of an STT request: ``header["lengths"]`` says where each ends in ``payload``."""
    pieces, offset = [], 0
    for length in header.get("lengths", [len(payload)]):
        pieces.append(payload[offset : offset + int(length)])
        offset += int(length)
    return pieces


def ignore_outcome(task: asyncio.Future[Any]) -> None:
    """Done-callback for work nobody may await any more: mark its exception as seen."""
    if not task.cancelled():
        task.exception()


class WorkerProcess:
    """One persistent child process running ``python -m <module> <args>``.

    Requests are serialised; the child is started on first use and restarted if
    it has died. A request survives cancellation of its caller (the exchange is
    shielded) so the pipe never loses sync with the child.
    """

    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str] = (),
        *,
        start_timeout: float = 60.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self._argv = [sys.executable, "-m", module, *args]
        self._start_timeout = start_timeout
        self._request_timeout = request_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive and self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start the child now (otherwise the first request does) and wait for its model."""
        async with self._lock:
            await self._ensure()

    async def request(self, header: Header, payload: bytes = b"") -> tuple[Header, bytes]:
        task = asyncio.ensure_future(self._request(header, payload))
        # A request whose caller was cancelled still finishes; its outcome goes unread.
        task.add_done_callback(ignore_outcome)
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Kill the child; later requests fail instead of starting a new one."""
        self._closed = True
        await self._kill()

    async def _request(self, header: Header, payload: bytes) -> tuple[Header, bytes]:
        async with self._lock:
            try:
                return await self._attempt(header, payload)
            except _WorkerDied:
                if self._closed:
                    raise
                logger.warning("%s worker died mid-request; restarting it", self.name)
            return await self._attempt(header, payload)

    async def _attempt(self, header: Header, payload: bytes) -> tuple[Header, bytes]:
        await self._ensure()
        try:
            reply, data = await asyncio.wait_for(self._exchange(header, payload), self._request_timeout)
        except TimeoutError:
            await self._kill()
            raise WorkerError(f"{self.name} worker timed out") from None
        except _BROKEN as exc:
            await self._kill()
            raise _WorkerDied(f"{self.name} worker died") from exc
        if not reply.get("ok"):
            raise WorkerError(f"{self.name} worker: {reply.get('error', 'failed')}")
        return reply, data

    async def _ensure(self) -> None:
        if self._closed:
            raise WorkerError(f"{self.name} worker is stopped")
        if self.alive:
            return
        if self._proc is not None:
            logger.warning("%s worker exited (%s); restarting it", self.name, self._proc.returncode)
        began = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(),
            # Own session: a terminal's Ctrl-C reaches only the parent, which stops us.
            start_new_session=True,
        )
        self.starts += 1
        if self._closed:  # close() ran while we were spawning
            await self._kill()
            raise WorkerError(f"{self.name} worker is stopped")
        try:
            ready, _ = await asyncio.wait_for(self._read(), self._start_timeout)
        except (TimeoutError, *_BROKEN) as exc:
            await self._kill()
            raise WorkerError(f"{self.name} worker failed to start") from exc
        except BaseException:
            await self._kill()  # cancelled while loading: leave no orphan behind
            raise
        if not ready.get("ok"):
            await self._kill()
            raise WorkerError(f"{self.name} worker failed to start: {ready.get('error')}")
        logger.info(
            "%s worker pid %s ready in %.2f s",
            self.name,
            self._proc.pid,
            time.perf_counter() - began,
        )

    async def _exchange(self, header: Header, payload: bytes) -> tuple[Header, bytes]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(_encode(header, payload))
        await self._proc.stdin.drain()
        return await self._read()

    async def _read(self) -> tuple[Header, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise ConnectionResetError(f"{self.name} worker closed its pipe")
        header: Header = json.loads(line)
        data = await self._proc.stdout.readexactly(int(header.get("size", 0)))
        return header, data

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def serve(load: Callable[[], Handler]) -> None:
    """Child side: load the model, report readiness, then answer requests until EOF."""
    # Keep a private copy of stdout for the protocol; library chatter goes to stderr.
    out: BinaryIO = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    source = sys.stdin.buffer

    def send(header: Header, payload: bytes = b"") -> None:
        out.write(_encode(header, payload))
        out.flush()

    try:
        handler = load()
    except Exception as exc:
        send({"ok": False, "error": repr(exc)})
        raise SystemExit(1) from exc
    send({"ok": True})
    while line := source.readline():
        header: Header = json.loads(line)
        payload = source.read(int(header.get("size", 0)))
        try:
            reply, data = handler(header, payload)
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the worker down
            send({"ok": False, "error": repr(exc)})
            continue
        send({**reply, "ok": True}, data)
