"""The attacks of the security issue, each against a real server on loopback (uvicorn on a port,
SIP on a port): the attack fails, and the legitimate use beside it still works."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, Tenant
from tests.live import live_node
from voipbin.mail.outbox import StoredMail, read_outbox
from voipbin.runtime import Platform
from voipbin.sip.digest import authorization_for

PASSWORD = "correct horse battery"
OPERATOR_PASSWORD = "the-operators-own-passphrase"


@dataclass
class Server:
    url: str
    platform: Platform
    client: httpx.AsyncClient

    @property
    def mail_dir(self) -> Path:
        return self.platform.settings.mail_dir

    async def login(self, username: str, password: str) -> str:
        response = await self.client.post("/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    async def operator(self) -> Tenant:
        token = await self.login(**ADMIN)
        me = (await self.client.get("/v1.0/customer", params={"token": token})).json()
        return Tenant(me["id"], ADMIN["username"], token, "")

    async def tenant(self, email: str, operator: Tenant) -> Tenant:
        created = await self.client.post("/v1.0/customers", params=operator.auth, json={"email": email, "password": PASSWORD})
        assert created.status_code == 200, created.text
        token = await self.login(email, PASSWORD)
        key = (await self.client.post("/v1.0/accesskeys", params={"token": token}, json={"name": "k"})).json()
        return Tenant(created.json()["id"], email, token, key["token"])

    async def mail(self, to: str, subject_has: str, seen: int = 0, timeout: float = 5.0) -> StoredMail:
        """The newest mail to ``to`` whose subject has ``subject_has``, once more than ``seen`` exist."""
        for _ in range(int(timeout / 0.05)):
            found = [m for m in read_outbox(self.mail_dir) if m.to == to and subject_has in m.subject]
            if len(found) > seen:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail to {to} about {subject_has!r}")


def link_token(mail: StoredMail) -> str:
    found = re.search(r"\?token=([0-9a-f]{64})", mail.body)
    assert found, mail.body
    return found.group(1)


@asynccontextmanager
async def serving(data_dir: Path, **changes: object) -> AsyncIterator[Server]:
    """A live server on loopback; its egress policy is a real install's (public addresses only)
    unless ``egress_allow`` says otherwise."""
    with live_node(data_dir, **{"egress_allow": "", **changes}) as (url, platform):
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            yield Server(url, platform, client)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(tmp_path / "data") as running:
        yield running


async def sip_exchange(sip_port: int, template: str, source: str = "127.0.0.1", *, final: bool = False) -> bytes:
    """Send one SIP request over UDP from ``source`` ({port} filled in with our socket's) and
    return the first reply past 100 Trying, or with ``final`` the first final one (b"" when none
    comes: a dropped request)."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not answered.done() and not data.startswith(b"SIP/2.0 1" if final else b"SIP/2.0 100"):
                answered.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=(source, 0))
    port = transport.get_extra_info("sockname")[1]
    transport.sendto(template.format(port=port, source=source).encode(), ("127.0.0.1", sip_port))
    try:
        return await asyncio.wait_for(answered, 3)
    except TimeoutError:
        return b""
    finally:
        transport.close()


def register_request(user: str, domain: str, call_id: str, authorization: str = "") -> str:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {{source}}:{{port}};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:{user}@{domain}>;tag=r{call_id}\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 REGISTER\r\nContact: <sip:{user}@{{source}}:{{port}}>\r\nMax-Forwards: 70\r\n{auth}"
        "Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )


def header(reply: bytes, name: str) -> str:
    for line in reply.decode(errors="replace").split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


async def register(sip_port: int, user: str, domain: str, password: str, source: str = "127.0.0.1") -> bytes:
    """A REGISTER answered to its digest challenge with ``password``: the final reply."""
    call_id = secrets.token_hex(6)
    challenge = await sip_exchange(sip_port, register_request(user, domain, call_id), source)
    if not challenge.startswith(b"SIP/2.0 401"):
        return challenge
    answer = authorization_for(header(challenge, "WWW-Authenticate"), "REGISTER", f"sip:{domain}", user, password, "c0ffee")
    return await sip_exchange(sip_port, register_request(user, domain, call_id + "b", answer), source)


async def open_trunks(server: Server) -> Tenant:
    """The operator replaces the published password (as it must before any trunk), logged in anew."""
    operator = await server.operator()
    agents = (await server.client.get("/v1.0/agents", params=operator.auth)).json()["result"]
    agent_id = next(a["id"] for a in agents if a["username"] == ADMIN["username"])
    changed = await server.client.put(f"/v1.0/agents/{agent_id}/password", params=operator.auth,
                                      json={"password": OPERATOR_PASSWORD})
    assert changed.status_code == 200, changed.text
    operator.token = await server.login(ADMIN["username"], OPERATOR_PASSWORD)
    return operator
