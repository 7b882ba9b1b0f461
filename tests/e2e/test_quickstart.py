"""The quickstart's Getting Started, Authentication and Receiving Events, against `voipbin start`.

Each request is the seed's own curl command, with the sandbox URL and -k as the quickstart says.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.conftest import SECRETS_IN_LOGS
from tests.e2e.server import RunningServer, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(Path(tmp_path_factory.mktemp("quickstart")) / "data")
    yield running
    assert running.stop() == 0, running.log_path.read_text()[-2000:]


def signup_code(server: RunningServer, email: str) -> str:
    for _ in range(100):
        listing = server.cli("mail")
        for line in listing.splitlines():
            if email in line and (code := re.search(r"code: (\d{6})", line)):
                return code.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no signup mail for {email} in:\n{listing}")


def test_headless_signup_then_the_accesskey_works(server: RunningServer) -> None:
    status, started = server.curl("POST", "/auth/signup", {"email": "quick@example.com", "name": "Your Company Name"})
    assert status == 200 and len(started["temp_token"]) == 32
    code = signup_code(server, "quick@example.com")

    status, done = server.curl("POST", "/auth/complete-signup", {"temp_token": started["temp_token"], "code": code})
    assert status == 200, done
    assert set(done) == {"customer_id", "accesskey", "next_steps"} and {"id", "token"} <= set(done["accesskey"])

    status, calls = server.curl("GET", f"/v1.0/customer?accesskey={done['accesskey']['token']}")
    assert status == 200 and calls["id"] == done["customer_id"]


def test_token_accesskey_customer_and_extension(server: RunningServer) -> None:
    status, login = server.curl("POST", "/auth/login", {"username": "admin@localhost", "password": "admin@localhost"})
    assert status == 200 and login["username"] == "admin@localhost"
    token = login["token"]

    status, key = server.curl(
        "POST", f"/v1.0/accesskeys?token={token}", {"name": "my-api-key", "detail": "API key for automated access"}
    )
    assert status == 200 and key["name"] == "my-api-key" and key["token"]

    status, customer = server.curl("GET", f"/v1.0/customer?accesskey={key['token']}")
    assert status == 200
    status, updated = server.curl(
        "PUT", f"/v1.0/customer?token={token}",
        {"webhook_method": "POST", "webhook_uri": "https://your-server.com/voipbin/events"},
    )
    assert status == 200 and updated["id"] == customer["id"]
    assert updated["webhook_uri"] == "https://your-server.com/voipbin/events"
    server.curl("PUT", f"/v1.0/customer?token={token}", {"webhook_uri": ""})

    status, ext = server.curl(
        "POST", f"/v1.0/extensions?token={token}",
        {"name": "quickstart-phone", "detail": "Quickstart softphone extension",
         "extension": "quickstart1", "password": "your-secure-password-here"},
    )
    assert status == 200
    assert ext["username"] == "quickstart1" and ext["domain_name"] == customer["id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ext["tm_create"]) and ext["tm_update"] == ""



def run_seed_websocket_example(url: str, token: str, customer_id: str, topics: list[str], printed: list[str]) -> websocket.WebSocketApp:
    """The quickstart's Python example, with its print() collected and our topic list."""

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        data = json.loads(message)
        event_type = data.get("event_type")
        if event_type:
            if "transcript" in event_type:
                transcript = data["data"]
                printed.append(f"[TRANSCRIBE {transcript.get('direction', '?')}] {transcript.get('message', '')}")
            else:
                printed.append(f"[EVENT] {event_type}")

    def on_open(ws: websocket.WebSocketApp) -> None:
        ws.send(json.dumps({"type": "subscribe", "topics": topics}))
        printed.append("Subscribed to call and transcribe events. Waiting...")

    ws = websocket.WebSocketApp(f"{url}?token={token}", on_open=on_open, on_message=on_message)
    threading.Thread(
        target=ws.run_forever, kwargs={"sslopt": {"cert_reqs": ssl.CERT_NONE}}, daemon=True
    ).start()
    return ws


def test_seed_websocket_example_sees_an_extension_it_creates(server: RunningServer) -> None:
    _, login = server.curl("POST", "/auth/login", {"username": "admin@localhost", "password": "admin@localhost"})
    _, customer = server.curl("GET", f"/v1.0/customer?token={login['token']}")
    cid = customer["id"]
    printed: list[str] = []
    topics = [f"customer_id:{cid}:call:*", f"customer_id:{cid}:transcribe:*", f"customer_id:{cid}:extension:*"]
    ws = run_seed_websocket_example(
        f"wss://127.0.0.1:{server.api_port}/v1.0/ws", login["token"], cid, topics, printed
    )
    try:
        wait_for(lambda: "Subscribed to call and transcribe events. Waiting..." in printed)
        time.sleep(0.3)  # the subscribe frame is on its way; give the server a moment to apply it
        status, _ = server.curl(
            "POST", f"/v1.0/extensions?token={login['token']}",
            {"name": "ws-phone", "detail": "d", "extension": "ws1", "password": "pass-ws-1"},
        )
        assert status == 200
        wait_for(lambda: "[EVENT] extension_created" in printed)
    finally:
        ws.close()


def test_restart_keeps_data(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        _, login = first.curl("POST", "/auth/login", {"username": "admin@localhost", "password": "admin@localhost"})
        _, ext = first.curl(
            "POST", f"/v1.0/extensions?token={login['token']}",
            {"name": "keep", "detail": "d", "extension": "keep1", "password": "pass-keep"},
        )
    finally:
        assert first.stop() == 0

    second = start_server(tmp_path / "data")
    try:
        status, again = second.curl("GET", f"/v1.0/extensions/{ext['id']}?token={login['token']}")
        assert status == 200 and again == ext
    finally:
        assert second.stop() == 0


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_the_banners_first_call_works_as_printed(server: RunningServer) -> None:
    banner = server.log_path.read_text()
    commands = banner.split("place your first call:\n", 1)[1].splitlines()[:2]

    done = subprocess.run(["bash", "-c", "\n".join(commands)], check=False, capture_output=True, text=True, timeout=30)

    placed = json.loads(done.stdout or "{}")
    assert "groupcalls" in placed, done.stdout + done.stderr
    demo_number = re.search(r"Demo number\s+(\+\d+)", banner)
    assert demo_number, banner
    assert placed["groupcalls"][0]["source"]["target"] == demo_number.group(1)
    assert placed["groupcalls"][0]["destinations"][0]["target_name"] == "1000"


def test_the_server_log_holds_no_credential(server: RunningServer) -> None:
    """Every test above logged in, used ?token= and ?accesskey=, and opened the seed's WebSocket."""
    log = server.log_path.read_text()

    assert "WebSocket /v1.0/ws?token=***" in log  # the connection is logged, its JWT is not
    assert not SECRETS_IN_LOGS.search(log), SECRETS_IN_LOGS.search(log)
