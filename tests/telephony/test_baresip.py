"""A real softphone: baresip registers to an extension made through the API, is called, answers,
hears what we play and sends what we hear; both sides can hang up."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Tenant
from tests.peers import tshark
from tests.peers.baresip import Baresip, dominant_frequency, tone
from tests.telephony.conftest import PHONE_TONE_HZ, until
from voipbin.runtime import Platform
from voipbin.sip.message import Address
from voipbin.sip.transactions import TransactionKind, TransactionState
from voipbin.sip.ua import CallState, SipCall

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]

PLATFORM_TONE_HZ = 1000.0


async def call_phone(platform: Platform, tenant: Tenant) -> SipCall:
    caller = Address("sip:+15551234567@voipbin.test", "VoIPBIN")
    call = await platform.sip.call_extension(tenant.customer_id, "quickstart1", caller)
    await asyncio.wait_for(call.answered.wait(), 10)
    return call


async def test_registration_shows_on_the_extension(
    phone: tuple[Baresip, dict[str, str]], client: httpx.AsyncClient, alice: Tenant
) -> None:
    _, extension = phone
    fetched = (await client.get(f"/v1.0/extensions/{extension['id']}", params=alice.auth)).json()
    assert fetched["registered"] is True
    [contact] = fetched["contacts"]
    assert contact["uri"].startswith("sip:quickstart1") and "@127.0.0.1:" in contact["uri"]
    assert contact["expires"] > 0 and contact["source"].startswith("udp:127.0.0.1:")


async def test_call_with_audio_both_ways_and_our_bye(
    phone: tuple[Baresip, dict[str, str]], platform: Platform, alice: Tenant
) -> None:
    baresip, _ = phone
    call = await call_phone(platform, alice)
    heard: list[bytes] = []
    call.endpoint.add_tap("in", heard.append)
    pcm = tone(baresip.workdir / "prompt.wav", PLATFORM_TONE_HZ, seconds=2.0).read_bytes()[44:]
    playback = call.endpoint.play(pcm)
    await asyncio.wait_for(playback.done, 10)
    await call.hangup()

    assert call.state is CallState.HANGUP and call.hangup_by == "local" and call.hangup_reason == "normal"
    received = np.frombuffer(b"".join(heard), dtype="<i2").astype(np.float64)
    assert len(received) >= 8000 * 1.5
    assert abs(dominant_frequency(received[4000:]) - PHONE_TONE_HZ) < 15
    stats = call.endpoint.stats()
    assert stats.lost == 0 and stats.packets_received >= 75 and stats.jitter_ms < 5

    await until(lambda: baresip.heard() is not None, timeout=10)
    phone_heard = baresip.heard()
    assert phone_heard is not None
    loud = phone_heard[np.abs(phone_heard) > 1000]
    assert len(loud) > 8000  # about a second or more of our tone reached the phone
    assert abs(dominant_frequency(phone_heard[: 8000 * 2]) - PLATFORM_TONE_HZ) < 15


async def test_the_phone_hangs_up(phone: tuple[Baresip, dict[str, str]], platform: Platform, alice: Tenant) -> None:
    baresip, _ = phone
    call = await call_phone(platform, alice)
    await asyncio.sleep(0.5)
    baresip.command("hangup")
    await asyncio.wait_for(call.ended.wait(), 10)
    assert call.hangup_by == "remote" and call.hangup_reason == "normal"
    # Only finished non-INVITE server transactions (REGISTER, BYE) remain, absorbing retransmissions
    # until timer J; no INVITE or client transaction is left behind.
    lingering = platform.sip.stack.transactions.transactions.values()
    assert {(t.kind, t.state) for t in lingering} <= {(TransactionKind.SERVER_NON_INVITE, TransactionState.COMPLETED)}


@pytest.mark.skipif(not tshark.available(), reason="tshark is installed by `make test`")
async def test_rtp_on_the_wire_has_no_loss_and_low_jitter(
    phone: tuple[Baresip, dict[str, str]], platform: Platform, alice: Tenant, tmp_path: Path
) -> None:
    engine = platform.sip.media
    capture_filter = f"udp and portrange {engine.ports.first}-{engine.ports.last}"
    async with tshark.Capture(tmp_path / "call.pcap", capture_filter) as capture:
        call = await call_phone(platform, alice)
        pcm = tone(tmp_path / "prompt.wav", PLATFORM_TONE_HZ, seconds=3.0).read_bytes()[44:]
        await asyncio.wait_for(call.endpoint.play(pcm).done, 10)
        await call.hangup()
    streams = await capture.rtp_streams()

    ours = f"127.0.0.1:{call.endpoint.local_port}"
    received = [s for s in streams if s.destination == ours]
    phone = {s.source for s in received}
    # Until the phone's first packet arrives we send to its SDP address; then to where it sends from.
    sent = [s for s in streams if s.source == ours and s.destination in phone]
    before_latching = [s for s in streams if s.source == ours and s.destination not in phone]
    assert sent and received, streams
    assert sum(s.packets for s in before_latching) < 25, before_latching
    for stream in sent + received:
        assert stream.packets >= 100 and stream.lost == 0, stream
    # Pacing from absolute deadlines keeps jitter low; the bound leaves room for a busy CI box.
    assert max(s.mean_jitter_ms for s in sent) < 5.0, sent
    assert max(s.max_jitter_ms for s in sent) < 20.0, sent
