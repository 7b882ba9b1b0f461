"""Extensions, numbers, the customer's webhook settings, and VoIPBIN-style lists."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant
from voipbin.core.ids import new_id
from voipbin.runtime import Platform
from voipbin.store.models import Transcribe

SEED_EXTENSION = {
    "name": "quickstart-phone",
    "detail": "Quickstart softphone extension",
    "extension": "quickstart1",
    "password": "your-secure-password-here",
}


async def test_extension_has_the_seed_shape(client: httpx.AsyncClient, alice: Tenant) -> None:
    response = await client.post("/v1.0/extensions", params=alice.auth, json=SEED_EXTENSION)

    assert response.status_code == 200, response.text
    ext = response.json()
    assert {k: ext[k] for k in SEED_EXTENSION} == SEED_EXTENSION
    assert ext["username"] == "quickstart1"
    assert ext["customer_id"] == ext["domain_name"] == alice.customer_id
    assert len(ext["direct_hash"]) == 12
    assert ext["tm_create"].endswith("Z") and ext["tm_update"] == "" and ext["tm_delete"] == ""


async def test_extension_lifecycle(client: httpx.AsyncClient, alice: Tenant) -> None:
    ext = (await client.post("/v1.0/extensions", params=alice.auth, json=SEED_EXTENSION)).json()
    url = f"/v1.0/extensions/{ext['id']}"

    updated = await client.put(url, params=alice.auth, json={"detail": "new detail", "password": "another-pass"})
    fetched = await client.get(url, params=alice.auth)
    deleted = await client.delete(url, params=alice.auth)
    after = await client.get(url, params=alice.auth)
    listed = await client.get("/v1.0/extensions", params=alice.auth)

    assert updated.json()["detail"] == "new detail" and updated.json()["tm_update"] != ""
    assert fetched.json()["password"] == "another-pass"
    assert deleted.status_code == 200 and deleted.json()["tm_delete"] != ""
    assert after.status_code == 404
    assert ext["id"] not in [e["id"] for e in listed.json()["result"]]


async def test_extension_is_unique_per_customer(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    first = await client.post("/v1.0/extensions", params=alice.auth, json=SEED_EXTENSION)
    again = await client.post("/v1.0/extensions", params=alice.auth, json=SEED_EXTENSION)
    other_customer = await client.post("/v1.0/extensions", params=bob.auth, json=SEED_EXTENSION)

    assert (first.status_code, again.status_code, other_customer.status_code) == (200, 409, 200)
    assert "quickstart1" in again.json()["error"]["message"]


async def test_missing_extension_field_is_named(client: httpx.AsyncClient, alice: Tenant) -> None:
    for field in ("name", "detail", "extension", "password"):
        body = {k: v for k, v in SEED_EXTENSION.items() if k != field}
        response = await client.post("/v1.0/extensions", params=alice.auth, json=body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["reason"] == "MISSING_REQUEST_PARAMETER"
        assert f"'{field}' is required" in error["message"]


async def test_lists_page_newest_first(client: httpx.AsyncClient, alice: Tenant) -> None:
    for i in range(5):
        body = {**SEED_EXTENSION, "extension": f"10{i}", "name": f"phone-{i}"}
        assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200

    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = (
            await client.get("/v1.0/extensions", params={**alice.auth, "page_size": 2, "page_token": token})
        ).json()
        seen += [e["name"] for e in page["result"]]
        token = page["next_page_token"]
        if not token:
            break

    assert seen == [f"phone-{i}" for i in reversed(range(5))]


async def test_numbers_are_e164(client: httpx.AsyncClient, alice: Tenant) -> None:
    good = await client.post("/v1.0/numbers", params=alice.auth, json={"number": "+89951234567", "name": "main"})
    bad = [
        await client.post("/v1.0/numbers", params=alice.auth, json={"number": n})
        for n in ("15551234567", "+1 555 123", "+0123", "+1234567890123456", "+1555abc")
    ]

    assert good.status_code == 200 and good.json()["status"] == "active"
    assert [r.status_code for r in bad] == [400] * 5
    assert "E.164" in bad[0].json()["error"]["message"]


async def test_a_number_has_one_owner(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    await client.post("/v1.0/numbers", params=alice.auth, json={"number": "+89957654321"})
    taken = await client.post("/v1.0/numbers", params=bob.auth, json={"number": "+89957654321"})
    assert taken.status_code == 409


async def test_number_update_and_release(client: httpx.AsyncClient, alice: Tenant) -> None:
    number = (await client.post("/v1.0/numbers", params=alice.auth, json={"number": "+89950001111"})).json()
    url = f"/v1.0/numbers/{number['id']}"

    bad_flow = await client.put(url, params=alice.auth, json={"call_flow_id": "not-a-uuid"})
    renamed = await client.put(url, params=alice.auth, json={"name": "support line"})
    released = await client.delete(url, params=alice.auth)

    assert bad_flow.status_code == 400 and "call_flow_id" in bad_flow.json()["error"]["message"]
    assert renamed.json()["name"] == "support line"
    assert released.json()["status"] == "deleted"


async def test_customer_webhook_settings(client: httpx.AsyncClient, alice: Tenant) -> None:
    body = {"webhook_method": "POST", "webhook_uri": "https://your-server.com/voipbin/events"}
    updated = await client.put("/v1.0/customer", params=alice.auth, json=body)
    cleared = await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": ""})
    bad = await client.put("/v1.0/customer", params=alice.auth, json={"webhook_uri": "ftp://x"})

    assert updated.status_code == 200
    assert {k: updated.json()[k] for k in body} == body
    assert updated.json()["id"] == alice.customer_id
    assert len(updated.json()["webhook_secret"]) == 64
    assert cleared.json()["webhook_uri"] == ""
    assert bad.status_code == 400


async def test_transcribes_filter_by_call(client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> None:
    calls = [new_id(), new_id()]
    async with platform.store.transaction() as tx:
        for call_id in calls:
            tx.session.add(Transcribe(id=new_id(), customer_id=alice.customer_id, reference_type="call",
                                      reference_id=call_id, tm_create=tx.clock.now()))

    one = (await client.get("/v1.0/transcribes", params={**alice.auth, "reference_id": calls[0]})).json()["result"]
    both = (await client.get("/v1.0/transcribes", params={**alice.auth, "reference_type": "call"})).json()["result"]

    assert [t["reference_id"] for t in one] == [calls[0]]
    assert {t["reference_id"] for t in both} == set(calls)


async def test_logout_forgets_the_login_cookie(client: httpx.AsyncClient) -> None:
    await client.post("/auth/login", json={"username": "admin@localhost", "password": "admin@localhost"})
    assert (await client.get("/v1.0/customer")).status_code == 200  # the cookie alone logs in

    assert (await client.post("/auth/logout")).status_code == 200

    assert (await client.get("/v1.0/customer")).status_code == 401
