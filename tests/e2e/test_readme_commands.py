"""The README's commands and the start banner's, run exactly as printed: by bash, from the clone's
root, with the PATH a fresh shell has (no virtual environment on it), on the default loopback ports.

The clone is a copy of the launcher, bootstrap script and pyproject.toml around a prepared .venv (the
interpreter running these tests), so ``./voipbin`` runs for real without installing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
# Debian's PATH for a new login shell: the project's .venv/bin is not on it.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOGIN = """curl -k -X POST https://localhost:8443/auth/login -H 'Content-Type: application/json' \\
  -d '{"username": "admin@localhost", "password": "admin@localhost"}'"""
DEFAULT_PORTS = ((socket.SOCK_STREAM, 8443), (socket.SOCK_STREAM, 8080), (socket.SOCK_DGRAM, 5060), (socket.SOCK_STREAM, 5060))


def _free(kind: socket.SocketKind, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    if not all(_free(kind, port) for kind, port in DEFAULT_PORTS):
        pytest.skip("the README's commands need the default ports 8443, 8080 and 5060 free")
    root = tmp_path / "voipbin-server"
    (root / "scripts").mkdir(parents=True)
    for name in ("voipbin", "pyproject.toml", "scripts/bootstrap.sh"):
        shutil.copy2(ROOT / name, root / name)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    entry = bin_dir / "voipbin"
    entry.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT / "src"}" exec "{sys.executable}" -m voipbin.cli.main "$@"\n')
    entry.chmod(0o755)
    # The stamp bootstrap.sh leaves once it has installed for this pyproject.toml and itself.
    stamp = hashlib.sha256((root / "pyproject.toml").read_bytes() + (root / "scripts/bootstrap.sh").read_bytes())
    (root / ".venv" / ".installed").write_text(stamp.hexdigest()[:16] + "\n")
    return root


def fresh_env(clone: Path) -> dict[str, str]:
    return {"PATH": FRESH_PATH, "HOME": str(clone.parent), "LANG": "C.UTF-8", "COLUMNS": "80"}


def sh(clone: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=clone, env=fresh_env(clone), capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def started(clone: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    out, err = clone.parent / "start.out", clone.parent / "start.err"
    process = subprocess.Popen(["bash", "-c", "./voipbin start"], cwd=clone, env=fresh_env(clone),
                               stdout=out.open("wb"), stderr=err.open("wb"), start_new_session=True)
    try:
        deadline = time.monotonic() + 45
        while "place your first call" not in out.read_text():
            assert process.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "no banner within 45 s:\n" + err.read_text()[-3000:]
            time.sleep(0.1)
        yield process, out, err
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_readme_names_the_command_as_it_runs() -> None:
    bare = re.findall(r"(?<![\w./-])voipbin (?:start|mail|doctor|init)\b", README)
    assert bare == [], "the README says `voipbin ...`, which no fresh shell finds: write ./voipbin"
    for command in ("./voipbin start", "./voipbin doctor", "./voipbin mail", "./voipbin mail <id>", LOGIN):
        assert command in README, command
    assert subprocess.run(["bash", "-c", "command -v voipbin"], env={"PATH": FRESH_PATH}, check=False).returncode == 1


def test_the_readme_and_banner_commands_work_as_printed(clone: Path, started: tuple[subprocess.Popen[bytes], Path, Path]) -> None:
    process, out, err = started
    banner = out.read_text()

    login = sh(clone, LOGIN)
    assert login.returncode == 0 and json.loads(login.stdout)["token"], login.stdout + login.stderr

    doctor = sh(clone, "./voipbin doctor")
    assert "command not found" not in doctor.stderr and re.search(r"problem\(s\)|All good", doctor.stdout), doctor

    # The banner's mailbox command, then a mail to read with the README's two.
    mailbox = re.search(r"^  or +(\./voipbin mail --data-dir \S+)$", banner, re.MULTILINE)
    assert mailbox, banner
    assert subprocess.run(["bash", "-c", mailbox.group(1)], cwd=clone, env=fresh_env(clone), check=False).returncode == 0
    httpx.post("http://127.0.0.1:8080/auth/signup", json={"email": "readme@example.com"}, timeout=10)
    deadline = time.monotonic() + 10
    while "readme@example.com" not in (listing := sh(clone, "./voipbin mail")).stdout:
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)
    mail_id = listing.stdout.splitlines()[0]
    shown = sh(clone, f"./voipbin mail {mail_id}")
    assert shown.returncode == 0 and re.search(r"^https://\S+/auth/email-verify\?token=[0-9a-f]{64}$", shown.stdout, re.MULTILINE), shown

    first_call = banner.split("place your first call:\n", 1)[1].splitlines()[:2]
    placed = subprocess.run(["bash", "-c", "\n".join(first_call)], cwd=clone, env=fresh_env(clone),
                            capture_output=True, text=True, timeout=30, check=False)
    assert "groupcalls" in json.loads(placed.stdout or "{}"), placed.stdout + placed.stderr

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=20) == 0
    log = err.read_text()
    # Two listeners, one process: uvicorn's process-wide lines once each.
    assert log.count("Started server process") == 1 and log.count("Shutting down") == 1, log
