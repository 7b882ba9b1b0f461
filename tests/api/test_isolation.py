"""Tenant isolation: for every route with an id, another customer gets 404 and never the data.

The routes are read from the app itself, so a route added later without a case here fails.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.conftest import Tenant
from voipbin.api.app import create_app
from voipbin.runtime import Platform

# How to make one resource of each kind as alice, and a harmless body for PUTs on it.
FACTORIES: dict[str, tuple[str, dict[str, object], dict[str, object]]] = {
    "extension_id": ("/v1.0/extensions", {"name": "n", "detail": "d", "extension": "501", "password": "secret1"}, {"detail": "x"}),
    "number_id": ("/v1.0/numbers", {"number": "+15550009999"}, {"name": "x"}),
    "accesskey_id": ("/v1.0/accesskeys", {"name": "k"}, {"name": "x"}),
    "agent_id": ("/v1.0/agents", {"username": "agent@alice.example", "password": "12345678"}, {"name": "x"}),
}
OPERATOR_ONLY = {"customer_id"}


def id_routes(platform: Platform) -> list[tuple[str, str, str]]:
    routes = []
    for route in create_app(platform).routes:
        if isinstance(route, APIRoute) and "{" in route.path:
            param = route.path.split("{", 1)[1].split("}", 1)[0]
            for method in sorted(route.methods):
                routes.append((method, route.path, param))
    return routes


async def test_every_id_route_has_a_case(platform: Platform) -> None:
    params = {param for _, _, param in id_routes(platform)}
    assert params <= set(FACTORIES) | OPERATOR_ONLY


@pytest.mark.parametrize("credential", ["token", "accesskey"])
async def test_other_customers_resources_are_invisible(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, bob: Tenant, credential: str
) -> None:
    created: dict[str, dict[str, object]] = {}
    for param, (collection, body, _) in FACTORIES.items():
        response = await client.post(collection, params=alice.auth, json=body)
        assert response.status_code == 200, response.text
        created[param] = response.json()
    bob_auth = {credential: bob.token if credential == "token" else bob.accesskey}

    for method, path, param in id_routes(platform):
        if param in OPERATOR_ONLY:
            url = path.replace("{customer_id}", alice.customer_id)
            response = await client.request(method, url, params=bob_auth, json={})
            assert response.status_code == 403, (method, url)
            continue
        resource = created[param]
        url = path.replace("{" + param + "}", str(resource["id"]))
        body = FACTORIES[param][2] if method == "PUT" else None
        if url.endswith("/permission"):
            body = {"permission": 64}
        elif url.endswith("/password"):
            body = {"password": "hijacked-password"}
        response = await client.request(method, url, params=bob_auth, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert str(resource["id"]) not in response.text

    # And alice still sees every one of them unchanged.
    for param, resource in created.items():
        collection = FACTORIES[param][0]
        mine = await client.get(f"{collection}/{resource['id']}", params=alice.auth)
        assert mine.status_code == 200
        assert mine.json()["tm_update"] == ""


async def test_lists_hold_only_own_rows(client: httpx.AsyncClient, alice: Tenant, bob: Tenant) -> None:
    for collection, body, _ in FACTORIES.values():
        await client.post(collection, params=alice.auth, json=body)
    for collection in ("/v1.0/extensions", "/v1.0/numbers", "/v1.0/accesskeys", "/v1.0/agents"):
        rows = (await client.get(collection, params=bob.auth)).json()["result"]
        assert all(row["customer_id"] == bob.customer_id for row in rows), collection
