"""Private PostgreSQL and Redis servers that a test may stop, kill and start again on the same port.

The machine's own PostgreSQL and Redis (5432, 6379) serve other tests and are never touched: each
server here has its own free loopback port, its own files in a temporary directory, and every process
it starts is stopped when its context ends. PostgreSQL refuses to run as root, so its processes run
as the ``postgres`` OS user; its data directory lives under /tmp (pytest's tmp_path is root-only).

The methods block (at most their bounded waits): async tests call them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import free_port

PG_BIN = Path(os.environ.get("VOIPBIN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def available() -> str | None:
    """Why these servers cannot run here, or None when they can."""
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN}"
    if not Path(REDIS_SERVER).exists():
        return "redis-server is not installed"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "no 'postgres' OS user to run PostgreSQL as"
    return None


def _as_postgres() -> dict[str, object]:
    """Popen arguments that run a PostgreSQL program as the postgres user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal a server (its whole process group) and wait for it; SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
    # Children (PostgreSQL backends) outlive a SIGKILLed postmaster for a moment: take them too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class PostgresServer:
    """One PostgreSQL cluster: ``stop(mode)`` (``fast``, ``immediate`` = crash), ``kill`` (SIGKILL), ``start``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``voipbin`` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/voipbin"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def init(self) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120, env=env, **_as_postgres(),  # type: ignore[call-overload]
        )
        self.start()
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "voipbin"],
            check=True, capture_output=True, timeout=30, env=env,
        )

    def start(self) -> None:
        assert not self.running, "already running"
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (kept open while the server runs)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            # Fast but still crash-safe for a killed server (the OS keeps what was written):
            # synchronous_commit stays on, or a crash would lose commits already answered.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        args = [str(PG_BIN / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        self.process = subprocess.Popen(  # type: ignore[call-overload]
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            **_as_postgres(),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
                self.kill()
                raise RuntimeError(f"PostgreSQL on port {self.port} did not start:\n{tail}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        if not _accepts(self.port):
            return False
        done = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                              check=False, capture_output=True, timeout=10)
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """``smart``/``fast`` shut down cleanly; ``immediate`` is a crash (recovery on the next start)."""
        if self.process is None:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)  # the postmaster only: it tells its children
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        _stop_process(self.process, signal.SIGKILL, STOP_TIMEOUT_S)
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend at once, as a lost machine would."""
        if self.process is not None:
            _stop_process(self.process, signal.SIGKILL, STOP_TIMEOUT_S)
            self.process = None

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down_s)
        self.start()


class RedisServer:
    """One redis-server without persistence: ``stop`` (SIGTERM), ``kill`` (SIGKILL), ``start``, ``freeze``/``thaw``.

    Without persistence a restarted Redis is empty, as after losing its machine.
    """

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--protected-mode", "yes", "--daemonize", "no"]
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "redis.log").read_text(errors="replace")[-2000:]
                self.kill()
                raise RuntimeError(f"Redis on port {self.port} did not start:\n{tail}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process, signal.SIGTERM, STOP_TIMEOUT_S)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            _stop_process(self.process, signal.SIGKILL, STOP_TIMEOUT_S)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as across a network partition."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def restart(self, down_s: float = 0.0, *, kill: bool = False) -> None:
        self.kill() if kill else self.stop()
        time.sleep(down_s)
        self.start()


def _scratch(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    return root


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    root = _scratch("vb-pg-")
    server = PostgresServer(root, free_port())
    try:
        server.init()
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    root = Path(tempfile.mkdtemp(prefix="vb-redis-"))
    server = RedisServer(root, free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)
