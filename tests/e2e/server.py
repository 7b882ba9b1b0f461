"""``voipbin start`` as a real subprocess on loopback ports, the way a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.live import free_port

SANDBOX_HOST = "api.voipbin.test"


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    api_port: int
    http_port: int
    sip_port: int
    log_path: Path

    @property
    def sandbox_url(self) -> str:
        """The quickstart's sandbox URL, on our port (curl resolves the name with --resolve)."""
        return f"https://{SANDBOX_HOST}:{self.api_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def curl(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Run curl as the quickstart does (with -k for the sandbox's self-signed certificate)."""
        command = [
            "curl", "-sk", "--max-time", "20", "--resolve", f"{SANDBOX_HOST}:{self.api_port}:127.0.0.1",
            "--request", method, f"{self.sandbox_url}{path}", "--write-out", "\n%{http_code}",
        ]
        if body is not None:
            command += ["--header", "Content-Type: application/json", "--data-raw", json.dumps(body)]
        out = subprocess.run(command, capture_output=True, check=True, text=True, timeout=30).stdout
        text, _, status = out.rpartition("\n")
        return int(status), json.loads(text) if text else None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "voipbin.cli.main", *args, "--data-dir", str(self.data_dir)],
            check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode)


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> RunningServer:
    api_port, http_port, sip_port = free_port(), free_port(), free_port()
    log_path = data_dir.parent / f"server-{api_port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "voipbin.cli.main", "start", "--data-dir", str(data_dir), "--host", "127.0.0.1",
        "--api-port", str(api_port), "--http-port", str(http_port), "--sip-port", str(sip_port), *extra,
    ]
    process = subprocess.Popen(command, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = RunningServer(process, data_dir, api_port, http_port, sip_port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"voipbin start exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.http_url}/ping", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("voipbin start did not answer within 60 s")
