"""pocketsphinx, the fallback recogniser: accuracy through G.711, engine choice and fallback."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from tests.speech.audio import RATE, process_exists, word_error_rate
from voipbin.config import from_env
from voipbin.media.g711 import decode_ulaw, encode_ulaw
from voipbin.speech import PiperTts, SpeechService, SttError, SttWorkerPool, Transcriber, Utterance

SENTENCES = [
    "please connect me to the billing department",
    "i would like to check the status of my order",
    "thank you for calling goodbye",
    "i need help with my bill",
    "what are your opening hours",
]


def phone_line(pcm: bytes) -> bytes:
    return decode_ulaw(encode_ulaw(pcm))


async def transcribe(pool: SttWorkerPool, pcm: bytes) -> str:
    """What the recogniser makes of ``pcm``, fed as a call feeds it: 20 ms frames, then silence."""
    transcriber = Transcriber(pool, max_pending=10_000)  # fed faster than real time: shed nothing
    audio = pcm + bytes(RATE * 2)
    for offset in range(0, len(audio), 320):
        transcriber.feed(audio[offset : offset + 320])
    transcriber.close()
    return " ".join([u.text async for u in transcriber.results() if isinstance(u, Utterance) and u.final])


def test_the_engine_comes_from_the_settings() -> None:
    settings = from_env({"VOIPBIN_STT_ENGINE": "pocketsphinx"})
    assert SpeechService(stt_engine=settings.stt_engine).stt.engine == "pocketsphinx"
    assert from_env({}).stt_engine == "whisper"
    with pytest.raises(SttError, match="unknown STT engine 'kaldi'"):
        SpeechService(stt_engine="kaldi")
    assert from_env({}).stt_workers == 0  # one per core
    workers = from_env({"VOIPBIN_STT_WORKERS": "3"}).stt_workers
    assert SpeechService(stt_processes=workers).stt.processes == 3
    assert SpeechService().stt.processes == len(os.sched_getaffinity(0))
    with pytest.raises(SttError, match="at least one worker"):
        SpeechService(stt_processes=-1)


@pytest.mark.slow
async def test_pocketsphinx_understands_piper_through_g711(piper: PiperTts) -> None:
    pool = SttWorkerPool(engine="pocketsphinx")
    try:
        await asyncio.gather(piper.start(), pool.start())
        errors = []
        began = time.perf_counter()
        for sentence in SENTENCES:
            heard = await transcribe(pool, phone_line(await piper.synthesize(sentence)))
            errors.append(word_error_rate(sentence, heard))
            print(f"\npocketsphinx: {sentence!r} -> {heard!r}")
        elapsed = time.perf_counter() - began
    finally:
        await pool.stop()
    mean = sum(errors) / len(errors)
    print(f"pocketsphinx WER {mean:.2f} over {len(SENTENCES)} sentences, {elapsed:.1f} s with synthesis")
    # Far weaker than Whisper (WER ~0.25 measured on these); it is the fallback, not the default.
    assert mean < 0.4, errors
    assert max(errors) < 0.8, errors


@pytest.mark.slow
async def test_whisper_that_cannot_load_falls_back_to_pocketsphinx(
    piper: PiperTts, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = SttWorkerPool(1, model=tmp_path / "no-such-model")
    assert pool.engine == "whisper"
    try:
        with caplog.at_level(logging.WARNING, logger="voipbin.speech.stt"):
            heard = await transcribe(pool, phone_line(await piper.synthesize("one moment please")))
        assert pool.engine == "pocketsphinx"
        assert "using pocketsphinx instead" in caplog.text
        assert "moment" in heard.lower(), heard
        [pid] = pool.pids
    finally:
        await pool.stop()
    assert not process_exists(pid)


async def test_stopping_during_a_failing_start_leaves_no_worker(tmp_path: Path) -> None:
    pool = SttWorkerPool(1, model=tmp_path / "no-such-model")
    pool.warm()
    while not pool.pids:  # the Whisper worker is spawned and loading
        await asyncio.sleep(0.01)
    [pid] = pool.pids
    await pool.stop()
    await asyncio.sleep(0.5)  # time enough for a wrongly started fallback to show up
    assert not process_exists(pid)
    assert pool.engine == "whisper" and pool.pids == []
