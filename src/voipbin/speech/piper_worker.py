"""Piper TTS worker process: ``python -m voipbin.speech.piper_worker MODEL``.

piper-tts is GPL-3.0-or-later, so it is imported only here, in a child process
that the platform talks to over pipes (see ``worker.py``); no platform module
imports it. Each request is ``{"text": str, "rate": int}`` and the reply payload
is 16-bit mono PCM at that rate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, serve


def _voice(model: str) -> Any:
    """The voice on a one-thread ONNX session.

    Two threads render a short piece 30 % faster on an idle box but 2-3x slower when another
    process holds a core (as the platform and the recognisers do while a call starts): the
    second thread's share then waits on that core. Measured on 2 cores: "Caller 11," 55 ms with
    one thread either way, 37 ms with two on an idle box, 110-118 ms with two beside a busy core.
    """
    # Imported here so that a broken install is reported by serve() as the worker's load error.
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config)


def _load(model: str) -> Handler:
    voice = _voice(model)

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
