"""Outgoing email: through SMTP when configured, otherwise kept as ``.eml`` files in the data dir.

The file outbox is the embedded default, so a newcomer finishes signup without a mail server:
``voipbin mail`` (and the console's mailbox) read the messages back.

Every message names its *audience*: who has proven they own the address it is for (an agent, by
its login; a pending signup, by its ``temp_token``). The sandbox mailbox shows a reader only the
mail of their own audience, never "mail to an address", since anyone can type any address.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

AUDIENCE_HEADER = "X-Voipbin-Audience"


def agent_audience(agent_id: str) -> str:
    """Mail for one agent: readable by that agent's login (and its customer's access keys)."""
    return f"agent:{agent_id}"


def signup_audience(temp_token: str) -> str:
    """Mail of one pending signup: readable with its temp_token (only its hash is written down)."""
    return "signup:" + hashlib.sha256(temp_token.encode()).hexdigest()[:32]


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


_sending: set[asyncio.Task[None]] = set()


def send_later(mailer: Mailer, message: EmailMessage) -> None:
    """Send without making the caller wait, so SMTP latency (or its absence) shows in no response."""
    task = asyncio.create_task(_send_logged(mailer, message))
    _sending.add(task)  # keep a reference so the task is not collected mid-send
    task.add_done_callback(_sending.discard)


async def _send_logged(mailer: Mailer, message: EmailMessage) -> None:
    try:
        await mailer.send(message)
    except Exception:
        log.exception("sending mail to %s failed", message["To"])


def compose(sender: str, to: str, subject: str, text: str, audience: Iterable[str] = ()) -> EmailMessage:
    """A plain-text message; ``audience`` names who may read it in the sandbox mailbox (none: the operator)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="voipbin.local")
    if readers := ",".join(audience):
        message[AUDIENCE_HEADER] = readers
    message.set_content(text)
    return message


class FileOutbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        msgid = str(message["Message-ID"]).strip("<>").split("@")[0]
        path = self.directory / f"{stamp}-{msgid}.eml"
        path.write_bytes(message.as_bytes(policy=policy.SMTP))
        log.info("mail to %s kept in %s: %s", message["To"], path, message["Subject"])


class SmtpMailer:
    """``smtp://user:pass@host:port`` (STARTTLS when offered) or ``smtps://`` (TLS from the start)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"--smtp-url must look like smtp://user:password@host:port, got {url!r}")
        self._tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._tls else 25)
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        del message[AUDIENCE_HEADER]  # the mailbox's business, not the recipient's
        context = ssl.create_default_context()
        smtp = (
            smtplib.SMTP_SSL(self._host, self._port, timeout=10, context=context)
            if self._tls
            else smtplib.SMTP(self._host, self._port, timeout=10)
        )
        with smtp:
            if not self._tls and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
            if self._user:
                smtp.login(self._user, self._password)
            smtp.send_message(message)


@dataclass(frozen=True)
class StoredMail:
    id: str
    path: Path
    sender: str
    to: str
    subject: str
    date: datetime | None
    body: str
    audience: frozenset[str] = frozenset()


def read_outbox(directory: Path, limit: int = 200) -> list[StoredMail]:
    """The newest ``limit`` messages of a file outbox, newest first (names start with a timestamp)."""
    if not directory.is_dir():
        return []
    newest = sorted(directory.glob("*.eml"), key=lambda path: path.name, reverse=True)[:limit]
    return [_read(path) for path in newest]


def _read(path: Path) -> StoredMail:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    body_part = message.get_body(preferencelist=("plain", "html"))
    date_header = message["Date"]
    return StoredMail(
        id=path.stem,
        path=path,
        sender=str(message["From"] or ""),
        to=str(message["To"] or ""),
        subject=str(message["Subject"] or ""),
        date=parsedate_to_datetime(date_header) if date_header else None,
        body=body_part.get_content() if body_part is not None else "",
        audience=frozenset(filter(None, str(message[AUDIENCE_HEADER] or "").split(","))),
    )


def make_mailer(smtp_url: str, outbox_dir: Path) -> Mailer:
    return SmtpMailer(smtp_url) if smtp_url else FileOutbox(outbox_dir)
