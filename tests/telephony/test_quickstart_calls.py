"""The quickstart's "Make your first call": the seed request rings a registered baresip, which
answers and hears the greeting (checked by transcribing what it recorded)."""

from __future__ import annotations

import asyncio
import re
import shutil

import httpx
import numpy as np
import pytest

from tests.conftest import Tenant
from tests.peers.baresip import Baresip
from tests.telephony.conftest import until
from voipbin.runtime import Platform
from voipbin.speech.stt import Utterance

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip-core is installed by `make test`"),
]

GREETING = "Hello. This is a VoIPBIN test call. Thank you, bye."


def first_call_request(source: str) -> dict[str, object]:
    """The seed's request body, verbatim but for the source number."""
    return {
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target_name": "quickstart-phone"}],
        "actions": [{"type": "talk", "option": {"text": GREETING, "language": "en-US"}}],
    }


async def transcribe(platform: Platform, pcm: np.ndarray) -> str:
    """Our own recogniser over 8 kHz audio, fed in 20 ms frames as a call would feed it."""
    # Fed faster than real time, every utterance is "behind" at once: let none be shed.
    transcriber = platform.speech.transcriber(language="en-US", max_pending=10_000)
    data = np.concatenate([pcm, np.zeros(8000)]).astype("<i2").tobytes()
    for offset in range(0, len(data), 320):
        transcriber.feed(data[offset : offset + 320])
    transcriber.close()
    return " ".join([u.text async for u in transcriber.results() if isinstance(u, Utterance) and u.final])


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower().replace("voipbin", "voip bin"))


async def test_seed_first_call_rings_the_phone_which_hears_the_greeting(
    phone: tuple[Baresip, dict[str, str]], client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    baresip, _ = phone
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]

    response = await client.post("/v1.0/calls", params=alice.auth, json=first_call_request(source))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["calls"] == []
    [group] = body["groupcalls"]
    assert group["ring_method"] == "ring_all" and group["answer_method"] == "hangup_others"
    assert group["call_count"] == 1 and len(group["call_ids"]) == 1
    call_url = f"/v1.0/calls/{group['call_ids'][0]}"

    async def status() -> str:
        return str((await client.get(call_url, params=alice.auth)).json()["status"])

    statuses: list[str] = []
    for _ in range(600):
        current = await status()
        if not statuses or statuses[-1] != current:
            statuses.append(current)
        if current == "hangup":
            break
        await asyncio.sleep(0.05)
    call = (await client.get(call_url, params=alice.auth)).json()
    assert call["status"] == "hangup" and call["hangup_reason"] == "normal", call
    assert "progressing" in statuses and call["tm_progressing"] and call["tm_hangup"]

    await until(lambda: baresip.heard() is not None, timeout=15)
    heard = baresip.heard()
    assert heard is not None
    text = await transcribe(platform, heard)
    # "VoIPBIN" itself is not a word either engine knows; the rest must come through.
    expected = set(words(GREETING)) - {"voip", "bin", "a"}
    assert len(expected & set(words(text))) >= 0.75 * len(expected), text
    assert {"hello", "thank", "bye"} <= set(words(text)), text
