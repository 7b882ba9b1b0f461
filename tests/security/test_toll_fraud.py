"""Default credentials, toll fraud and caller-id spoofing (security issue, items 3 and 4).

A default install keeps the seed's sandbox login on loopback, but demo extensions have random
passwords, the registrar tells nobody which extensions exist, trunks stay closed while the
operator's password is the published one, and whatever reaches a carrier shows a number of the
caller's own account.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN
from tests.live import free_port
from tests.peers import sipp
from tests.security.conftest import (
    OPERATOR_PASSWORD,
    Server,
    header,
    open_trunks,
    register,
    register_request,
    serving,
    sip_exchange,
)
from tests.telephony.test_sipp import desk_phone

pytestmark = pytest.mark.slow

async def test_demo_extensions_have_random_passwords_and_the_old_ones_fail(server: Server) -> None:
    operator = await server.operator()
    demos = {e["extension"]: e for e in (await server.client.get("/v1.0/extensions", params=operator.auth)).json()["result"]}
    port = server.platform.sip.stack.port

    guessed = await register(port, "1000", "127.0.0.1", "pass1000")
    real = await register(port, "1000", "127.0.0.1", demos["1000"]["password"])

    assert set(demos) == {"1000", "2000", "3000"}
    assert all(len(e["password"]) >= 12 and e["password"] != f"pass{n}" for n, e in demos.items())
    assert guessed.startswith(b"SIP/2.0 403")
    assert real.startswith(b"SIP/2.0 200")


async def test_the_registrar_does_not_tell_which_extensions_exist(server: Server) -> None:
    port = server.platform.sip.stack.port

    known = await sip_exchange(port, register_request("1000", "127.0.0.1", "k1"))
    unknown = await sip_exchange(port, register_request("9999", "127.0.0.1", "u1"))

    realm = 'realm="'
    assert known.startswith(b"SIP/2.0 401") and unknown.startswith(b"SIP/2.0 401")
    known_realm = header(known, "WWW-Authenticate").split(realm)[1].split('"')[0]
    assert known_realm == header(unknown, "WWW-Authenticate").split(realm)[1].split('"')[0]
    assert known_realm == "registrar.voipbin.test"  # names no customer


async def test_the_published_operator_password_keeps_trunks_closed(server: Server) -> None:
    operator = await server.operator()  # the seed's sandbox login works on loopback
    trunk = {"hostname": "203.0.113.5", "port": 5060, "name": "carrier"}

    refused = await server.client.post("/v1.0/providers", params=operator.auth, json=trunk)
    operator = await open_trunks(server)
    added = await server.client.post("/v1.0/providers", params=operator.auth, json=trunk)
    agents = (await server.client.get("/v1.0/agents", params=operator.auth)).json()["result"]
    republished = await server.client.put(f"/v1.0/agents/{agents[0]['id']}/password", params=operator.auth,
                                          json={"password": "admin@localhost"})

    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "DEFAULT_CREDENTIALS"
    assert added.status_code == 200
    assert republished.status_code == 400 and "published password" in republished.json()["error"]["message"]


def _start(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "voipbin.cli.main", "start", "--data-dir", str(data_dir), "--host", "127.0.0.1",
               "--api-port", str(free_port()), "--http-port", str(http_port := free_port()), "--sip-port", str(free_port()),
               *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    process.http_port = http_port  # type: ignore[attr-defined]
    return process


def _serving(process: subprocess.Popen[bytes]) -> bool:
    for _ in range(600):
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"http://127.0.0.1:{process.http_port}/ping", timeout=1).status_code == 200:  # type: ignore[attr-defined]
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def test_an_install_reachable_from_elsewhere_will_not_start_with_the_published_password(tmp_path: Path) -> None:
    refused = _start(tmp_path / "data", "--public-address", "198.51.100.7")
    out, _ = refused.communicate(timeout=60)

    assert refused.returncode == 1, out.decode()
    assert b"published password" in out and b"VOIPBIN_ADMIN_PASSWORD" in out

    chosen = _start(tmp_path / "data", "--public-address", "198.51.100.7", env={"VOIPBIN_ADMIN_PASSWORD": OPERATOR_PASSWORD})
    try:
        assert _serving(chosen)
        login = httpx.post(f"http://127.0.0.1:{chosen.http_port}/auth/login",  # type: ignore[attr-defined]
                           json={"username": ADMIN["username"], "password": OPERATOR_PASSWORD})
        assert login.status_code == 200
    finally:
        chosen.terminate()
        chosen.wait(timeout=30)


async def test_a_phone_without_a_number_of_its_own_cannot_dial_out_through_the_trunk(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8") as server:
        operator = await open_trunks(server)
        carrier_port = free_port()
        trunk = {"hostname": "127.0.0.1", "port": carrier_port, "name": "carrier"}
        assert (await server.client.post("/v1.0/providers", params=operator.auth, json=trunk)).status_code == 200
        carrier = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1",
                                        "-trace_msg", cwd=tmp_path)
        mallory = await server.tenant("mallory@example.com", operator)
        for number in (await server.client.get("/v1.0/numbers", params=mallory.auth)).json()["result"]:
            await server.client.delete(f"/v1.0/numbers/{number['id']}", params=mallory.auth)
        body = {"name": "desk", "detail": "baresip", "extension": "2001", "password": "desk-pass-2001"}
        assert (await server.client.post("/v1.0/extensions", params=mallory.auth, json=body)).status_code == 200
        phone = await desk_phone(server.platform, mallory, "2001", "desk-pass-2001", tmp_path)
        try:
            phone.command("dial", f"sip:0015557654321@{mallory.customer_id}.registrar.voipbin.test")
            await asyncio.sleep(3.0)
            calls = (await server.client.get("/v1.0/calls", params=mallory.auth)).json()["result"]
        finally:
            phone.stop()
            await sipp.finish(carrier, timeout=1)  # it never gets a call: stopped
    assert calls == []
    messages = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert "INVITE sip:" not in messages


async def test_only_numbers_of_the_callers_own_account_reach_the_carrier(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", egress_allow="127.0.0.0/8") as server:
        operator = await open_trunks(server)
        carrier_port, phone_port = free_port(), free_port()
        (tmp_path / "phone").mkdir()
        trunk = {"hostname": "127.0.0.1", "port": carrier_port, "name": "carrier"}
        assert (await server.client.post("/v1.0/providers", params=operator.auth, json=trunk)).status_code == 200
        carrier = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.1", "-p", str(carrier_port), "-m", "1",
                                        "-trace_msg", cwd=tmp_path)
        # Another host than the carrier's: a SIP destination may not name a trunk.
        phone = await sipp.start_sipp("-sn", "uas", "-i", "127.0.0.2", "-p", str(phone_port), "-m", "1",
                                      "-trace_msg", cwd=tmp_path / "phone")
        alice = await server.tenant("alice@example.com", operator)
        claimed = await server.client.post("/v1.0/numbers", params=alice.auth, json={"number": "+15551230000"})
        assigned = await server.client.post("/v1.0/numbers", params=operator.auth,
                                            json={"number": "+15551230000", "customer_id": alice.customer_id})
        to_carrier = [{"type": "tel", "target": "+15557654321"}]
        hangup = [{"type": "hangup"}]

        spoofs = [
            {"source": {"type": "sip", "target": "+15550009999"}, "destinations": to_carrier, "actions": hangup},
            {"source": {"type": "extension", "target": "+15550009999"}, "destinations": to_carrier, "actions": hangup},
            {"source": {"type": "tel", "target": "+15550009999"}, "destinations": to_carrier, "actions": hangup},
        ]
        refused = [await server.client.post("/v1.0/calls", params=alice.auth, json=spoof) for spoof in spoofs]
        # A flow's connect may not borrow a number either: the bridge to the carrier is never dialled.
        borrowing = {  # whose own caller id carries header metacharacters, escaped on the way
            "source": {"type": "sip", "target": "a>b;c", "name": 'evil" <sip:boss@bank>;tag=x'},
            "destinations": [{"type": "sip", "target": f"sip:desk@127.0.0.2:{phone_port}"}],
            "actions": [{"type": "connect", "option": {"source": {"type": "tel", "target": "+15550009999"},
                                                        "destinations": to_carrier}}],
        }
        bridged = await server.client.post("/v1.0/calls", params=alice.auth, json=borrowing)
        await asyncio.sleep(2.0)
        # Her own number, with a display name that claims to be someone else, and header metacharacters.
        own = {"source": {"type": "tel", "target": "+15551230000", "name": 'Bank "Security" <sip:x>;tag=1'},
               "destinations": to_carrier, "actions": [{"type": "talk", "option": {"text": "Hello."}}]}
        placed = await server.client.post("/v1.0/calls", params=alice.auth, json=own)
        assert (await sipp.finish(carrier, timeout=30)).ok
        await sipp.finish(phone, timeout=10)

    assert claimed.status_code == 403 and assigned.status_code == 200
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert {r.json()["error"]["reason"] for r in refused} == {"SOURCE_NOT_OWNED"}
    assert bridged.status_code == 200, bridged.text
    assert placed.status_code == 200, placed.text
    invites = [line for p in tmp_path.glob("*_messages.log") for line in p.read_text(errors="replace").splitlines()
               if line.startswith("From:")]
    assert invites and all(line.startswith("From: <sip:+15551230000@voipbin.test>;tag=") for line in invites), invites
    to_phone = "".join(p.read_text(errors="replace") for p in (tmp_path / "phone").glob("*_messages.log"))
    assert 'From: "evil\\" <sip:boss@bank>;tag=x" <sip:a%3Eb%3Bc@voipbin.test>;tag=' in to_phone
