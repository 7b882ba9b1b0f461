"""Offline speech: text-to-speech for prompts and speech-to-text for transcripts.

Models run in worker processes (``worker.py``); nothing here imports piper.
"""

from __future__ import annotations

from voipbin.speech.service import SpeechService
from voipbin.speech.stt import SttError, SttWorkerPool, Transcriber, Transcription, Utterance
from voipbin.speech.tts import (
    EspeakTts,
    PiperTts,
    TtsCache,
    TtsConfigError,
    TtsEngine,
    TtsError,
    TtsService,
    split_sentences,
)
from voipbin.speech.worker import SpeechError, WorkerError

__all__ = [
    "EspeakTts",
    "PiperTts",
    "SpeechError",
    "SpeechService",
    "SttError",
    "SttWorkerPool",
    "Transcriber",
    "Transcription",
    "TtsCache",
    "TtsConfigError",
    "TtsEngine",
    "TtsError",
    "TtsService",
    "Utterance",
    "WorkerError",
    "split_sentences",
]
