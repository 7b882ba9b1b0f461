"""At 80 columns the CLI never wraps or cuts what people copy: ids, links, domains, passwords, commands."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from voipbin.accounts.bootstrap import DemoExtension, SandboxFacts
from voipbin.cli import main
from voipbin.config import Settings
from voipbin.mail.outbox import FileOutbox, compose, read_outbox

CUSTOMER = "c71b09ee-f11e-4ee7-bdd6-69b81d28c3d5"
LINK = "https://127.0.0.1:8443/auth/password-reset?token=" + "ab12" * 16


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "voipbin.cli.main", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "80"}, check=True)
    return done.stdout


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    mail_dir = tmp_path / "data" / "mail"
    body = f"Set the password you will log in with here; the link works once, for 24 hours:\n{LINK}\n\nThe end.\n"
    asyncio.run(FileOutbox(mail_dir).send(compose("VoIPBIN <noreply@voipbin.test>", "quick@example.com",
                                                  "Welcome to VoIPBIN", body)))
    return tmp_path / "data"


def test_mail_lists_whole_ids_and_says_a_prefix_works(outbox: Path) -> None:
    [mail] = read_outbox(outbox / "mail")
    assert len(mail.id) > 50  # longer than a table's share of 80 columns

    lines = cli("mail", "--data-dir", str(outbox)).splitlines()

    assert mail.id in lines
    assert any("quick@example.com" in line and "Welcome to VoIPBIN" in line for line in lines)
    assert "./voipbin mail <id> shows one message (the start of its id will do)." in "\n".join(lines).replace("`", "")


def test_a_mail_shows_its_link_whole_on_its_own_line(outbox: Path) -> None:
    [mail] = read_outbox(outbox / "mail")

    for given in (mail.id, mail.id[:12]):
        assert LINK in cli("mail", given, "--data-dir", str(outbox)).splitlines()


def test_the_banner_keeps_every_value_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(main, "console", Console(file=screen, width=80, color_system=None))
    settings = Settings(data_dir=tmp_path / "a-data-dir-with-a-long-name-to-show-it-is-not-cut" / "data")
    demos = (DemoExtension("1000", "P9UOSQhFqpZp"), DemoExtension("2000", "7g6gASRl57UU"))

    main._banner(settings, SandboxFacts(CUSTOMER, "+89915205820", demos, True))

    lines = screen.getvalue().splitlines()
    whole = [
        f"{CUSTOMER}.registrar.voipbin.test",
        "https://127.0.0.1:8443/console/",
        "https://127.0.0.1:8443/console/#/mailbox",
        f"./voipbin mail --data-dir {settings.data_dir}",
        "password P9UOSQhFqpZp",
        "admin@localhost / admin@localhost",
        str(settings.data_dir.resolve()),
    ]
    for value in whole:
        assert any(line.rstrip().endswith(value) for line in lines), value
    assert not any("…" in line for line in lines)
    # The first call's two commands, each on one line, to paste as they are.
    assert sum(line.startswith("  TOKEN=$(curl -sk https://127.0.0.1:8443/auth/login") for line in lines) == 1
    assert any(line.startswith("  curl -sk -X POST") and line.endswith("\"language\": \"en-US\"}}]}'") for line in lines)
