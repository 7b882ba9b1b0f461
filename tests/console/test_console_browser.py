"""The console in a real browser: a newcomer signs up through the mailbox, sets a password, adds an
extension, registers baresip to it and places a test call, watching it live."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ai.fake_llm import FakeLlm, Scripted
from tests.conftest import ADMIN
from tests.peers.baresip import Baresip, tone

pytestmark = pytest.mark.slow
expect_module = pytest.importorskip("playwright.sync_api")
expect = expect_module.expect
expect.set_options(timeout=5_000)

EMAIL = "newcomer@example.com"
PASSWORD = "plum tuba orbit 42"
EXTENSION, SIP_PASSWORD = "2001", "secret-pass-2001"


class Walk:
    """One browser tab, with numbered screenshots and a record of what went wrong in the page."""

    def __init__(self, page: Any, artifacts: Path, prefix: str) -> None:
        self.page = page
        self.artifacts = artifacts
        self.prefix = prefix
        self.step = 0
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # Refused requests (a weak password, a duplicate) log "Failed to load resource": expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.artifacts / f"{self.prefix}-{self.step:02d}-{name}.png"), full_page=True)

    def nav(self, name: str) -> None:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()

    def heading(self, text: str, timeout: float = 5_000) -> None:
        expect(self.page.get_by_role("heading", level=1)).to_have_text(text, timeout=timeout)


@pytest.fixture
def tab(browser: Any, console_server: str, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Walk]:
    viewport = getattr(request, "param", {"width": 1280, "height": 900})
    context = browser.new_context(viewport=viewport, base_url=console_server)
    # Offline by design: any request off this server is refused and reported.
    outside: list[str] = []

    def refuse(route: Any) -> None:
        outside.append(route.request.url)
        route.abort()

    context.route(re.compile(rf"^(?!{re.escape(console_server)}/)"), refuse)
    walk = Walk(context.new_page(), artifacts, request.node.name.split("[")[0].removeprefix("test_"))
    try:
        yield walk
        assert walk.problems == [] and outside == []
    finally:
        context.close()


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`")
def test_signup_to_first_call(tab: Walk, tmp_path: Path) -> None:
    page = tab.page
    page.goto("/console/")
    tab.heading("Log in")  # the dashboard needs a login
    tab.shot("login-first")

    # Sign up: a malformed address is refused on the page, a good one mails a link.
    tab.nav("Sign up")
    page.get_by_label("Email", exact=True).fill("newcomer@")
    page.get_by_label("I accept the terms of service").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter a valid email address")
    expect(page.get_by_label("Email", exact=True)).to_have_attribute("aria-invalid", "true")
    tab.shot("signup-bad-email")
    page.get_by_label("Email", exact=True).fill(EMAIL)
    page.get_by_role("button", name="Sign up").click()
    tab.heading("Check your email")
    tab.shot("signup-sent")

    # The sandbox mailbox, readable before any login, holds the verification link.
    tab.nav("Mailbox")
    first_mail = page.locator("table tbody a").first
    expect(first_mail).to_be_visible(timeout=10_000)
    tab.shot("mailbox")
    first_mail.click()
    verify_link = page.locator('pre.mail-body a[href*="/auth/email-verify?token="]')
    expect(verify_link).to_be_visible()
    tab.shot("verification-mail")
    verify_link.click()
    tab.heading("Your email is verified")
    expect(page.locator(".secret code")).to_have_text(re.compile(r"^vb_\w+$"))
    tab.shot("verified")

    # The welcome mail links to the set-password form; a weak password is refused there. (The
    # verification mail was the signup's: with the signup done, the new access key reads its own.)
    tab.nav("Mailbox")
    welcome = page.locator("table tbody tr", has_text="Welcome to VoIPBIN")
    expect(welcome).to_have_count(1, timeout=10_000)
    welcome.locator("a").first.click()
    page.locator('pre.mail-body a[href*="/auth/password-reset?token="]').click()
    tab.heading("Set your password")
    page.get_by_label("New password").fill("short")
    page.get_by_label("Repeat the password").fill("short")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert")).to_contain_text("WEAK_PASSWORD")
    tab.shot("weak-password")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    tab.heading("Your password is set")
    page.get_by_role("main").get_by_role("link", name="Log in").click()

    page.get_by_label("Email (username)").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    tab.heading("Dashboard")
    expect(page.locator(".live-state")).to_have_text("Live")
    tab.shot("dashboard")

    # An extension; the same one again gets the API's clear refusal next to the form.
    tab.nav("Extensions")
    for attempt in ("created", "duplicate"):
        page.get_by_label("Extension", exact=True).fill(EXTENSION)
        page.get_by_label("Name", exact=True).fill("console-phone")
        page.get_by_label("Detail", exact=True).fill("The softphone of the console walk")
        page.get_by_label("SIP password").fill(SIP_PASSWORD)
        page.get_by_role("button", name="Create extension").click()
        if attempt == "created":
            expect(page.locator(f'tr[data-extension="{EXTENSION}"]')).to_contain_text("Not registered")
        else:
            expect(page.get_by_role("alert")).to_contain_text(f"Extension '{EXTENSION}' already exists")
            expect(page.get_by_role("alert")).to_contain_text("ALREADY_EXISTS")
        tab.shot(f"extension-{attempt}")

    # The phone settings on the page are all a softphone needs: register baresip with them.
    page.get_by_role("link", name=f"Edit extension {EXTENSION}").click()
    tab.heading(f"Extension {EXTENSION}")
    domain = page.locator("dt:text-is('Domain') + dd code").inner_text()
    server = page.locator("dt:text-is('Proxy / server') + dd code").inner_text()
    assert re.fullmatch(r"[0-9a-f-]{36}\.registrar\.voipbin\.test", domain) and server.startswith("127.0.0.1:")
    baresip = Baresip.start(
        tmp_path / "baresip",
        user=EXTENSION,
        password=SIP_PASSWORD,
        domain=domain,
        sip_port=int(server.rsplit(":", 1)[1]),
        microphone=tone(tmp_path / "mic.wav", 600.0, seconds=60),
    )
    try:
        try:
            expect(page.locator('[data-registered="true"]')).to_be_visible(timeout=15_000)
        except AssertionError as failure:
            raise AssertionError(f"baresip did not show as registered; its log ends:\n{baresip.log[-3000:]}") from failure
        tab.shot("extension-registered")
        place_test_call(tab)
        tab.nav("Dashboard")
        expect(page.get_by_role("region", name="Registered extensions")).to_contain_text(EXTENSION)
        expect(page.get_by_role("region", name="Recent events")).to_contain_text("call_hangup")  # from the call
        tab.shot("dashboard-registered")
    finally:
        baresip.stop()
        (tab.artifacts / "signup_to_first_call-baresip.log").write_text(baresip.log)

    page.get_by_role("button", name="Log out").click()
    tab.heading("Log in")
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    tab.shot("logged-out")

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email (username)").fill(EMAIL)
    page.get_by_role("button", name="Send me a link").click()
    tab.heading("Check your email", timeout=15_000)  # the call just ended: its recognisers may still hold the CPU
    tab.shot("password-forgot")


def place_test_call(tab: Walk) -> None:
    page = tab.page
    tab.nav("Calls")
    page.get_by_role("link", name="Place a test call").click()
    tab.heading("Place a test call")
    expect(page.get_by_label("From (your number)")).to_have_value(re.compile(r"^\+899\d+$"))  # the sandbox's number
    page.get_by_label("To (extension)").select_option(EXTENSION)
    # After the default talk row: sleep 1.5 s, then hang up; the raw JSON view follows the rows.
    page.get_by_role("button", name="Add action").click()
    page.get_by_label("Type", exact=True).nth(1).select_option("sleep")
    page.get_by_label("Duration (milliseconds)").fill("1500")
    page.get_by_role("button", name="Add action").click()
    page.get_by_label("Type", exact=True).nth(2).select_option("hangup")
    page.get_by_text("Raw JSON").click()
    raw = page.get_by_label("Actions as JSON")
    expect(raw).to_have_value(re.compile(r'"type": "talk".*"duration": 1500.*"type": "hangup"', re.DOTALL))
    tab.shot("call-editor")

    page.get_by_role("button", name="Place call").click()
    tab.heading("Call")
    page.evaluate("window.sameDocument = true")  # the status below must change without a reload
    status = page.locator("#call-status")
    expect(status).to_have_attribute("data-status", "progressing", timeout=30_000)
    tab.shot("call-progressing")
    expect(status).to_have_attribute("data-status", "hangup", timeout=30_000)
    timeline = page.get_by_role("list", name="Timeline")
    for step in ("created", "ringing", "progressing", "hangup"):
        expect(timeline.locator(f'li[data-step="{step}"]')).to_be_visible()
    assert page.evaluate("window.sameDocument") is True
    tab.shot("call-hangup")


@pytest.mark.parametrize("tab", [{"width": 390, "height": 844}], indirect=True)
def test_phone_sized_screen_folds_the_menu(tab: Walk) -> None:
    page = tab.page
    page.goto("/console/#/login")
    tab.heading("Log in")
    toggle = page.get_by_role("button", name="Menu")
    signup = page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign up")
    expect(signup).to_be_hidden()
    tab.shot("menu-folded")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(signup).to_be_visible()
    tab.shot("menu-open")
    signup.click()
    tab.heading("Create an account")
    expect(signup).to_be_hidden()  # choosing a page folds the menu again


@contextmanager
def scripted_llm(*replies: Scripted) -> Iterator[FakeLlm]:
    """The scripted OpenAI-compatible server, on an event loop of its own beside the sync browser."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-llm", daemon=True)
    thread.start()
    fake = FakeLlm()
    fake.script(*replies)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`")
def test_an_ai_agent_is_made_answers_a_number_and_talks_on_a_test_call(
    tab: Walk, console_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tab.page
    token = httpx.post(f"{console_server}/auth/login", json=ADMIN).json()["token"]
    auth = {"token": token}
    extension = {"name": "ai-phone", "detail": "d", "extension": "2301", "password": "desk-pass-2301"}
    httpx.post(f"{console_server}/v1.0/extensions", params=auth, json=extension).raise_for_status()
    if not httpx.get(f"{console_server}/v1.0/numbers", params=auth).json()["result"]:
        httpx.post(f"{console_server}/v1.0/numbers", params=auth, json={"number": "+8991234567", "type": "virtual"})
    page.goto("/console/#/login")
    page.get_by_label("Email (username)").fill(ADMIN["username"])
    page.get_by_label("Password").fill(ADMIN["password"])
    page.get_by_role("button", name="Log in").click()
    tab.heading("Dashboard")

    with scripted_llm(Scripted(text="Hello, this is Rosa's Bakery.")) as llm:
        monkeypatch.setenv("VOIPBIN_LLM_OLLAMA_URL", llm.url)
        tab.nav("AI agents")
        tab.heading("AI agents")
        page.get_by_label(re.compile(r"^Name")).fill("Bakery line")  # "Name (optional)", as the schema says
        page.get_by_label("Engine model").fill("ollama.llama3.2")
        page.get_by_label("Instructions").fill("You answer the phone for Rosa's Bakery.")
        page.get_by_label("Put the caller through (connect_call)").check()
        page.get_by_role("button", name="Create").click()
        tab.heading("AI agent")
        expect(page.get_by_role("region", name="Bakery line")).to_contain_text("connect_call, stop_service")
        ai_id = page.url.rsplit("/", 1)[1]
        tab.shot("ai-created")

        page.get_by_role("button", name="Answer calls to it").click()
        expect(page.get_by_role("status")).to_contain_text("are now answered by Bakery line")
        number = httpx.get(f"{console_server}/v1.0/numbers", params=auth).json()["result"][0]
        flow = httpx.get(f"{console_server}/v1.0/flows/{number['call_flow_id']}", params=auth).json()
        assert [(a["type"], a["option"]["assistance_id"]) for a in flow["actions"]] == [("ai_talk", ai_id)]

        ext_id = next(e["id"] for e in httpx.get(f"{console_server}/v1.0/extensions", params=auth).json()["result"]
                      if e["extension"] == "2301")
        customer_id = httpx.get(f"{console_server}/v1.0/customer", params=auth).json()["id"]
        config = httpx.get(f"{console_server}/console/config.json").json()
        baresip = Baresip.start(tmp_path / "baresip", user="2301", password="desk-pass-2301",
                                domain=f"{customer_id}.{config['registrar_suffix']}", sip_port=config["sip_port"],
                                microphone=tone(tmp_path / "mic.wav", 600.0, seconds=60))
        try:
            expect(page.get_by_label("Ring extension")).to_contain_text("2301")
            deadline = time.monotonic() + 15
            while not httpx.get(f"{console_server}/v1.0/extensions/{ext_id}", params=auth).json().get("registered"):
                assert time.monotonic() < deadline, f"baresip did not register:\n{baresip.log[-2000:]}"
                time.sleep(0.2)
            page.get_by_label("Ring extension").select_option("2301")
            page.get_by_role("button", name="Ring it").click()
            conversation = page.get_by_role("region", name="Conversations").get_by_role("link").first
            expect(conversation).to_be_visible(timeout=20_000)
            conversation.click()
            tab.heading("AI conversation")
            turns = page.get_by_role("list", name="Conversation")
            expect(turns.locator('li[data-role="assistant"]').first).to_have_text("AI:Hello, this is Rosa's Bakery.", timeout=20_000)
            expect(page.locator("#aicall-status")).to_have_attribute("data-status", "progressing")
            tab.shot("ai-conversation")
            page.get_by_role("button", name="End the conversation").click()
            expect(page.locator("#aicall-status")).to_have_attribute("data-status", "terminated", timeout=10_000)
            tab.shot("ai-conversation-ended")
        finally:
            baresip.stop()
    assert llm.requests and "Rosa's Bakery" in llm.requests[0]["messages"][0]["content"]


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`")
def test_a_conference_is_made_a_phone_rung_into_it_muted_and_kicked(tab: Walk, console_server: str, tmp_path: Path) -> None:
    page = tab.page
    token = httpx.post(f"{console_server}/auth/login", json=ADMIN).json()["token"]
    auth = {"token": token}
    extension = {"name": "conf-phone", "detail": "d", "extension": "2401", "password": "desk-pass-2401"}
    httpx.post(f"{console_server}/v1.0/extensions", params=auth, json=extension).raise_for_status()
    if not httpx.get(f"{console_server}/v1.0/numbers", params=auth).json()["result"]:
        httpx.post(f"{console_server}/v1.0/numbers", params=auth, json={"number": "+8991234568", "type": "virtual"})
    customer_id = httpx.get(f"{console_server}/v1.0/customer", params=auth).json()["id"]
    config = httpx.get(f"{console_server}/console/config.json").json()
    baresip = Baresip.start(tmp_path / "baresip", user="2401", password="desk-pass-2401",
                            domain=f"{customer_id}.{config['registrar_suffix']}", sip_port=config["sip_port"],
                            microphone=tone(tmp_path / "mic.wav", 600.0, seconds=60))
    try:
        page.goto("/console/#/login")
        page.get_by_label("Email (username)").fill(ADMIN["username"])
        page.get_by_label("Password").fill(ADMIN["password"])
        page.get_by_role("button", name="Log in").click()
        tab.heading("Dashboard")
        tab.nav("Conferences")
        tab.heading("Conferences")
        page.get_by_label(re.compile(r"^Name")).fill("Standup")
        page.get_by_role("button", name="Create").click()
        tab.heading("Conference")
        expect(page.locator("#conference-status")).to_have_attribute("data-status", "progressing")
        conference_id = page.url.rsplit("/", 1)[1]
        expect(page.get_by_role("region", name="Standup")).to_contain_text(f"conference:{conference_id}")

        deadline = time.monotonic() + 15
        while not any(e["registered"] for e in httpx.get(f"{console_server}/v1.0/extensions", params=auth).json()["result"]
                      if e["extension"] == "2401"):
            assert time.monotonic() < deadline, f"baresip did not register:\n{baresip.log[-2000:]}"
            time.sleep(0.2)
        page.get_by_label("Ring extension").select_option("2401")
        page.get_by_role("button", name="Ring it").click()
        people = page.get_by_role("region", name="Participants")
        row = people.locator("tr[data-conferencecall]")
        expect(row).to_have_count(1, timeout=20_000)
        expect(row.locator(".participant-state")).to_have_text("in the mix")
        expect(row.locator('td[data-talking="true"]')).to_have_count(1, timeout=10_000)  # the phone's tone
        tab.shot("participant-joined")
        row.get_by_role("button", name=re.compile(r"^Mute ")).click()
        expect(row.locator(".participant-state")).to_have_text("muted")
        tab.shot("participant-muted")
        row.get_by_role("button", name=re.compile(r"^Kick ")).click()
        expect(people).to_contain_text("Nobody is in the conference.", timeout=10_000)
        calls = httpx.get(f"{console_server}/v1.0/conferencecalls", params={**auth, "conference_id": conference_id}).json()
        assert [(c["status"], c["muted"]) for c in calls["result"]] == [("leaved", True)]
    finally:
        baresip.stop()
