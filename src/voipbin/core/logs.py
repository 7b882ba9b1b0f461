"""No secret in a log line: JWTs, access keys, credentials in URLs and query strings are masked in
every record, whichever library logs it (uvicorn's access and WebSocket lines, httpx's request
lines, our own).

The masking happens where records are made (a log record factory), so it holds for every logger
and every handler, including those added later, such as a test's capture.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# A JWT: three base64url parts, the first two starting with '{"' encoded ("eyJ").
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
_ACCESSKEY = re.compile(r"\bvb_[A-Za-z0-9]{32}\b")
# ?token=, &accesskey=, password=... in URLs and form-like text.
_QUERY = re.compile(r"((?:^|[?&;\s\"'])(?:token|accesskey|access_key|password|passwd|secret|auth_pass)=)[^&\s\"';]+", re.IGNORECASE)
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)
MASK = "***"

_installed = False


def redact(text: str) -> str:
    """``text`` with every credential it holds masked."""
    text = _JWT.sub(MASK, text)
    text = _ACCESSKEY.sub(MASK, text)
    text = _QUERY.sub(rf"\1{MASK}", text)
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


def _redact_arg(value: Any) -> Any:
    """A string, or an object logged by its text (a URL, a request line), with credentials masked."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float | bool):
        return value  # may be formatted with %d and the like
    text = str(value)
    masked = redact(text)
    return value if masked == text else masked


def install() -> None:
    """Mask credentials in every log record from now on (idempotent)."""
    global _installed
    if _installed:
        return
    make_record = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        # A message with arguments is a format of our own making: its arguments carry the data
        # (and formatters such as uvicorn's read them one by one, so they stay arguments).
        if isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        return record

    logging.setLogRecordFactory(masked_record)
    _installed = True
