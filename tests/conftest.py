"""Shared fixtures: a platform on a temporary data dir, and an HTTP client bound to its app; and a
guard on every test's log: no credential in any line, no task whose failure nobody retrieved."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
import httpx
import pytest
from argon2 import PasswordHasher

from tests.backends import backend_changes
from voipbin.api.app import create_app
from voipbin.auth import passwords
from voipbin.config import Settings
from voipbin.mail.outbox import read_outbox
from voipbin.runtime import Platform

ADMIN = {"username": "admin@localhost", "password": "admin@localhost"}

# What must never appear in a log line: JWTs, access keys, and the SIP passwords tests give phones.
SECRETS_IN_LOGS = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+|\bvb_[A-Za-z0-9]{32}\b"
    r"|secret-pass-1|your-secure-password-here|sipp-secret-1|desk-pass-\d+|neighbour-sip-pass|victim-sip-pass"
)
UNRETRIEVED = ("exception was never retrieved", "Task was destroyed but it is pending")


class _LogGuard(logging.Handler):
    """Sees what an install logs (INFO and up): DEBUG is a developer's, with SQL parameters in it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is no credential leak
            return
        if SECRETS_IN_LOGS.search(line):
            self.problems.append(f"a credential in a log line of {record.name}: {line[:300]}")
        elif any(text in line for text in UNRETRIEVED):
            self.problems.append(f"{record.name}: {line[:300]}")


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    """argon2 at its production cost takes ~170 ms a hash on CI's cores, and a test's tenants take
    five (the operator's login, the customer's password, its login...): over ten minutes of a run.
    Tests hash at argon2's cheapest profile instead; a hash carries its parameters, so everything
    else stays as it is, and the production cost is untouched."""
    patch = pytest.MonkeyPatch()
    cheap = PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)
    patch.setattr(passwords, "_hasher", cheap)
    patch.setattr(passwords, "_DUMMY_HASH", cheap.hash("not-a-real-password-7c1e4b"))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def log_guard() -> Iterator[_LogGuard]:
    """Fails a test whose log holds a credential or an unretrieved task failure (any logger)."""
    guard = _LogGuard()
    root = logging.getLogger()
    level = root.level
    root.addHandler(guard)
    root.setLevel(logging.INFO)
    try:
        yield guard
        gc.collect(0)  # the youngest objects: a full collection per test would cost minutes per run
    finally:
        root.removeHandler(guard)
        root.setLevel(level)
    assert not guard.problems, "\n".join(guard.problems)


def make_settings(data_dir: Path, **changes: object) -> Settings:
    """Test settings: loopback ports, fast webhook retries, and loopback allowed as a webhook,
    play and SIP target (the receivers and peers tests start live there; tests of the egress
    policy itself set ``egress_allow=""``)."""
    base = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        sip_port=0,
        egress_allow="127.0.0.0/8,::1",
        webhook_retry_base_s=0.2,
        webhook_retry_max_s=0.5,
        webhook_timeout_s=2.0,
    )
    return base.replace(**changes)


@pytest.fixture
def backend() -> str:
    """The embedded default; tests/api and tests/events run on every backend (their conftest)."""
    return "sqlite"


@pytest.fixture
async def platform(tmp_path: Path, backend: str) -> AsyncIterator[Platform]:
    async with backend_changes(backend) as changes:
        platform = Platform(make_settings(tmp_path / "data", **changes))
        await platform.start()
        yield platform
        await platform.stop()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(platform))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        yield client


@dataclass
class Tenant:
    """A customer with an admin login and an access key, for tests that act as that customer."""

    customer_id: str
    username: str
    token: str
    accesskey: str

    @property
    def auth(self) -> dict[str, str]:
        return {"token": self.token}


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # tests name their credential explicitly
    return str(response.json()["token"])


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Tenant:
    token = await login(client, **ADMIN)
    me = (await client.get("/v1.0/customer", params={"token": token})).json()
    key = (await client.post("/v1.0/accesskeys", params={"token": token}, json={"name": "t"})).json()
    return Tenant(me["id"], ADMIN["username"], token, key["token"])


OPERATOR_PASSWORD = "an-operator-test-passphrase"


@pytest.fixture
async def operator(client: httpx.AsyncClient, admin: Tenant) -> Tenant:
    """The operator once it has replaced the published password, as it must before adding a trunk
    or calling phone numbers. ``admin`` is updated too (its old token no longer works)."""
    agents = (await client.get("/v1.0/agents", params=admin.auth)).json()["result"]
    agent_id = next(a["id"] for a in agents if a["username"] == ADMIN["username"])
    changed = await client.put(f"/v1.0/agents/{agent_id}/password", params=admin.auth, json={"password": OPERATOR_PASSWORD})
    assert changed.status_code == 200, changed.text
    admin.token = await login(client, ADMIN["username"], OPERATOR_PASSWORD)
    return admin


async def new_tenant(client: httpx.AsyncClient, admin: Tenant, email: str) -> Tenant:
    """A fresh customer created by the operator, logged in as its admin."""
    password = "correct horse battery"
    created = await client.post("/v1.0/customers", params=admin.auth, json={"email": email, "password": password})
    assert created.status_code == 200, created.text
    token = await login(client, email, password)
    key = (await client.post("/v1.0/accesskeys", params={"token": token}, json={"name": "k"})).json()
    return Tenant(created.json()["id"], email, token, key["token"])


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: Tenant) -> Tenant:
    return await new_tenant(client, admin, "alice@example.com")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: Tenant) -> Tenant:
    return await new_tenant(client, admin, "bob@example.com")


async def mailed_code(mail_dir: Path, email: str) -> str:
    """The 6-digit code in the newest mail to ``email`` (mail is sent in the background)."""
    for _ in range(100):
        for mail in read_outbox(mail_dir):
            if mail.to == email and (found := re.search(r"\b(\d{6})\b", mail.subject)):
                return found.group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no code mailed to {email}")
