"""``voipbin start``: the platform and its HTTPS and HTTP listeners in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from voipbin.api.app import create_app
from voipbin.config import Settings
from voipbin.core.tls import ensure_certificate
from voipbin.runtime import Platform

log = logging.getLogger(__name__)

class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing connections that take too long to send a request head.

    uvicorn times out idle keep-alive connections but not a client that sends its headers a byte at
    a time (slowloris), which would hold a connection, and its memory, for as long as it likes.
    """

    header_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    return type("HttpProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (two of them share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _OnceFilter(logging.Filter):
    """Lets each of uvicorn's process-wide lines ("Started server process", "Shutting down") through
    once: both listeners log them, and two identical lines read as two processes."""

    PROCESS_WIDE = frozenset({"Started server process [%d]", "Shutting down", "Finished server process [%d]"})

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in self.PROCESS_WIDE:
            return True
        line = record.getMessage()
        if line in self.seen:
            return False
        self.seen.add(line)
        return True


@dataclass(frozen=True)
class Endpoints:
    api: str
    http: str
    websocket: str
    sip: str
    docs: str


def endpoints(settings: Settings) -> Endpoints:
    address = settings.advertised_address
    return Endpoints(
        api=f"https://{address}:{settings.api_port}",
        http=f"http://{address}:{settings.http_port}",
        websocket=f"wss://{address}:{settings.api_port}/v1.0/ws",
        sip=f"udp/tcp {address}:{settings.sip_port}",
        docs=f"https://{address}:{settings.api_port}/docs",
    )


def tls_names(settings: Settings) -> list[str]:
    names = ["api." + settings.domain, "localhost", "127.0.0.1", "::1", settings.domain, "*." + settings.domain]
    if settings.public_address:
        names.append(settings.public_address)
    return names


async def serve(settings: Settings, on_ready: Callable[[Platform], Awaitable[None]] | None = None) -> None:
    platform = Platform(settings)
    await platform.start()
    # Load the voices and the recogniser now, in the background, so the first call's first
    # words are not spent waiting for model loads (tests leave this lazy to start fast).
    preload = asyncio.create_task(platform.speech.start(preload=settings.takes_calls))
    app = create_app(platform)
    cert, key = ensure_certificate(settings.data_dir / "tls", tls_names(settings))
    # log_config=None: uvicorn's lines go through the process's logging (one format, one stream)
    # instead of handlers of its own that each listener would install again.
    common = {"lifespan": "off", "log_level": settings.log_level, "log_config": None, "ws_ping_interval": 20.0,
              "ws_ping_timeout": 20.0, "http": http_protocol(settings.http_header_timeout_s)}
    listeners = [
        _Listener(uvicorn.Config(app, host=settings.host, port=settings.api_port,
                                 ssl_certfile=str(cert), ssl_keyfile=str(key), **common)),  # type: ignore[arg-type]
        _Listener(uvicorn.Config(app, host=settings.host, port=settings.http_port, **common)),  # type: ignore[arg-type]
    ]
    once = _OnceFilter()
    logging.getLogger("uvicorn.error").addFilter(once)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(listener.serve()) for listener in listeners]
    try:
        while not all(listener.started for listener in listeners):
            if any(task.done() for task in tasks):
                raise SystemExit("a listener failed to start (is the port in use?)")
            await asyncio.sleep(0.05)
        if on_ready is not None:
            await on_ready(platform)
        await _until_stopped(stop, tasks)
    finally:
        for listener in listeners:
            listener.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        preload.cancel()
        await asyncio.gather(preload, return_exceptions=True)
        await platform.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        logging.getLogger("uvicorn.error").removeFilter(once)


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
