"""Credentials in request URLs never reach the access log."""

from __future__ import annotations

import logging

from voipbin.server import RedactCredentials


def test_tokens_and_accesskeys_are_masked_in_access_lines() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1.0/calls?page_size=5&token=eyJhbGciOi.x.y&accesskey=vb_secret", "1.1", 200),
                               None)

    RedactCredentials().filter(record)

    line = record.getMessage()
    assert "eyJhbGciOi" not in line and "vb_secret" not in line
    assert "/v1.0/calls?page_size=5&token=***&accesskey=***" in line
