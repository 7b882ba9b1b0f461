"""Identifiers and secrets."""

from __future__ import annotations

import secrets
import uuid


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def token_hex(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)
