"""Account takeover through mail (security issue, items 1 and 2): the sandbox mailbox shows a reader
only mail of an audience they have proven, a customer's new email needs its owner's confirmation,
and a signup's temp_token reads that signup's own mail only while it is pending."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.security.conftest import Server, link_token, serving


async def test_a_customer_cannot_point_its_email_at_anothers_inbox_and_read_its_reset_link(server: Server) -> None:
    operator = await server.operator()
    victim = await server.tenant("victim@example.com", operator)
    attacker = await server.tenant("attacker@example.com", operator)

    # The attack: claim the victim's address, ask for the victim's reset link, read the mailbox.
    claimed = await server.client.put("/v1.0/customer", params=attacker.auth, json={"email": victim.username})
    await server.client.post("/auth/password-forgot", json={"username": victim.username})
    await server.mail(victim.username, "Reset your VoIPBIN password")

    assert claimed.status_code == 200 and claimed.json()["email"] == attacker.username  # not changed yet
    for credential in (attacker.auth, {"accesskey": attacker.accesskey}):
        box = (await server.client.get("/sandbox/mailbox", params=credential)).json()["result"]
        assert not [m for m in box if "password-reset" in m["body"]], box
    # The victim reads its own reset mail, and the request to use its address, which it may ignore.
    victims = (await server.client.get("/sandbox/mailbox", params=victim.auth)).json()["result"]
    assert {m["subject"] for m in victims} == {"Reset your VoIPBIN password", "Confirm your new VoIPBIN email address"}


async def test_a_new_email_takes_effect_once_its_owner_opens_the_link(server: Server) -> None:
    operator = await server.operator()
    alice = await server.tenant("alice@example.com", operator)

    asked = await server.client.put("/v1.0/customer", params=alice.auth, json={"email": "alice.new@example.com"})
    link = link_token(await server.mail("alice.new@example.com", "Confirm your new VoIPBIN email"))
    confirmed = await server.client.post("/auth/email-change", json={"token": link})
    again = await server.client.post("/auth/email-change", json={"token": link})

    assert asked.json()["email"] == "alice@example.com"
    assert confirmed.status_code == 200 and confirmed.json()["email"] == "alice.new@example.com"
    assert (await server.client.get("/v1.0/customer", params=alice.auth)).json()["email"] == "alice.new@example.com"
    assert again.status_code == 400 and again.json()["error"]["reason"] == "INVALID_TOKEN"
    # Opening the link is the console's page (no change happens on a GET).
    opened = await server.client.get(f"/auth/email-change?token={link}")
    assert opened.status_code == 302 and opened.headers["location"] == f"/console/#/email-change?token={link}"


async def test_a_squatted_temp_token_reads_nothing_once_the_owner_signs_up(server: Server) -> None:
    squatter = (await server.client.post("/auth/signup", json={"email": "owner@example.com"})).json()["temp_token"]
    own = (await server.client.post("/auth/signup", json={"email": "owner@example.com"})).json()["temp_token"]

    # Each pending signup sees its own verification mail only.
    squatters = (await server.client.get("/sandbox/mailbox", params={"temp_token": squatter})).json()["result"]
    owners = (await server.client.get("/sandbox/mailbox", params={"temp_token": own})).json()["result"]
    assert len(squatters) == len(owners) == 1 and squatters[0]["id"] != owners[0]["id"]

    # The owner completes signup with its own code; every other signup of the address is over.
    code = owners[0]["subject"].rsplit(" ", 1)[-1]
    done = await server.client.post("/auth/complete-signup", json={"temp_token": own, "code": code})
    assert done.status_code == 200, done.text
    await server.client.post("/auth/password-forgot", json={"username": "owner@example.com"})
    await server.mail("owner@example.com", "Reset your VoIPBIN password")

    late = await server.client.get("/sandbox/mailbox", params={"temp_token": squatter})
    assert late.status_code == 404 and late.json()["error"]["reason"] == "SIGNUP_NOT_FOUND"
    # The new account reads its welcome and reset mail with its own access key.
    mine = (await server.client.get("/sandbox/mailbox", params={"accesskey": done.json()["accesskey"]["token"]})).json()
    assert {"Welcome to VoIPBIN", "Reset your VoIPBIN password"} <= {m["subject"] for m in mine["result"]}


async def test_an_expired_signup_reads_no_mail(tmp_path: Path) -> None:
    async with serving(tmp_path / "data", signup_code_lifetime_s=1) as server:
        temp_token = (await server.client.post("/auth/signup", json={"email": "late@example.com"})).json()["temp_token"]
        await server.mail("late@example.com", "verification code")
        assert (await server.client.get("/sandbox/mailbox", params={"temp_token": temp_token})).status_code == 200
        await asyncio.sleep(1.2)

        expired = await server.client.get("/sandbox/mailbox", params={"temp_token": temp_token})

    assert expired.status_code == 404
