"""TTS: engines, provider/language routing, cache, streaming, worker lifecycle."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.speech.audio import RATE, process_exists, rms, seconds
from voipbin.speech import (
    EspeakTts,
    PiperTts,
    TtsCache,
    TtsConfigError,
    TtsService,
    WorkerError,
    split_sentences,
)
from voipbin.speech.tts import speech_pieces, trim_leading_silence

SENTENCE = "Thank you for calling, please hold while we connect you."
PARAGRAPH = (
    "Welcome to the support line. All of our agents are busy helping other customers right now. "
    "Your call is important to us, so please stay on the line and we will answer shortly."
)


class CountingEspeak(EspeakTts):
    """espeak-ng that counts real renders, to tell cache hits from synthesis."""

    def __init__(self) -> None:
        super().__init__()
        self.renders = 0

    async def render(self, text: str, voice: str) -> bytes:
        self.renders += 1
        return await super().render(text, voice)


def test_split_sentences() -> None:
    assert split_sentences("Hello there. How are you?  Fine!\nNext line") == [
        "Hello there.",
        "How are you?",
        "Fine!",
        "Next line",
    ]
    assert split_sentences("こんにちは。元気ですか？はい") == ["こんにちは。", "元気ですか？", "はい"]
    assert split_sentences("version 1.5 is out") == ["version 1.5 is out"]
    assert split_sentences("  \n ") == []


def test_a_long_first_sentence_is_rendered_head_first() -> None:
    assert speech_pieces("Your ticket number is 407. An agent will call.") == (
        ["Your ticket number,", "is 407.", "An agent will call."],
        True,
    )
    assert speech_pieces("Hi, how are you? Fine.") == (["Hi,", "how are you?", "Fine."], True)
    assert speech_pieces("Oh no: the line is down.") == (["Oh no,", "the line is down."], True)
    assert speech_pieces("Thanks for calling. Bye.") == (["Thanks for calling.", "Bye."], False)
    # Numbers are spoken longer than they are written.
    assert speech_pieces("Caller 11, hello. Bye.") == (["Caller 11,", "hello.", "Bye."], True)
    assert speech_pieces("Ticket 407 is yours.") == (["Ticket,", "407 is yours."], True)
    assert speech_pieces("20261202 is the day.") == (["20261202,", "is the day."], True)
    assert speech_pieces("") == ([], False)


@pytest.mark.slow
async def test_piper_synthesizes_8khz_speech(piper: PiperTts) -> None:
    began = time.perf_counter()
    pcm = await piper.synthesize(SENTENCE)
    elapsed = time.perf_counter() - began
    # 10 words: ~2.7 s measured; 8 kHz 16-bit means 16 000 bytes per second.
    assert 2.0 < seconds(pcm) < 4.5
    assert len(pcm) % 2 == 0
    assert rms(pcm) > 500
    assert elapsed < 5.0  # includes starting the worker and loading the voice
    # GPL boundary: piper runs only in the worker process.
    assert "piper" not in sys.modules


async def test_espeak_speaks_english_and_other_languages(espeak: EspeakTts) -> None:
    english = await espeak.synthesize(SENTENCE, "en-US")
    german = await espeak.synthesize("Vielen Dank für Ihren Anruf. Bitte warten Sie.", "de-DE")
    korean = await espeak.synthesize("전화해 주셔서 감사합니다.", "ko-KR")
    for pcm in (english, german, korean):
        assert 0.8 < seconds(pcm) < 6.0
        assert rms(pcm) > 300


async def test_espeak_voice_mapping(espeak: EspeakTts) -> None:
    expected = {
        "en-US": "en-us",
        "en-GB": "en-gb",
        "ko-KR": "ko",
        "ja-JP": "ja",
        "de-DE": "de",
        "fr-CA": "fr-fr",
        "pt-BR": "pt-br",
        "zh-CN": "cmn",
        "es_MX": "es-419",
    }
    for language, voice in expected.items():
        assert await espeak.resolve_voice(language) == voice, language
    assert await espeak.resolve_voice("de-DE", gender="female") == "de+f3"
    assert await espeak.resolve_voice("en-US", gender="Male") == "en-us+m3"
    assert await espeak.resolve_voice("en-US", voice="en-GB", gender="female") == "en-gb+f3"
    with pytest.raises(TtsConfigError, match="no offline voice speaks language 'xx-YY'"):
        await espeak.resolve_voice("xx-YY")
    with pytest.raises(TtsConfigError, match="no voice '-x'"):
        await espeak.resolve_voice("en-US", voice="-x")
    with pytest.raises(TtsConfigError, match="gender"):
        await espeak.resolve_voice("en-US", gender="robot")
    female = await espeak.synthesize("Hello.", "en-US", gender="female")
    male = await espeak.synthesize("Hello.", "en-US", gender="male")
    assert female != male


async def test_provider_and_language_pick_the_engine() -> None:
    piper = PiperTts()  # its worker starts only on a request; none is made here
    espeak = EspeakTts()
    service = TtsService(piper=piper, espeak=espeak, environ={})
    assert service.engine_for("", "en-US") is piper
    assert service.engine_for("", "en-GB") is piper
    assert service.engine_for("piper", "en-US") is piper
    assert service.engine_for("", "de-DE") is espeak
    assert service.engine_for("espeak", "en-US") is espeak
    with pytest.raises(TtsConfigError, match="unknown TTS provider 'nope'"):
        service.engine_for("nope")
    with pytest.raises(TtsConfigError, match="speaks English only"):
        await service.synthesize("Hallo.", "de-DE", provider="piper")
    with pytest.raises(TtsConfigError, match="piper has no voice"):
        await service.synthesize("Hello.", voice="en-US-Wavenet-A")
    assert piper.worker.starts == 0


async def test_a_cloud_provider_without_its_key_speaks_with_the_offline_voice() -> None:
    """The quickstart's speaking asks for "elevenlabs" verbatim; a fresh install must still speak."""
    espeak = EspeakTts()
    service = TtsService(espeak=espeak, environ={})

    for provider in ("elevenlabs", "ElevenLabs", "gcp", "aws"):
        assert service.engine_for(provider) is espeak
    assert await service.synthesize("Hello.", provider="elevenlabs")
    keyed = TtsService(environ={"VOIPBIN_GCP_CREDENTIALS": "k"})  # elevenlabs with its key: test_cloud_elevenlabs
    with pytest.raises(TtsConfigError, match="not built into this offline server"):
        await keyed.synthesize("Hello.", provider="GCP")


async def test_cache_returns_identical_bytes_without_resynthesis(tmp_path: Path) -> None:
    espeak = CountingEspeak()
    service = TtsService(espeak=espeak, cache=TtsCache(directory=tmp_path))
    first = await service.synthesize(PARAGRAPH)
    renders = espeak.renders
    assert renders == len(speech_pieces(PARAGRAPH)[0])
    again = await service.synthesize(PARAGRAPH)
    assert again == first
    assert espeak.renders == renders
    assert service.cache.hits == renders

    # A new process (fresh memory cache) finds the sentences on disk, written in the background.
    await service.cache.flush()
    espeak_after_restart = CountingEspeak()
    restarted = TtsService(espeak=espeak_after_restart, cache=TtsCache(directory=tmp_path))
    assert await restarted.synthesize(PARAGRAPH) == first
    assert espeak_after_restart.renders == 0


class SlowEspeak(CountingEspeak):
    """espeak-ng that takes a while, as piper does on a busy box."""

    async def render(self, text: str, voice: str) -> bytes:
        await asyncio.sleep(0.2)
        return await super().render(text, voice)


async def test_a_prefetched_first_sentence_is_rendered_once_and_played_at_once() -> None:
    espeak = SlowEspeak()
    service = TtsService(espeak=espeak, cache=TtsCache())
    service.prefetch(PARAGRAPH)  # the phone is ringing
    await asyncio.sleep(0.05)  # answered while that render is still under way
    chunks = service.stream(PARAGRAPH)
    first = await anext(chunks)
    assert espeak.renders == 1  # the stream took the prefetch's render rather than starting its own
    rest = [pcm async for pcm in chunks]
    assert espeak.renders == len(speech_pieces(PARAGRAPH)[0]) == 1 + len(rest)

    service.prefetch(PARAGRAPH)  # cached now: nothing to do
    await asyncio.sleep(0.3)
    assert espeak.renders == len(speech_pieces(PARAGRAPH)[0])
    began = time.perf_counter()
    assert await anext(service.stream(PARAGRAPH)) == first
    assert time.perf_counter() - began < 0.1  # the slow engine was not asked again

    service.prefetch("Hello.", provider="no-such-engine")  # refused later by stream, not here
    service.prefetch("")


async def test_the_first_sentence_starts_at_its_first_sound(espeak: EspeakTts) -> None:
    raw = await espeak.render("Hello there.", await espeak.resolve_voice())
    lead = next(i for i, sample in enumerate(np.frombuffer(raw, "<i2")) if abs(int(sample)) > 64)
    assert lead > RATE // 100, "espeak-ng starts with silence, or this test shows nothing"
    first = await anext(TtsService(espeak=espeak).stream("Hello there. How are you?"))
    assert first == raw[(lead - RATE // 200) * 2 :]
    assert trim_leading_silence(bytes(320)) == bytes(320)  # silence stays silence


async def test_cache_is_bounded_in_bytes() -> None:
    cache = TtsCache(max_bytes=10)
    cache.put(("e", "v", "a"), b"12345")
    cache.put(("e", "v", "b"), b"12345")
    assert await cache.get(("e", "v", "a")) == b"12345"  # now the most recent
    cache.put(("e", "v", "c"), b"1234")
    assert cache.size <= 10
    assert await cache.get(("e", "v", "b")) is None  # least recently used went
    assert await cache.get(("e", "v", "a")) == b"12345"
    cache.put(("e", "v", "huge"), b"x" * 11)
    assert await cache.get(("e", "v", "huge")) is None


@pytest.mark.slow
async def test_stream_yields_first_sentence_before_the_rest(piper: PiperTts) -> None:
    service = TtsService(piper=piper, espeak=EspeakTts(), cache=TtsCache(max_bytes=0))
    await piper.start()
    began = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[bytes] = []
    async for pcm in service.stream(PARAGRAPH):
        arrivals.append(time.perf_counter() - began)
        chunks.append(pcm)
    total = time.perf_counter() - began
    assert len(chunks) == len(speech_pieces(PARAGRAPH)[0]) == 4
    assert arrivals[0] < total / 2  # the first sentence does not wait for the others
    audio = seconds(b"".join(chunks))
    # How fast is bench/voice.py's business (say → speech on the wire); this only reports it.
    print(f"\npiper stream: first chunk {arrivals[0] * 1000:.0f} ms, all {total * 1000:.0f} ms "
          f"for {audio:.2f} s of audio (RTF {total / audio:.3f})")


@pytest.mark.slow
async def test_piper_worker_survives_errors_cancellation_and_death(piper: PiperTts) -> None:
    service = TtsService(piper=piper, espeak=EspeakTts())
    plain = await service.synthesize("Goodbye.")
    assert await service.synthesize("Goodbye.", gender="female") == plain  # one voice: same, cached
    pid = piper.worker.pid
    assert pid is not None

    # A request the worker rejects is reported without costing the worker.
    with pytest.raises(WorkerError, match="KeyError"):
        await piper.worker.request({"rate": RATE})
    # A caller cancelled mid-request (barge-in) leaves the pipe in step.
    abandoned = asyncio.create_task(piper.synthesize("This sentence is abandoned halfway through."))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    assert await piper.synthesize("Goodbye.") != b""
    assert 0.3 < seconds(await piper.render("Goodbye.", piper.voice)) < 1.5
    assert piper.worker.pid == pid

    os.kill(pid, 9)
    await asyncio.sleep(0.1)
    assert seconds(await piper.synthesize("Still here.")) > 0.3
    assert piper.worker.starts == 2
    assert piper.worker.pid not in (None, pid)

    await piper.close()
    assert not process_exists(pid)
    assert piper.worker.pid is None


async def test_abandoned_stream_leaves_no_task_behind(espeak: EspeakTts) -> None:
    service = TtsService(espeak=espeak)
    chunks = service.stream(PARAGRAPH, "en-US")
    assert len(await anext(chunks)) > RATE  # first sentence, then the caller hangs up
    await chunks.aclose()
    await asyncio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
