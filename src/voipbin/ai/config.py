"""What an AI's configuration may say: VoIPBIN's field values, checked against what this server runs.

VoIPBIN lists twenty tool names and twenty-one TTS types; an AI that names one this server cannot
honour is refused with the name and the alternatives, rather than accepted and silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

ENGINE_TARGETS: Final = (
    "local", "ollama", "openai", "grok", "groq", "openrouter", "gemini", "mistral", "deepseek", "together",
)  # fmt: skip
"""``engine_model`` targets: each speaks the OpenAI chat protocol (``local`` is a GGUF model this
server runs itself, ``local.smollm2`` by default: see ``voipbin.ai.local``)."""

_MODEL_NAME: Final = re.compile(r"[A-Za-z0-9._:/-]{1,128}")

TOOLS: Final = (
    "connect_call",
    "get_aicall_messages",
    "get_variables",
    "set_variables",
    "stop_flow",
    "stop_media",
    "stop_service",
)
"""The tools an AI may be given here; ``all`` stands for every one."""

_VOIPBIN_ONLY_TOOLS: Final = frozenset({
    "create_call", "search_knowledge", "send_email", "send_message", "get_correlation", "get_resource",
    "describe_action", "case_create", "get_contact_interactions", "get_conversation_content",
    "get_related_cases", "get_case_notes",
})  # fmt: skip

TTS_TYPES: Final = frozenset({
    "", "async", "aws", "azure", "cartesia", "deepgram", "elevenlabs", "fish", "google", "groq", "hume",
    "inworld", "lmnt", "minimax", "neuphonic", "nvidia-riva", "openai", "piper", "playht", "rime", "sarvam",
    "xtts", "espeak",
})  # fmt: skip
"""VoIPBIN's, plus espeak; one without an engine or key here speaks with the local voice, as speakings do."""

STT_TYPES: Final = frozenset({"", "deepgram", "cartesia", "elevenlabs"})
"""VoIPBIN's; deepgram is used when its key is set, the others and "" use the local recogniser."""


class AiConfigError(ValueError):
    """An AI field this server cannot honour; the message names it and what it may be."""


def checked_engine_model(text: str) -> str:
    """VoIPBIN's ``<target>.<model>`` (split at the first dot: ``openai.gpt-5.2``), checked."""
    target, _, model = text.strip().partition(".")
    if target not in ENGINE_TARGETS:
        raise AiConfigError(
            f"engine_model {text!r} must be <target>.<model>, e.g. openai.gpt-5-mini or ollama.llama3.2; "
            f"targets are {', '.join(ENGINE_TARGETS)}"
        )
    if not _MODEL_NAME.fullmatch(model):
        raise AiConfigError(f"engine_model {text!r} needs a model name after {target}. (letters, digits, . _ : / -)")
    return f"{target}.{model}"


def checked_tool_names(names: Iterable[str]) -> list[str]:
    """The tool names, in order and without repeats; raises AiConfigError for an unknown one."""
    result: list[str] = []
    for name in names:
        if name in _VOIPBIN_ONLY_TOOLS:
            raise AiConfigError(f"tool {name!r} is not available on this server; it offers {_offered()}")
        if name != "all" and name not in TOOLS:
            raise AiConfigError(f"there is no tool {name!r}; tools are {_offered()}")
        if name not in result:
            result.append(name)
    return result


def checked_speech_types(tts_type: str, stt_type: str) -> None:
    if tts_type not in TTS_TYPES:
        raise AiConfigError(f"tts_type {tts_type!r} is not a TTS type; use one of {', '.join(sorted(TTS_TYPES - {''}))}")
    if stt_type not in STT_TYPES:
        raise AiConfigError(f"stt_type {stt_type!r} is not an STT type; use one of {', '.join(sorted(STT_TYPES - {''}))}")


def _offered() -> str:
    return ", ".join(("all", *TOOLS))
