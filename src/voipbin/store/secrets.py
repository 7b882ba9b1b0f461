"""Secrets every node of an install shares, kept in the database so that a JWT issued by one API
node is accepted by the others, and a SIP nonce one node issued verifies on another."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from voipbin.store.db import Store
from voipbin.store.models import PlatformSecret


async def shared_secret(store: Store, name: str, legacy_file: Path) -> bytes:
    """The install's secret ``name``; the first node to ask creates it (from ``legacy_file``, where
    a single-node install kept it before, so tokens issued then stay valid)."""
    async with store.session() as session:
        row = await session.get(PlatformSecret, name)
    if row is not None:
        return bytes.fromhex(row.value)
    value = legacy_file.read_text().strip() if legacy_file.exists() else secrets.token_hex(32)
    try:
        async with store.transaction() as tx:
            tx.session.add(PlatformSecret(name=name, value=value, tm_create=tx.clock.now()))
    except IntegrityError:  # another node created it first: use theirs
        async with store.session() as session:
            row = await session.get(PlatformSecret, name)
        assert row is not None
        return bytes.fromhex(row.value)
    return bytes.fromhex(value)
