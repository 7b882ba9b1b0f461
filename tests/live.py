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
