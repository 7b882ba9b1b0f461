"""A live platform whose mailed links point back at it, and headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.conftest import make_settings
from tests.live import free_port
from voipbin.api.app import create_app
from voipbin.runtime import Platform

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like tests.live.live_server, but with public_url set: the emailed links must reach this server."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path_factory.mktemp("console") / "data", public_url=base_url)
    app = create_app(Platform(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("console server did not start")
        time.sleep(0.02)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Screenshots go where CI collects them: $VOIPBIN_TEST_ARTIFACTS, else ./test-artifacts."""
    root = Path(os.environ.get("VOIPBIN_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
    directory = root / "console"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is installed by `make test`")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
