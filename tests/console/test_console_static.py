"""The console's files as served (types, CSP, config), and proof it calls only public routes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from voipbin.api.app import create_app
from voipbin.console import CONTENT_TYPES, STATIC
from voipbin.runtime import Platform

JS_FILES = sorted(STATIC.rglob("*.js"))
# api.get("/v1.0/calls"), api.post(`/v1.0/calls/${id}/hangup`), ...
API_CALL = re.compile(r"\bapi\.(get|post|put|del)\(\s*([\"'`])((?:(?!\2).)*)\2")
ANY_API_CALL = re.compile(r"\bapi\.(get|post|put|del)\(")
METHODS = {"get": "GET", "post": "POST", "put": "PUT", "del": "DELETE"}


async def test_console_path_redirects_to_the_slash(client: httpx.AsyncClient) -> None:
    response = await client.get("/console")
    assert response.status_code in (302, 307) and response.headers["location"] == "/console/"


async def test_index_is_html_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "connect-src 'self' ws://testserver wss://testserver" in policy
    assert "unsafe" not in policy and "http" not in policy  # no inline code, no other origins
    assert '<script type="module" src="js/app.js">' in response.text


@pytest.mark.parametrize("path", sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file()))
async def test_every_asset_is_served_with_its_type(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"/console/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPES[Path(path).suffix]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/%2e%2e/__init__.py", "/console/js/"])
async def test_anything_else_is_a_404_envelope(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["reason"] == "ROUTE_NOT_FOUND"


async def test_config_names_the_sip_endpoint(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.get("/console/config.json")
    assert response.status_code == 200
    assert response.json() == {
        "domain": "voipbin.test",
        "registrar_suffix": "registrar.voipbin.test",
        "sip_port": platform.sip.stack.port,
        "public_address": "127.0.0.1",
        "sandbox": True,
        "mailbox": True,
        "api_base": "",
    }
    assert platform.sip.stack.port != 0  # the bound port, not the setting (0: any free port)


def test_pages_hold_no_inline_code_or_html_injection() -> None:
    """CSP forbids inline scripts and styles; innerHTML would parse API data as HTML."""
    index = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", index)
    assert not re.search(r"\son\w+=|\sstyle=", index)
    for path in JS_FILES:
        source = path.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\.style\b|\bstyle:|eval\(", source), path


def test_module_imports_resolve() -> None:
    for path in JS_FILES:
        for target in re.findall(r"^import [^;]*? from \"(\.[^\"]+)\";", path.read_text(), re.MULTILINE):
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports missing {target}"


def _listed(app: FastAPI, path: str, method: str) -> bool:
    """Whether the OpenAPI spec has this concrete path (``{param}`` matching one segment)."""
    for template, item in app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return True
    return False


def console_requests() -> list[tuple[str, str]]:
    """(method, path) of every API request in the console's JS; ``${...}`` becomes one segment."""
    calls = []
    for path in JS_FILES:
        source = path.read_text()
        found = API_CALL.findall(source)
        # Every call names its path literally, so this check sees all of them.
        assert len(found) == len(ANY_API_CALL.findall(source)), f"{path.name}: an api call with a computed path"
        calls += [(METHODS[verb], re.sub(r"\$\{[^}]*\}", "x", target)) for verb, _quote, target in found]
        if path.name != "api.js":
            assert "fetch(" not in source, f"{path.name} bypasses api.js"
        if path.name != "events.js":
            assert "WebSocket(" not in source, f"{path.name} opens its own socket"
    return calls


async def test_console_calls_only_routes_the_api_serves(client: httpx.AsyncClient, platform: Platform) -> None:
    app = create_app(platform)
    calls = console_requests()
    assert len(calls) > 30
    unlisted = [(method, path) for method, path in calls if not _listed(app, path, method)]
    # Outside the spec only the console's own files and the spec itself, each of which must really be served.
    assert all(path.startswith("/console/") or path == "/openapi.json" for _method, path in unlisted), unlisted
    for method, path in unlisted:
        response = await client.request(method, path)
        assert response.status_code < 400, (method, path, response.text)
    assert app.url_path_for("events_socket") == "/v1.0/ws"
    assert "/v1.0/ws?token=" in (STATIC / "js" / "events.js").read_text()
