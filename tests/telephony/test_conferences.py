"""Conferences with real phones: three baresip phones, each sending its own tone, in one conference.

Two are called by the platform with a flow that joins the conference, the third dials
``conference:<id>`` itself. Each phone must hear the other two and never itself: checked on the
platform's RTP toward each phone (a tap on its endpoint, the frames on the wire, phase by phase)
and on each phone's own recording. Muting one takes it out of the others' audio; kicking one ends
its call while the others go on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Tenant
from tests.peers.baresip import RATE, Baresip, read_wav, tone
from tests.telephony.conftest import until
from tests.telephony.softphones import until_status
from tests.telephony.test_ai_talk import microphone
from tests.telephony.test_quickstart_calls import words
from voipbin.runtime import Platform
from voipbin.store.models import Recording

pytestmark = pytest.mark.slow

TONES = {"3101": 440.0, "3102": 700.0, "3103": 1100.0}
PRESENT = 0.08  # share of a window's energy at a tone's frequency that means it is heard


def share_at(samples: np.ndarray, frequency: float) -> float:
    """How much of the signal's energy lies within 25 Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    total = spectrum[freqs > 100].sum()
    return float(spectrum[np.abs(freqs - frequency) < 25].sum() / total) if total > 0 else 0.0


@dataclass
class Wire:
    """What the platform sent one phone, frame by frame, with the monotonic time of each frame."""

    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def tap(self, pcm: bytes) -> None:
        self.frames.append((time.monotonic(), np.frombuffer(pcm, dtype="<i2").astype(np.float64)))

    def between(self, start: float, end: float) -> np.ndarray:
        chosen = [f for t, f in self.frames if start <= t < end]
        return np.concatenate(chosen) if chosen else np.zeros(160)


@pytest.fixture
async def phones(tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant) -> AsyncIterator[dict[str, Baresip]]:
    started: dict[str, Baresip] = {}
    try:
        for extension, frequency in TONES.items():
            body = {"extension": extension, "password": f"secret-{extension}", "name": f"p{extension}", "detail": "baresip"}
            assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
            started[extension] = Baresip.start(
                tmp_path / extension, user=extension, password=f"secret-{extension}",
                domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port,
                microphone=tone(tmp_path / f"{extension}.wav", frequency, seconds=60),
            )  # fmt: skip
        for extension in TONES:
            await until(lambda e=extension: platform.sip.registrations(alice.customer_id, e), timeout=15)
        yield started
    finally:
        for phone in started.values():
            phone.stop()


async def call_into(client: httpx.AsyncClient, alice: Tenant, extension: str, conference_id: str) -> str:
    source = (await client.get("/v1.0/numbers", params=alice.auth)).json()["result"][0]["number"]
    placed = await client.post("/v1.0/calls", params=alice.auth, json={
        "source": {"type": "tel", "target": source},
        "destinations": [{"type": "extension", "target": extension}],
        "actions": [{"type": "conference_join", "option": {"conference_id": conference_id}}],
    })  # fmt: skip
    assert placed.status_code == 200, placed.text
    return str(placed.json()["groupcalls"][0]["call_ids"][0])


async def participants(client: httpx.AsyncClient, alice: Tenant, conference_id: str) -> list[dict[str, Any]]:
    found = await client.get("/v1.0/conferencecalls", params={**alice.auth, "conference_id": conference_id, "status": "joined"})
    return list(found.json()["result"])


async def joined(client: httpx.AsyncClient, alice: Tenant, conference_id: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while len(found := await participants(client, alice, conference_id)) != count:
            await asyncio.sleep(0.1)
    return found


async def test_three_phones_hear_each_other_not_themselves_mute_and_kick(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, phones: dict[str, Baresip]
) -> None:
    created = await client.post("/v1.0/conferences", params=alice.auth, json={"type": "conference", "name": "standup"})
    assert created.status_code == 200, created.text
    conference_id = created.json()["id"]
    call_ids = {e: await call_into(client, alice, e, conference_id) for e in ("3101", "3102")}
    phones["3103"].command("dial", f"sip:conference%3A{conference_id}@{alice.customer_id}.registrar.voipbin.test")
    in_conference = await joined(client, alice, conference_id, 3)
    by_call = {p["reference_id"]: p for p in in_conference}
    dialled_in = next(c for c in by_call if c not in call_ids.values())
    call_ids["3103"] = dialled_in
    wires = {e: Wire() for e in TONES}
    for extension, call_id in call_ids.items():
        endpoint = platform.calls.live[call_id].endpoint
        assert endpoint is not None
        endpoint.add_tap("out", wires[extension].tap)
    conferencecall = {e: by_call[call_ids[e]]["id"] for e in TONES}
    recording_started = await client.post(f"/v1.0/conferences/{conference_id}/recording_start", params=alice.auth)
    assert recording_started.status_code == 200, recording_started.text

    all_in = time.monotonic()
    await asyncio.sleep(2.5)
    muted = await client.put(f"/v1.0/conferencecalls/{conferencecall['3103']}", params=alice.auth, json={"muted": True})
    assert muted.status_code == 200 and muted.json()["muted"] is True, muted.text
    c_muted = time.monotonic()
    await asyncio.sleep(2.5)
    kicked = await client.delete(f"/v1.0/conferencecalls/{conferencecall['3102']}", params=alice.auth)
    assert kicked.status_code == 200, kicked.text
    await until_status(client, alice, call_ids["3102"], "hangup", timeout=10)  # its flow had nothing after the join
    b_gone = time.monotonic()
    await asyncio.sleep(2.0)
    assert {p["reference_id"] for p in await participants(client, alice, conference_id)} == {call_ids["3101"], call_ids["3103"]}
    deleted = await client.delete(f"/v1.0/conferences/{conference_id}", params=alice.auth)
    assert deleted.status_code == 200 and deleted.json()["status"] == "terminated", deleted.text
    for extension in ("3101", "3103"):
        await until_status(client, alice, call_ids[extension], "hangup", timeout=10)
    ended = time.monotonic()

    def heard(extension: str, start: float, end: float) -> set[str]:
        window = wires[extension].between(start + 0.5, end - 0.2)  # past the change settling
        return {e for e, f in TONES.items() if share_at(window, f) > PRESENT}

    assert heard("3101", all_in, c_muted) == {"3102", "3103"}
    assert heard("3102", all_in, c_muted) == {"3101", "3103"}
    assert heard("3103", all_in, c_muted) == {"3101", "3102"}
    assert heard("3101", c_muted, b_gone) == {"3102"}  # 3103 muted
    assert heard("3103", c_muted, b_gone) == {"3101", "3102"}  # a muted phone still hears
    assert heard("3101", b_gone, ended) == set()  # 3102 gone, 3103 muted
    assert heard("3103", b_gone, ended) == {"3101"}

    # Each phone's own recording: the others' tones, never its own.
    for extension, phone in phones.items():
        await until(lambda p=phone: p.heard() is not None, timeout=15)
        recording = phone.heard()
        assert recording is not None and len(recording) > 3 * RATE
        own = share_at(recording, TONES[extension])
        others = [share_at(recording, f) for e, f in TONES.items() if e != extension]
        assert own < 0.01 and min(others) > PRESENT / 2, (extension, own, others)
    rows = (await client.get("/v1.0/conferencecalls", params={**alice.auth, "conference_id": conference_id})).json()["result"]
    assert sorted(r["status"] for r in rows) == ["leaved"] * 3

    # The recording of the mix ended with the conference, and holds all three phones.
    recorded = (await client.get(f"/v1.0/recordings/{recording_started.json()['recording_id']}", params=alice.auth)).json()
    assert recorded["status"] == "ended" and recorded["reference_id"] == conference_id
    async with platform.store.session() as session:
        row = await session.get(Recording, recorded["id"])
    assert row is not None
    path = platform.files.recording(row)
    assert path is not None
    mix = read_wav(path)
    assert len(mix) > 6 * RATE
    everyone = mix[int(0.3 * RATE) : int(2.3 * RATE)]  # before 3103 was muted
    assert all(share_at(everyone, f) > PRESENT for f in TONES.values()), [share_at(everyone, f) for f in TONES.values()]


async def test_a_connect_conference_ends_when_one_side_leaves_and_runs_its_pre_and_post_flows(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, phones: dict[str, Baresip]
) -> None:
    """pre_flow_id runs on each call before it joins, post_flow_id after it leaves (VoIPBIN never runs it)."""
    flows = {}
    for name, variable in (("pre", "pre_ran"), ("post", "post_ran")):
        actions = [{"type": "variable_set", "option": {"key": variable, "value": "yes"}},
                   {"type": "talk", "option": {"text": f"This is the {name} flow."}}]
        created = await client.post("/v1.0/flows", params=alice.auth, json={"name": name, "actions": actions})
        flows[name] = created.json()["id"]
    conference = await client.post("/v1.0/conferences", params=alice.auth, json={
        "type": "connect", "name": "pair", "pre_flow_id": flows["pre"], "post_flow_id": flows["post"],
    })  # fmt: skip
    conference_id = conference.json()["id"]
    call_ids = {e: await call_into(client, alice, e, conference_id) for e in ("3101", "3102")}
    in_conference = await joined(client, alice, conference_id, 2)
    refused = await call_into(client, alice, "3103", conference_id)  # a connect conference holds two
    await until_status(client, alice, refused, "hangup", timeout=15)
    assert len(await participants(client, alice, conference_id)) == 2
    kicked = next(p for p in in_conference if p["reference_id"] == call_ids["3101"])
    assert (await client.delete(f"/v1.0/conferencecalls/{kicked['id']}", params=alice.auth)).status_code == 200
    for call_id in call_ids.values():  # the other side was ejected: both flows went on, and ended
        await until_status(client, alice, call_id, "hangup", timeout=15)
    found = (await client.get(f"/v1.0/conferences/{conference_id}", params=alice.auth)).json()
    assert found["status"] == "terminated" and found["conferencecall_ids"] == []
    activeflows = (await client.get("/v1.0/activeflows", params=alice.auth)).json()["result"]
    ran = sorted((a["flow_id"], a["reference_id"]) for a in activeflows if a["flow_id"] in flows.values())
    assert ran == sorted((flows[name], call_ids[e]) for name in ("pre", "post") for e in ("3101", "3102"))
    for activeflow in activeflows:
        if activeflow["flow_id"] in flows.values():
            assert [a["type"] for a in activeflow["executed_actions"]] == ["variable_set", "talk"]


async def test_each_participant_is_transcribed_apart_so_transcripts_say_who_spoke(
    tmp_path: Path, client: httpx.AsyncClient, platform: Platform, alice: Tenant
) -> None:
    """Two phones talk over each other; each transcript names the participant who said it."""
    said = {"3101": "The quarterly report is ready for review.", "3102": "Please send the invoice tomorrow morning."}
    started: dict[str, Baresip] = {}
    try:
        for extension, sentence in said.items():
            body = {"extension": extension, "password": f"secret-{extension}", "name": f"p{extension}", "detail": "baresip"}
            assert (await client.post("/v1.0/extensions", params=alice.auth, json=body)).status_code == 200
            mic = await microphone(platform, tmp_path / f"{extension}.wav", (3.0 if extension == "3101" else 3.4, sentence))
            started[extension] = Baresip.start(
                tmp_path / extension, user=extension, password=f"secret-{extension}",
                domain=f"{alice.customer_id}.registrar.voipbin.test", sip_port=platform.sip.stack.port, microphone=mic,
            )  # fmt: skip
        for extension in said:
            await until(lambda e=extension: platform.sip.registrations(alice.customer_id, e), timeout=15)
        conference_id = (await client.post("/v1.0/conferences", params=alice.auth, json={"name": "review"})).json()["id"]
        transcribing = await client.post(f"/v1.0/conferences/{conference_id}/transcribe_start", params=alice.auth,
                                         json={"language": "en-US"})
        assert transcribing.status_code == 200, transcribing.text
        transcribe_id = transcribing.json()["transcribe_id"]
        call_ids = {e: await call_into(client, alice, e, conference_id) for e in said}
        in_conference = {p["reference_id"]: p["id"] for p in await joined(client, alice, conference_id, 2)}

        async def transcripts() -> list[dict[str, Any]]:
            found = await client.get("/v1.0/transcripts", params={**alice.auth, "transcribe_id": transcribe_id})
            return list(found.json()["result"])

        async with asyncio.timeout(30):
            while len({t["conferencecall_id"] for t in await transcripts()}) < 2:
                await asyncio.sleep(0.2)
        await client.delete(f"/v1.0/conferences/{conference_id}", params=alice.auth)
    finally:
        for phone in started.values():
            phone.stop()

    by_speaker: dict[str, set[str]] = {}
    for transcript in await transcripts():
        by_speaker.setdefault(transcript["conferencecall_id"], set()).update(words(transcript["message"]))
    first, second = (by_speaker.get(in_conference[call_ids[e]], set()) for e in ("3101", "3102"))
    assert {"quarterly", "report", "review"} <= first and not {"invoice", "tomorrow"} & first, by_speaker
    assert {"invoice", "tomorrow", "morning"} <= second and not {"quarterly", "report"} & second, by_speaker
    done = (await client.get(f"/v1.0/transcribes/{transcribe_id}", params=alice.auth)).json()
    assert done["status"] == "done" and done["reference_id"] == conference_id
