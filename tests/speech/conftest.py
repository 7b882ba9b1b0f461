"""Fixtures for the speech tests: real engines and workers, each stopped after its test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voipbin.speech import EspeakTts, PiperTts, SttWorkerPool


@pytest.fixture
async def piper() -> AsyncIterator[PiperTts]:
    engine = PiperTts()
    yield engine
    await engine.close()


@pytest.fixture
def espeak() -> EspeakTts:
    return EspeakTts()


@pytest.fixture
async def stt_pool() -> AsyncIterator[SttWorkerPool]:
    pool = SttWorkerPool()
    yield pool
    await pool.stop()
