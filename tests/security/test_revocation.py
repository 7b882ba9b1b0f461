"""Revocation and enumeration (security issue, item 8): a credential that is deleted or replaced
stops working everywhere at once, WebSockets included; signup answers tell nothing about who has
an account and cannot be used to flood an inbox; a client cannot hold a connection open by
sending its request head slowly."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
import websocket

from tests.e2e.server import start_server
from tests.security.conftest import Server, link_token


def open_socket(server: Server, credential: dict[str, str]) -> websocket.WebSocket:
    (name, value), = credential.items()
    ws = websocket.create_connection(f"{server.url.replace('http', 'ws')}/v1.0/ws?{name}={value}", timeout=10)
    ws.send(json.dumps({"type": "ping"}))
    assert json.loads(ws.recv()) == {"type": "pong"}
    return ws


def closed_within(ws: websocket.WebSocket, seconds: float) -> int | None:
    """The close code the server sent within ``seconds``, or None if the socket stayed open."""
    deadline = time.monotonic() + seconds
    ws.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            return 1006
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
    return None


async def test_a_websocket_ends_when_its_access_key_is_deleted(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice@example.com", operator)
    spare = (await server.client.post("/v1.0/accesskeys", params=alice.auth, json={"name": "spare"})).json()
    kept = await asyncio.to_thread(open_socket, server, {"accesskey": alice.accesskey})
    doomed = await asyncio.to_thread(open_socket, server, {"accesskey": spare["token"]})

    deleted = await server.client.delete(f"/v1.0/accesskeys/{spare['id']}", params=alice.auth)

    assert deleted.status_code == 200
    assert await asyncio.to_thread(closed_within, doomed, 5.0) == 1008
    assert await asyncio.to_thread(closed_within, kept, 0.5) is None  # the other key's socket goes on
    kept.close()


async def test_a_password_reset_revokes_the_jwts_issued_before_it(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice@example.com", operator)
    ws = await asyncio.to_thread(open_socket, server, {"token": alice.token})

    await server.client.post("/auth/password-forgot", json={"username": alice.username})
    token = link_token(await server.mail(alice.username, "Reset your VoIPBIN password"))
    reset = await server.client.post("/auth/password-reset", json={"token": token, "password": "a-brand-New-secret"})

    assert reset.status_code == 200
    stale = await server.client.get("/v1.0/customer", params=alice.auth)
    assert stale.status_code == 401 and "log in again" in stale.json()["error"]["message"]
    assert await asyncio.to_thread(closed_within, ws, 5.0) == 1008
    fresh = await server.login(alice.username, "a-brand-New-secret")
    assert (await server.client.get("/v1.0/customer", params={"token": fresh})).status_code == 200


async def test_signup_answers_alike_for_registered_and_new_addresses(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice@example.com", operator)

    registered = await server.client.post("/auth/signup", json={"email": alice.username})
    new = await server.client.post("/auth/signup", json={"email": "new@example.com"})

    assert registered.status_code == new.status_code == 200
    assert set(registered.json()) == set(new.json()) == {"temp_token"}
    assert len(registered.json()["temp_token"]) == len(new.json()["temp_token"]) == 32
    wrong = [await server.client.post("/auth/complete-signup", json={"temp_token": r.json()["temp_token"], "code": "999999"})
             for r in (registered, new)]
    assert {w.json()["error"]["reason"] for w in wrong} <= {"INVALID_CODE"}


async def test_one_source_cannot_mail_bomb_an_address(server: Server) -> None:
    answers = [await server.client.post("/auth/signup", json={"email": "target@example.com"}) for _ in range(25)]

    statuses = [a.status_code for a in answers]
    assert statuses[:20] == [200] * 20 and set(statuses[20:]) == {429}
    await asyncio.sleep(0.3)
    mails = (await server.client.get("/sandbox/mailbox", params=(await server.operator()).auth)).json()["result"]
    assert len([m for m in mails if m["to"] == "target@example.com"]) == server.platform.settings.signup_mails_per_address


@pytest.mark.slow
def test_a_slow_request_head_is_cut_off(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data", env={"VOIPBIN_HTTP_HEADER_TIMEOUT_S": "1"})
    try:
        with socket.create_connection(("127.0.0.1", running.http_port), timeout=5) as slow:
            started = time.monotonic()
            closed_after = None
            for byte in b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                try:
                    slow.sendall(bytes([byte]))
                    slow.settimeout(0.25)
                    if slow.recv(1) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
        with socket.create_connection(("127.0.0.1", running.http_port), timeout=5) as prompt:
            prompt.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = prompt.recv(200)
    finally:
        assert running.stop() == 0
    assert closed_after is not None and closed_after < 3.0
    assert answer.startswith(b"HTTP/1.1 200")
