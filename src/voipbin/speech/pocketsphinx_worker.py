"""pocketsphinx STT worker process: ``python -m voipbin.speech.pocketsphinx_worker``.

The fallback recogniser, with the same protocol as ``whisper_worker``: each request
carries a batch of utterances, 8 kHz 16-bit mono PCM each; the reply header has
``texts`` (one per utterance, decoded in turn) and ``decode_ms``. It uses the US English model that ships with pocketsphinx, which is
a 16 kHz model, so telephone audio is resampled here first.
"""

from __future__ import annotations

import time

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, batch_pcm, serve

RATE = 8000
SPHINX_RATE = 16000


def _load() -> Handler:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SPHINX_RATE, loglevel="ERROR")

    def decode(pcm: bytes, rate: int) -> str:
        if not pcm:  # the decoder cannot take an empty buffer
            return ""
        audio = soxr.resample(np.frombuffer(pcm, dtype="<i2").astype(np.float32), rate, SPHINX_RATE)
        decoder.start_utt()
        decoder.process_raw(np.clip(audio, -32768, 32767).astype("<i2").tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    def transcribe(header: Header, payload: bytes) -> tuple[Header, bytes]:
        began = time.perf_counter()
        rate = int(header.get("rate", RATE))
        texts = [decode(pcm, rate) for pcm in batch_pcm(header, payload)]
        return {"texts": texts, "decode_ms": (time.perf_counter() - began) * 1000.0}, b""

    return transcribe


if __name__ == "__main__":
    serve(_load)
