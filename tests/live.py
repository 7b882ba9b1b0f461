"""A real uvicorn server on a loopback port, run in a thread, for tests that need sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from tests.conftest import make_settings
from voipbin.api.app import create_app
from voipbin.config import Settings
from voipbin.runtime import Platform


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports free for both TCP and UDP (a softphone
    that listens on UDP and TCP at one port and on TLS at the next)."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65536 and all(_bindable(port, kind) for port in range(base, base + count)
                                         for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def live_server(data_dir: Path, **changes: object) -> Iterator[tuple[str, Settings]]:
    """Serve the app over plain HTTP on 127.0.0.1; yields its base URL and settings."""
    with live_node(data_dir, **changes) as (base_url, platform):
        yield base_url, platform.settings


@contextmanager
def live_node(data_dir: Path, **changes: object) -> Iterator[tuple[str, Platform]]:
    """``live_server``, yielding the platform itself (its SIP port, its calls)."""
    port = free_port()
    settings = make_settings(data_dir, **{"internal_url": f"http://127.0.0.1:{port}", **changes})
    platform = Platform(settings)
    app = create_app(platform)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", platform
    finally:
        server.should_exit = True
        thread.join(timeout=15)
