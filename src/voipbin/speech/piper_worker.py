"""Piper TTS worker process: ``python -m voipbin.speech.piper_worker MODEL``.

piper-tts is GPL-3.0-or-later, so it is imported only here, in a child process
that the platform talks to over pipes (see ``worker.py``); no platform module
imports it. Each request is ``{"text": str, "rate": int}`` and the reply payload
is 16-bit mono PCM at that rate.
"""

from __future__ import annotations

import sys

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, serve


def _load(model: str) -> Handler:
    from piper import PiperVoice

    voice = PiperVoice.load(model)

    def synthesize(header: Header, _payload: bytes) -> tuple[Header, bytes]:
        rate = int(header["rate"])
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(str(header["text"]))]
        if not chunks:
            return {"rate": rate}, b""
        audio = soxr.resample(np.concatenate(chunks).astype(np.float32), voice.config.sample_rate, rate)
        pcm = np.clip(audio * 32767.0, -32768, 32767).astype("<i2")
        return {"rate": rate}, pcm.tobytes()

    # The first synthesis pays for lazy initialisation; pay it before reporting ready.
    synthesize({"text": "Hello.", "rate": 8000}, b"")
    return synthesize


if __name__ == "__main__":
    serve(lambda: _load(sys.argv[1]))
