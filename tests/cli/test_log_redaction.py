"""No log line holds a credential, whichever library writes it."""

from __future__ import annotations

import logging

import pytest

from voipbin.core import logs

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwiZXhwIjoxfQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
KEY = "vb_" + "A1b2C3d4" * 4


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", f"/v1.0/calls?page_size=5&token={JWT}&accesskey={KEY}", "1.1", 200)),
        ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:5", f"/v1.0/ws?token={JWT}")),
        ("HTTP Request: %s %s", ("POST", f"https://example.com/hook?secret=s3cr3t-value&token={JWT}")),
        (f"Authorization: Bearer {JWT}", ()),
        ("smtp %s", ("smtps://user:p4ssw0rd-value@mail.example.com:465",)),
        ("key %(key)s", ({"key": KEY},)),
    ],
)
def test_credentials_are_masked_in_every_record(msg: str, args: tuple[object, ...] | dict[str, object]) -> None:
    logs.install()

    record = logging.getLogger("any.library").makeRecord("any.library", logging.INFO, "", 0, msg, args, None)

    line = record.getMessage()
    for secret in (JWT, KEY, "s3cr3t-value", "p4ssw0rd-value"):
        assert secret not in line, line
    assert "***" in line


def test_installing_twice_masks_once() -> None:
    logs.install()
    logs.install()

    record = logging.getLogger("x").makeRecord("x", logging.INFO, "", 0, "%s", (f"/ws?token={JWT}",), None)

    assert record.getMessage() == "/ws?token=***"
