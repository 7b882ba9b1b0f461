"""AI summaries: what of a transcript the model reads, and a summary by the shipped local model."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_aisummaries import LINES, create, summary_when, transcribe
from tests.conftest import Tenant
from voipbin.ai.summaries import HEAD_CHARS, MAX_TRANSCRIPT_CHARS, summary_messages, transcript_text
from voipbin.runtime import Platform


def test_each_line_names_its_speaker_and_silence_is_left_out() -> None:
    assert transcript_text([("in", " Hello? ", ""), ("out", "", ""), ("out", "Hi, Rosa's Bakery.", "")]) == (
        "Caller: Hello?\nAgent: Hi, Rosa's Bakery."
    )


def test_a_conferences_speakers_are_numbered_as_they_first_speak() -> None:
    lines = [("in", "Morning.", "b"), ("in", "Hi.", "a"), ("in", "Shall we start?", "b")]
    assert transcript_text(lines) == "Participant 1: Morning.\nParticipant 2: Hi.\nParticipant 1: Shall we start?"


def test_a_long_transcript_keeps_its_start_and_its_end_within_the_bound() -> None:
    lines = [("in", f"line {n} " + "x" * 80, "") for n in range(500)]
    text = transcript_text(lines)
    assert len(text) < MAX_TRANSCRIPT_CHARS + 100
    assert text.startswith("Caller: line 0 ") and text.endswith("line 499 " + "x" * 80)
    assert text.count("characters of the call left out") == 1
    assert text.index("left out") > HEAD_CHARS


def test_the_question_follows_the_transcript_and_names_a_language_other_than_english() -> None:
    english = summary_messages("en-US", "Caller: Hello?")[-1]["content"]
    german = summary_messages("de-DE", "Caller: Hallo?")[-1]["content"]
    assert english.index("Caller: Hello?") < english.index("what did the caller want")
    assert "de-DE" in german and "language" not in english


@pytest.mark.slow
async def test_the_shipped_model_summarises_a_call_with_no_setting(
    client: httpx.AsyncClient, platform: Platform, alice: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VOIPBIN_SUMMARY_ENGINE_MODEL", raising=False)
    created = await create(client, alice, reference_type="transcribe", reference_id=await transcribe(platform, alice, lines=LINES))
    done = await summary_when(client, alice, created.json()["id"], "done", timeout=120)
    content = done["content"].lower()
    assert content, done
    assert any(word in content for word in ("open", "seven", "7", "tomorrow", "morning", "time")), content
