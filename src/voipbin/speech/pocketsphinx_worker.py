"""pocketsphinx STT worker process: ``python -m voipbin.speech.pocketsphinx_worker``.

The fallback recogniser, with the same protocol as ``whisper_worker``: each request
carries 8 kHz 16-bit mono PCM of one utterance; the reply header has ``text`` and
``decode_ms``. It uses the US English model that ships with pocketsphinx, which is
a 16 kHz model, so telephone audio is resampled here first.
"""

from __future__ import annotations

import time

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, serve

RATE = 8000
SPHINX_RATE = 16000


def _load() -> Handler:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SPHINX_RATE, loglevel="ERROR")

    def transcribe(header: Header, payload: bytes) -> tuple[Header, bytes]:
        began = time.perf_counter()
        if not payload:  # the decoder cannot take an empty buffer
            return {"text": "", "decode_ms": 0.0}, b""
        audio = np.frombuffer(payload, dtype="<i2").astype(np.float32)
        audio = soxr.resample(audio, int(header.get("rate", RATE)), SPHINX_RATE)
        decoder.start_utt()
        decoder.process_raw(np.clip(audio, -32768, 32767).astype("<i2").tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        text = hypothesis.hypstr if hypothesis is not None else ""
        return {"text": text, "decode_ms": (time.perf_counter() - began) * 1000.0}, b""

    return transcribe


if __name__ == "__main__":
    serve(_load)
