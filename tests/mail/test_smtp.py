"""With --smtp-url, the signup code goes out over SMTP (to a tiny SMTP server on loopback)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from voipbin.api.app import create_app
from voipbin.runtime import Platform


class SmtpSink:
    """Just enough SMTP (RFC 5321) to accept messages; keeps what it received."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                writer.write(b"250-sink\r\n250 AUTH PLAIN\r\n")
            elif command.startswith("AUTH PLAIN"):
                self.logins.append(line.decode().split()[-1])
                writer.write(b"235 ok\r\n")
            elif command == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                body = bytearray()
                while (chunk := await reader.readline()) != b".\r\n":
                    body += chunk
                self.messages.append(bytes(body))
                writer.write(b"250 queued\r\n")
            elif command == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    sink.server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = sink.server.sockets[0].getsockname()[1]
    yield sink, port
    sink.server.close()
    await sink.server.wait_closed()


async def test_signup_code_is_sent_over_smtp(tmp_path: Path, sink: tuple[SmtpSink, int]) -> None:
    smtp, port = sink
    platform = Platform(make_settings(tmp_path / "data", smtp_url=f"smtp://mailer:s3cret@127.0.0.1:{port}"))
    await platform.start()
    try:
        transport = httpx.ASGITransport(app=create_app(platform))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            started = await client.post("/auth/signup", json={"email": "smtp@example.com"})
            for _ in range(100):
                if smtp.messages:
                    break
                await asyncio.sleep(0.05)
            mail = message_from_bytes(smtp.messages[0])
            code = re.search(r"\b(\d{6})\b", str(mail["Subject"]))
            assert code is not None and mail["To"] == "smtp@example.com"
            done = await client.post(
                "/auth/complete-signup", json={"temp_token": started.json()["temp_token"], "code": code.group(1)}
            )
            assert done.status_code == 200
    finally:
        await platform.stop()
    assert smtp.logins  # it authenticated with the URL's credentials
    assert not (tmp_path / "data" / "mail").exists()  # nothing went to the file outbox
