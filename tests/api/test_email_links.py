"""Signup by emailed link, set/reset password by emailed link, the sandbox mailbox, and deliveries."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import Tenant, login
from voipbin.mail.outbox import read_outbox
from voipbin.runtime import Platform
from voipbin.store.models import PasswordReset, Signup

LINK = re.compile(r"https://\S+(/auth/(?:email-verify|password-reset)\?token=([0-9a-f]{64}))")


async def mailed_link(mail_dir: Path, email: str, kind: str, seen: int = 0) -> tuple[str, str]:
    """(path with query, token) of the newest ``kind`` link mailed to ``email`` after ``seen`` such links."""
    for _ in range(100):
        links = [m for mail in read_outbox(mail_dir) if mail.to == email for m in LINK.finditer(mail.body) if kind in m[1]]
        if len(links) > seen:
            return links[0][1], links[0][2]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} link mailed to {email}")


async def verified_signup(client: httpx.AsyncClient, platform: Platform, email: str) -> dict:
    assert (await client.post("/auth/signup", json={"email": email, "accepted_tos": True})).status_code == 200
    path, token = await mailed_link(platform.settings.mail_dir, email, "email-verify")
    opened = await client.get(path)
    assert opened.status_code == 302
    assert opened.headers["location"] == f"/console/#/verify?token={token}"
    verified = await client.post("/auth/email-verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    return verified.json()


async def test_signup_by_link_then_set_password_then_login(client: httpx.AsyncClient, platform: Platform) -> None:
    body = await verified_signup(client, platform, "link@example.com")

    assert body["customer"]["email"] == "link@example.com"
    assert body["customer"]["email_verified"] is True
    assert (await client.get("/v1.0/customer", params={"accesskey": body["accesskey"]["token"]})).status_code == 200
    path, token = await mailed_link(platform.settings.mail_dir, "link@example.com", "password-reset")
    assert (await client.get(path)).headers["location"] == f"/console/#/password-reset?token={token}"
    assert (await client.post("/auth/password-reset", json={"token": token, "password": "a-Good-passphrase"})).status_code == 200
    jwt = await login(client, "link@example.com", "a-Good-passphrase")
    me = await client.get("/v1.0/customer", headers={"Authorization": f"Bearer {jwt}"})
    assert me.json()["id"] == body["customer"]["id"]


async def test_a_verification_link_works_once(client: httpx.AsyncClient, platform: Platform) -> None:
    await verified_signup(client, platform, "once@example.com")
    _, token = await mailed_link(platform.settings.mail_dir, "once@example.com", "email-verify")

    again = await client.post("/auth/email-verify", json={"token": token})

    assert again.status_code == 400
    assert again.json()["error"]["reason"] == "INVALID_TOKEN"
    assert "sign up again" in again.json()["error"]["message"]


async def test_an_expired_verification_link_is_refused(client: httpx.AsyncClient, platform: Platform) -> None:
    await client.post("/auth/signup", json={"email": "late@example.com", "accepted_tos": True})
    _, token = await mailed_link(platform.settings.mail_dir, "late@example.com", "email-verify")
    async with platform.store.transaction() as tx:
        await tx.session.execute(update(Signup).values(tm_expire=platform.clock.now() - timedelta(seconds=1)))

    assert (await client.post("/auth/email-verify", json={"token": token})).status_code == 400


@pytest.mark.parametrize("token", ["", "abc", "g" * 64, "0" * 63])
async def test_malformed_link_tokens_are_400(client: httpx.AsyncClient, token: str) -> None:
    for path in ("/auth/email-verify", "/auth/password-reset"):
        response = await client.post(path, json={"token": token, "password": "a-Good-passphrase"}
                                      if path.endswith("reset") else {"token": token})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["message"]


async def test_weak_passwords_are_refused_with_a_reason(client: httpx.AsyncClient, platform: Platform) -> None:
    await verified_signup(client, platform, "weak@example.com")
    _, token = await mailed_link(platform.settings.mail_dir, "weak@example.com", "password-reset")

    for weak, words in (("short", "at least 8"), ("password123", "easy to guess"), ("weak@example.com", "username")):
        response = await client.post("/auth/password-reset", json={"token": token, "password": weak})
        assert response.status_code == 400
        assert response.json()["error"]["reason"] == "WEAK_PASSWORD"
        assert words in response.json()["error"]["message"]
    # A refused password leaves the link usable.
    assert (await client.post("/auth/password-reset", json={"token": token, "password": "a-Good-passphrase"})).status_code == 200
    assert (await client.post("/auth/password-reset", json={"token": token, "password": "another-Good-one"})).status_code == 400


async def test_forgot_password_mails_a_link_only_to_existing_users(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    known = await client.post("/auth/password-forgot", json={"username": alice.username.upper()})
    unknown = await client.post("/auth/password-forgot", json={"username": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json() == {}
    _, token = await mailed_link(platform.settings.mail_dir, alice.username, "password-reset")
    await asyncio.sleep(0.2)
    assert not [m for m in read_outbox(platform.settings.mail_dir) if m.to == "nobody@example.com"]
    assert (await client.post("/auth/password-reset", json={"token": token, "password": "brand-New-secret"})).status_code == 200
    await login(client, alice.username, "brand-New-secret")


async def test_an_expired_reset_link_is_refused(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    await client.post("/auth/password-forgot", json={"username": alice.username})
    _, token = await mailed_link(platform.settings.mail_dir, alice.username, "password-reset")
    async with platform.store.transaction() as tx:
        await tx.session.execute(update(PasswordReset).values(tm_expire=platform.clock.now()))

    response = await client.post("/auth/password-reset", json={"token": token, "password": "brand-New-secret"})

    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "INVALID_TOKEN"


async def test_the_sandbox_mailbox_shows_each_reader_their_own_mail(
    client: httpx.AsyncClient, platform: Platform, admin: Tenant, alice: Tenant
) -> None:
    signed = await client.post("/auth/signup", json={"email": "box@example.com", "accepted_tos": True})
    temp_token = signed.json()["temp_token"]
    await client.post("/auth/signup", json={"email": "other@example.com", "accepted_tos": True})
    await client.post("/auth/password-forgot", json={"username": alice.username})
    await mailed_link(platform.settings.mail_dir, "other@example.com", "email-verify")
    await mailed_link(platform.settings.mail_dir, alice.username, "password-reset")

    pending = (await client.get("/sandbox/mailbox", params={"temp_token": temp_token})).json()["result"]
    alices = (await client.get("/sandbox/mailbox", params=alice.auth)).json()["result"]
    operators = (await client.get("/sandbox/mailbox", params=admin.auth)).json()["result"]

    assert [m["to"] for m in pending] == ["box@example.com"]
    assert "/auth/email-verify?token=" in pending[0]["body"]
    assert pending[0]["from"].endswith("<no-reply@voipbin.test>")
    assert {m["to"] for m in alices} == {alice.username}
    assert {"box@example.com", "other@example.com", alice.username} <= {m["to"] for m in operators}
    one = await client.get(f"/sandbox/mailbox/{pending[0]['id']}", params={"temp_token": temp_token})
    assert one.json() == pending[0]
    assert (await client.get(f"/sandbox/mailbox/{pending[0]['id']}", params=alice.auth)).status_code == 404
    assert (await client.get("/sandbox/mailbox")).status_code == 401
    assert (await client.get("/sandbox/mailbox", params={"temp_token": "0" * 32})).status_code == 404


async def test_after_verification_the_new_accesskey_reads_the_welcome_mail(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    body = await verified_signup(client, platform, "welcome@example.com")

    mails = (await client.get("/sandbox/mailbox", params={"accesskey": body["accesskey"]["token"]})).json()["result"]

    assert mails[0]["subject"] == "Welcome to VoIPBIN"
    assert "/auth/password-reset?token=" in mails[0]["body"]


async def test_the_mailbox_is_off_with_smtp(client: httpx.AsyncClient, platform: Platform) -> None:
    platform.settings = platform.settings.replace(smtp_url="smtp://127.0.0.1:1")

    response = await client.get("/sandbox/mailbox")

    assert response.status_code == 404
    assert "--smtp-url" in response.json()["error"]["message"]


async def test_webhook_deliveries_are_listed_per_customer(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant
) -> None:
    await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": "http://127.0.0.1:9/hook"})
    created = await client.post(
        "/v1.0/extensions", params=alice.auth, json={"extension": "100", "password": "secret-100", "name": "a", "detail": ""}
    )
    assert created.status_code == 200

    alices = (await client.get("/v1.0/webhook_deliveries", params=alice.auth)).json()["result"]
    bobs = (await client.get("/v1.0/webhook_deliveries", params=bob.auth)).json()["result"]

    assert "extension_created" in {d["event_type"] for d in alices}
    assert all(d["customer_id"] == alice.customer_id for d in alices)
    assert {d["uri"] for d in alices} == {"http://127.0.0.1:9/hook"}
    assert bobs == []
