"""Shared fixtures: a platform on a temporary data dir, and an HTTP client bound to its app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backends import backend_changes
from voipbin.api.app import create_app
from voipbin.config import Settings
from voipbin.mail.outbox import read_outbox
from voipbin.runtime import Platform

ADMIN = {"username": "admin@localhost", "password": "admin@localhost"}


def make_settings(data_dir: Path, **changes: object) -> Settings:
    base = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        sip_port=0,
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
