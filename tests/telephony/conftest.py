"""A baresip softphone registered to an extension of alice's, for telephony tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.peers.baresip import Baresip, tone
from voipbin.runtime import Platform

PHONE_TONE_HZ = 600.0


async def until(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def phone(tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> AsyncIterator[tuple[Baresip, dict[str, str]]]:
    body = {"name": "quickstart-phone", "detail": "baresip", "extension": "quickstart1", "password": "secret-pass-1"}
    extension = (await client.post("/v1.0/extensions", params=alice.auth, json=body)).json()
    microphone = tone(tmp_path / "mic.wav", PHONE_TONE_HZ, seconds=60)
    baresip = Baresip.start(
        tmp_path / "baresip",
        user="quickstart1",
        password="secret-pass-1",
        domain=f"{alice.customer_id}.registrar.voipbin.test",
        sip_port=platform.sip.stack.port,
        microphone=microphone,
    )
    try:
        await until(lambda: platform.sip.registrations(alice.customer_id, "quickstart1"), timeout=15)
        yield baresip, extension
    finally:
        baresip.stop()


