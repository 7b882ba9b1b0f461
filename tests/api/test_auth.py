"""Signup with an emailed code, login, and how each kind of credential is accepted or refused."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import ADMIN, Tenant, login, mailed_code
from voipbin.mail.outbox import read_outbox
from voipbin.runtime import Platform
from voipbin.store.models import Accesskey, Signup


async def signup(client: httpx.AsyncClient, email: str, **extra: object) -> str:
    response = await client.post("/auth/signup", json={"email": email, **extra})
    assert response.status_code == 200
    return str(response.json()["temp_token"])


async def test_headless_signup_gives_a_working_accesskey(client: httpx.AsyncClient, platform: Platform) -> None:
    temp_token = await signup(client, "new@example.com", name="Your Company Name")
    assert len(temp_token) == 32
    code = await mailed_code(platform.settings.mail_dir, "new@example.com")

    done = await client.post("/auth/complete-signup", json={"temp_token": temp_token, "code": code})

    assert done.status_code == 200, done.text
    body = done.json()
    assert set(body) == {"customer_id", "accesskey", "next_steps"}
    assert body["accesskey"]["token"].startswith("vb_")
    # No password yet: the answer says to use the access key, and where the set-password link is.
    assert "?accesskey=" in body["next_steps"] and "welcome mail sent to new@example.com" in body["next_steps"]
    me = await client.get("/v1.0/customer", params={"accesskey": body["accesskey"]["token"]})
    assert me.status_code == 200
    assert me.json()["id"] == body["customer_id"]
    assert me.json()["email"] == "new@example.com"
    assert me.json()["name"] == "Your Company Name"
    numbers = await client.get("/v1.0/numbers", params={"accesskey": body["accesskey"]["token"]})
    assert [n["type"] for n in numbers.json()["result"]] == ["virtual"]


async def test_signup_never_reveals_whether_an_email_exists(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    known = await client.post("/auth/signup", json={"email": alice.username})
    fresh = await client.post("/auth/signup", json={"email": "fresh@example.com"})
    invalid = await client.post("/auth/signup", json={"email": "not-an-email"})
    missing = await client.post("/auth/signup", json={})

    assert [r.status_code for r in (known, fresh, invalid, missing)] == [200] * 4
    # A registered address gets a token of the same form, which behaves like a real one.
    assert len(known.json()["temp_token"]) == len(fresh.json()["temp_token"]) == 32
    answers = [await client.post("/auth/complete-signup", json={"temp_token": r.json()["temp_token"], "code": "000000"})
               for r in (known, fresh)]
    assert [a.status_code for a in answers] == [400, 400] or "000000" in {await mailed_code(platform.settings.mail_dir, "fresh@example.com")}
    assert invalid.json() == missing.json() == {"temp_token": ""}
    # Its owner is told of the attempt, and no code is mailed for it.
    await asyncio.sleep(0.2)
    to_alice = [m for m in read_outbox(platform.settings.mail_dir) if m.to == alice.username]
    assert [m.subject for m in to_alice] == ["Someone tried to sign up with your email"]


async def test_signups_are_limited_per_address_and_per_source(client: httpx.AsyncClient, platform: Platform) -> None:
    settings = platform.settings.replace(signup_limit_per_source=5)
    platform.accounts = dataclasses.replace(platform.accounts, settings=settings)
    answers = [await client.post("/auth/signup", json={"email": "bombed@example.com"}) for _ in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].json()["error"]["reason"] == "TOO_MANY_SIGNUPS"
    await asyncio.sleep(0.2)
    mails = [m for m in read_outbox(platform.settings.mail_dir) if m.to == "bombed@example.com"]
    assert len(mails) == platform.settings.signup_mails_per_address == 3


async def test_wrong_code_is_400_and_the_sixth_attempt_429(client: httpx.AsyncClient, platform: Platform) -> None:
    temp_token = await signup(client, "guess@example.com")
    code = await mailed_code(platform.settings.mail_dir, "guess@example.com")
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    statuses = [
        (await client.post("/auth/complete-signup", json={"temp_token": temp_token, "code": wrong})).status_code
        for _ in range(5)
    ]
    sixth = await client.post("/auth/complete-signup", json={"temp_token": temp_token, "code": code})

    assert statuses == [400] * 5
    assert sixth.status_code == 429
    assert sixth.json()["error"]["reason"] == "TOO_MANY_ATTEMPTS"


async def test_expired_code_is_400(client: httpx.AsyncClient, platform: Platform) -> None:
    temp_token = await signup(client, "late@example.com")
    code = await mailed_code(platform.settings.mail_dir, "late@example.com")
    async with platform.store.session() as session:
        past = platform.clock.read() - timedelta(seconds=1)
        await session.execute(update(Signup).where(Signup.temp_token == temp_token).values(tm_expire=past))
        await session.commit()

    response = await client.post("/auth/complete-signup", json={"temp_token": temp_token, "code": code})

    assert response.status_code == 400
    assert response.json()["error"]["reason"] == "CODE_EXPIRED"


async def test_unknown_temp_token_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/complete-signup", json={"temp_token": "f" * 32, "code": "123456"})
    assert response.status_code == 400
    assert "POST /auth/signup" in response.json()["error"]["message"]


async def test_login_returns_username_and_jwt(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/login", json=ADMIN)
    assert response.status_code == 200
    assert response.json()["username"] == "admin@localhost"
    assert response.json()["token"].count(".") == 2


@pytest.mark.parametrize(
    "credentials", [{"username": "admin@localhost", "password": "wrong"}, {"username": "nobody@x.org", "password": "x"}]
)
async def test_bad_login_is_401_with_the_same_message(client: httpx.AsyncClient, credentials: dict[str, str]) -> None:
    response = await client.post("/auth/login", json=credentials)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Wrong username or password."


async def test_each_credential_only_under_its_own_name(client: httpx.AsyncClient, admin: Tenant) -> None:
    ok_token = await client.get("/v1.0/extensions", params={"token": admin.token})
    ok_bearer = await client.get("/v1.0/extensions", headers={"Authorization": f"Bearer {admin.token}"})
    ok_key = await client.get("/v1.0/extensions", params={"accesskey": admin.accesskey})
    key_as_token = await client.get("/v1.0/extensions", params={"token": admin.accesskey})
    token_as_key = await client.get("/v1.0/extensions", params={"accesskey": admin.token})
    nothing = await client.get("/v1.0/extensions")

    assert [r.status_code for r in (ok_token, ok_bearer, ok_key)] == [200, 200, 200]
    assert [r.status_code for r in (key_as_token, token_as_key, nothing)] == [401, 401, 401]
    assert nothing.json()["error"]["reason"] == "AUTHENTICATION_REQUIRED"


async def test_expired_jwt_is_401(client: httpx.AsyncClient, platform: Platform, admin: Tenant) -> None:
    old = platform.clock.read() - timedelta(days=8)
    claims = platform.jwt.verify(admin.token)
    assert claims is not None
    expired = platform.jwt.issue(claims.agent_id, claims.customer_id, claims.username, claims.permission, old)

    response = await client.get("/v1.0/customer", params={"token": expired})

    assert response.status_code == 401
    assert "POST /auth/login" in response.json()["error"]["message"]


async def test_expired_and_deleted_accesskeys_are_401(client: httpx.AsyncClient, platform: Platform, admin: Tenant) -> None:
    made = [(await client.post("/v1.0/accesskeys", params=admin.auth, json={"expire": 3600})).json() for _ in range(2)]
    expiring, deleting = made
    async with platform.store.session() as session:
        past = platform.clock.read() - timedelta(seconds=1)
        await session.execute(update(Accesskey).where(Accesskey.id == expiring["id"]).values(tm_expire=past))
        await session.commit()
    await client.delete(f"/v1.0/accesskeys/{deleting['id']}", params=admin.auth)

    for key in made:
        response = await client.get("/v1.0/customer", params={"accesskey": key["token"]})
        assert response.status_code == 401


async def test_accesskey_token_is_shown_only_on_create(client: httpx.AsyncClient, admin: Tenant) -> None:
    created = await client.post(
        "/v1.0/accesskeys", params=admin.auth, json={"name": "my-api-key", "detail": "API key for automated access"}
    )
    key = created.json()
    fetched = (await client.get(f"/v1.0/accesskeys/{key['id']}", params=admin.auth)).json()
    listed = (await client.get("/v1.0/accesskeys", params=admin.auth)).json()["result"]

    assert key["name"] == "my-api-key" and key["token"].startswith(key["token_prefix"])
    assert key["tm_expire"] > key["tm_create"]
    assert "token" not in fetched
    assert all("token" not in row for row in listed)


async def test_manager_reads_but_may_not_change_the_customer(client: httpx.AsyncClient, alice: Tenant) -> None:
    manager = {"username": "manager@example.com", "password": "manager-password", "permission": 64}
    created = await client.post("/v1.0/agents", params=alice.auth, json=manager)
    assert created.status_code == 201, created.text
    token = await login(client, manager["username"], manager["password"])

    read = await client.get("/v1.0/customer", params={"token": token})
    write = await client.put("/v1.0/customer", params={"token": token}, json={"webhook_uri": "http://127.0.0.1/x"})
    keys = await client.get("/v1.0/accesskeys", params={"token": token})

    assert read.status_code == 200 and "webhook_secret" not in read.json()
    assert write.status_code == 403
    assert keys.status_code == 403


async def test_a_customer_admin_cannot_grant_platform_rights(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post(
        "/v1.0/agents", params=alice.auth, json={"username": "x@example.com", "password": "12345678", "permission": 1}
    )
    assert response.status_code == 403


async def test_operator_routes_need_superadmin(client: httpx.AsyncClient, alice: Tenant, admin: Tenant) -> None:
    assert (await client.get("/v1.0/customers", params=alice.auth)).status_code == 403
    assert (await client.get("/v1.0/customers", params=admin.auth)).status_code == 200


async def test_login_after_signup_needs_a_password_first(client: httpx.AsyncClient, platform: Platform) -> None:
    temp_token = await signup(client, "nopass@example.com")
    code = await mailed_code(platform.settings.mail_dir, "nopass@example.com")
    await client.post("/auth/complete-signup", json={"temp_token": temp_token, "code": code})

    response = await client.post("/auth/login", json={"username": "nopass@example.com", "password": ""})

    assert response.status_code == 400
    assert (await login_fails(client, "nopass@example.com", "anything")) == 401


async def login_fails(client: httpx.AsyncClient, username: str, password: str) -> int:
    return (await client.post("/auth/login", json={"username": username, "password": password})).status_code


async def test_login_guessing_is_throttled_per_username(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    wrong = {"username": alice.username, "password": "not-the-password"}
    statuses = [(await client.post("/auth/login", json=wrong)).status_code for _ in range(10)]

    right_too_late = await client.post("/auth/login", json={"username": alice.username, "password": "correct horse battery"})
    unknown = [(await client.post("/auth/login", json={"username": "nobody@example.com", "password": "x"})).status_code
               for _ in range(11)]

    assert statuses == [401] * 10
    assert right_too_late.status_code == 429
    assert "wait 5 minutes" in right_too_late.json()["error"]["message"]
    assert unknown == [401] * 10 + [429]  # the same for a name that has no account
    await login(client, bob.username, "correct horse battery")  # others are not held back


async def test_password_reset_mails_are_limited(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    for _ in range(5):
        assert (await client.post("/auth/password-forgot", json={"username": alice.username})).status_code == 200
    await asyncio.sleep(0.3)

    mails = [m for m in read_outbox(platform.settings.mail_dir) if m.to == alice.username]

    assert len(mails) == 3
