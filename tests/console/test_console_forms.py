"""Every console form marks as required exactly the fields the API's schema requires of its body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN

pytestmark = pytest.mark.slow
expect = pytest.importorskip("playwright.sync_api").expect

PAGES = Path(__file__).parents[2] / "src" / "voipbin" / "console" / "static" / "js"
# What each form shows: its operation, the fields the console fills itself, and each control's
# name, `required` and label text.
READ_FORMS = """forms => forms.map(form => ({
  api: form.dataset.api,
  given: (form.dataset.apiGiven || "").split(" ").filter(Boolean),
  controls: [...form.elements].filter(c => c.name).map(c => ({
    name: c.name, required: c.required, textual: c.tagName !== "SELECT" && c.type !== "checkbox",
    label: (form.querySelector(`label[for="${CSS.escape(c.id)}"]`) || c.closest("label") || {textContent: ""}).textContent.trim(),
  })),
}))"""


def body_schema(spec: dict[str, Any], operation: str) -> dict[str, Any]:
    method, path = operation.split(" ")
    schema = spec["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return dict(schema)


@pytest.fixture
def page(browser: Any, console_server: str) -> Iterator[Any]:
    context = browser.new_context(base_url=console_server)
    try:
        yield context.new_page()
    finally:
        context.close()


def forms_on(page: Any, route: str) -> list[dict[str, Any]]:
    page.goto(f"/console/#{route}")
    expect(page.locator("form[data-api]").first).to_be_attached()
    return list(page.eval_on_selector_all("form[data-api]", READ_FORMS))


def test_required_markers_are_the_schemas(page: Any, console_server: str) -> None:
    spec = httpx.get(f"{console_server}/openapi.json", timeout=30).json()  # the first build of the schema, on a busy box
    token = httpx.post(f"{console_server}/auth/login", json=ADMIN).json()["token"]
    ext = httpx.post(f"{console_server}/v1.0/extensions", params={"token": token},
                     json={"name": "forms", "detail": "d", "extension": "forms1", "password": "forms-pass-1"}).json()

    seen = [*forms_on(page, "/login"), *forms_on(page, "/signup"), *forms_on(page, "/forgot"),
            *forms_on(page, "/password-reset?token=" + "0" * 64)]
    # A signup shows the form for its mailed code.
    page.goto("/console/#/signup")
    page.get_by_label("Email", exact=True).fill("forms@example.com")
    page.get_by_label("I accept the terms of service").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Or enter the code")).to_be_visible()
    seen += page.eval_on_selector_all("form[data-api]", READ_FORMS)
    page.goto("/console/#/login")
    page.get_by_label("Email (username)").fill(ADMIN["username"])
    page.get_by_label("Password").fill(ADMIN["password"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    for route in ("/extensions", f"/extensions/{ext['id']}", "/numbers", "/accesskeys", "/settings", "/calls/new", "/ais",
                  "/conferences"):
        seen += forms_on(page, route)

    # Every form of the console was looked at.
    declared = {m for js in PAGES.rglob("*.js") for m in re.findall(r'"data-api": "([^"]+)"', js.read_text())}
    assert {form["api"] for form in seen} == declared
    for form in seen:
        schema = body_schema(spec, form["api"])
        required, properties = set(schema.get("required", [])), set(schema.get("properties", {}))
        fields = [c for c in form["controls"] if c["name"] in properties]
        marked = {c["name"] for c in fields if c["required"]}
        assert marked == required & {c["name"] for c in fields}, form
        assert required <= {c["name"] for c in fields} | set(form["given"]), form  # nothing required is left out
        for control in fields:
            optional_label = control["label"].endswith("(optional)")
            assert optional_label == (control["name"] not in required and bool(required) and control["textual"]), form
    extension_form = next(form for form in seen if form["api"] == "POST /v1.0/extensions")
    assert {c["name"]: c["label"] for c in extension_form["controls"]}["detail"] == "Detail"  # required, as the seed says
