"""Linphone (Debian ``linphone-cli``, the softphone the quickstart names) as a real peer, over UDP
and over TCP only: it registers as the seed says, takes the seed's first call and its real-time
call, hears the greetings and a ``say``, is transcribed, and hangs up from its side and ours."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant
from tests.peers.linphone import Linphone
from tests.telephony import softphones
from voipbin.runtime import Platform

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("linphonec") is None, reason="linphone-cli is installed by `make test`"),
]


@pytest.fixture(params=["udp", "tcp"])
async def phone(
    request: pytest.FixtureRequest, tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> AsyncIterator[tuple[Linphone, dict[str, Any], str]]:
    transport = request.param
    async with softphones.registered(Linphone.start, transport, tmp_path, client, platform, alice) as (linphone, extension):
        assert isinstance(linphone, Linphone)
        [binding] = platform.sip.registrations(alice.customer_id, "quickstart1")
        assert binding.user_agent.startswith("Linphonec/"), binding
        yield linphone, extension, transport


async def test_seed_first_call_is_heard_and_the_api_hangs_up(
    phone: tuple[Linphone, dict[str, Any], str], client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    linphone, extension, transport = phone
    await softphones.first_call_then_hangup_from_the_api(linphone, extension, transport, client, platform, alice)
    assert linphone.said(r"Call \d+ with .* ended"), linphone.lines


async def test_realtime_call_is_transcribed_hears_say_and_the_phone_hangs_up(
    phone: tuple[Linphone, dict[str, Any], str], client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    linphone, _, _ = phone
    await softphones.realtime_call_then_hangup_from_the_phone(linphone, client, platform, alice)
    # Over TCP only, its BYE went over TCP: it has no UDP listening point to send one from.
    assert "No listening point matching" not in linphone.log
