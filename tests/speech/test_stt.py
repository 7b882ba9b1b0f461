"""STT: VAD endpointing, the Whisper round trip through G.711, and worker lifecycle."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import numpy as np
import pytest

from tests.speech.audio import RATE, process_exists, word_error_rate
from voipbin.media.g711 import decode_ulaw, encode_ulaw
from voipbin.speech import (
    EspeakTts,
    PiperTts,
    SpeechService,
    SttError,
    SttWorkerPool,
    Transcriber,
    Transcription,
    TtsError,
    Utterance,
)

FRAME = 320  # 20 ms of 8 kHz 16-bit PCM
REFERENCE = "hello this is a test of the transcription feature"


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[offset : offset + FRAME].ljust(FRAME, b"\0") for offset in range(0, len(pcm), FRAME)]


class FakePool:
    """Stands in for the Whisper workers: records what it is asked to decode."""

    def __init__(self, text: str = "words") -> None:
        self.text = text
        self.segments: list[bytes] = []

    async def transcribe(self, pcm8k: bytes, language: str = "en") -> Transcription:
        self.segments.append(pcm8k)
        return Transcription(self.text, 1.0)


async def collect(transcriber: Transcriber) -> list[Utterance]:
    transcriber.close()
    return [utterance async for utterance in transcriber.results()]


@pytest.fixture
async def speech() -> bytes:
    """Two seconds or so of (robotic) speech: enough for the VAD, no model needed."""
    return await EspeakTts().synthesize("Please connect me to the billing department.")


async def test_silence_yields_nothing_and_starts_no_worker(stt_pool: SttWorkerPool) -> None:
    transcriber = Transcriber(stt_pool)
    quiet_line = decode_ulaw(encode_ulaw(silence(3.0)))
    for frame in frames(quiet_line):
        transcriber.feed(frame)
    assert await collect(transcriber) == []
    assert stt_pool.pids == []


async def test_utterances_are_cut_at_pauses(speech: bytes) -> None:
    pool = FakePool(" Hello there. ")
    transcriber = Transcriber(cast(SttWorkerPool, pool))
    audio = silence(0.5) + speech + silence(1.0) + speech + silence(1.0)
    for chunk in (audio[i : i + 500] for i in range(0, len(audio), 500)):  # odd sizes are re-framed
        transcriber.feed(chunk)
    utterances = await collect(transcriber)
    assert [u.text for u in utterances] == ["Hello there.", "Hello there."]
    speech_s = len(speech) / 2 / RATE
    first, second = utterances
    assert first.start_time == pytest.approx(0.5, abs=0.1)
    assert first.end_time == pytest.approx(0.5 + speech_s, abs=0.25)
    assert second.start_time == pytest.approx(1.5 + speech_s, abs=0.1)
    # Each decode gets 300 ms of lead-in and the 500 ms hangover around the speech.
    decoded_s = len(pool.segments[0]) / 2 / RATE
    assert decoded_s == pytest.approx(first.end_time - first.start_time + 0.8, abs=0.1)


async def test_long_speech_is_cut_at_the_maximum_length(speech: bytes) -> None:
    pool = FakePool()
    transcriber = Transcriber(cast(SttWorkerPool, pool), max_utterance_s=1.0)
    for frame in frames(speech * 3):
        transcriber.feed(frame)
    await collect(transcriber)
    assert len(pool.segments) >= 3
    assert all(len(segment) <= RATE * 2 * 1.0 for segment in pool.segments)


async def test_clicks_and_captions_are_dropped(speech: bytes) -> None:
    pool = FakePool("[BLANK_AUDIO]")
    transcriber = Transcriber(cast(SttWorkerPool, pool))
    for frame in frames(silence(0.5) + speech + silence(1.0)):
        transcriber.feed(frame)
    click = np.random.default_rng(1).integers(-20000, 20000, 480, dtype=np.int16).tobytes()  # 60 ms
    for frame in frames(click + silence(1.0)):
        transcriber.feed(frame)
    assert await collect(transcriber) == []
    assert len(pool.segments) == 1  # the click never reached the decoder


async def test_only_english_is_recognised() -> None:
    with pytest.raises(SttError, match="English only"):
        Transcriber(cast(SttWorkerPool, FakePool()), language="ko-KR")


@pytest.mark.slow
async def test_round_trip_through_g711(piper: PiperTts, stt_pool: SttWorkerPool) -> None:
    await asyncio.gather(piper.start(), stt_pool.start())
    prompt = decode_ulaw(encode_ulaw(await piper.synthesize(REFERENCE)))
    transcriber = Transcriber(stt_pool)
    results: list[tuple[float, Utterance]] = []

    async def listen() -> None:
        async for utterance in transcriber.results():
            results.append((time.perf_counter(), utterance))

    listener = asyncio.create_task(listen())
    fed_at: list[float] = []
    began = time.perf_counter()
    for index, frame in enumerate(frames(prompt + silence(1.0))):
        # Real-time pacing, as the media loop would feed it.
        await asyncio.sleep(max(0.0, began + index * 0.02 - time.perf_counter()))
        transcriber.feed(frame)
        fed_at.append(time.perf_counter())
    await transcriber.aclose()
    await listener

    assert len(results) == 1, results
    arrived, utterance = results[0]
    last_voiced = fed_at[round(utterance.end_time / 0.02) - 1]
    latency = arrived - last_voiced
    assert word_error_rate(REFERENCE, utterance.text) <= 0.2, utterance
    assert utterance.start_time < 0.2, utterance
    assert utterance.end_time == pytest.approx(len(prompt) / 2 / RATE, abs=0.3), utterance
    # 0.5 s hangover + decode: ~0.9 s measured on an idle 2-core box; CI may be busier.
    assert latency < 4.0, (latency, utterance)
    decoded_s = utterance.end_time - utterance.start_time + 0.8  # with lead-in and hangover
    print(
        f"\nSTT: {utterance.text!r} decode {utterance.decode_ms:.0f} ms for {decoded_s:.2f} s, "
        f"end of speech to text {latency * 1000:.0f} ms"
    )


@pytest.mark.slow
async def test_speech_service_starts_lazily_and_stops_every_worker() -> None:
    service = SpeechService()
    await service.start()
    assert service.tts.piper is not None
    assert service.tts.piper.worker.pid is None

    pcm = await service.tts.synthesize("One moment please.")
    transcriber = service.transcriber()
    for frame in frames(decode_ulaw(encode_ulaw(pcm)) + silence(1.0)):
        transcriber.feed(frame)
    utterances = await collect(transcriber)
    assert "moment" in utterances[0].text.lower()

    pids = [service.tts.piper.worker.pid, *service.stt.pids]
    assert len(pids) == 2 and all(pid is not None and process_exists(pid) for pid in pids)
    await service.stop()
    assert all(not process_exists(pid) for pid in pids if pid is not None)
    with pytest.raises(TtsError, match="stopped"):
        await service.tts.synthesize("Are you there?")
