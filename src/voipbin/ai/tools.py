"""The tools an AI may call, as the model sees them, and the checks on what it passes.

Descriptions are written for small local models as much as for large ones: each says when to
call the tool in the caller's terms ("the caller asks to be put through") and what to pass, with
flat, few arguments, because a 1-3 B model calls a tool it recognises and skips one it has to
reason about. What a tool does lives in the session; here it is only described and checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from voipbin.ai.config import TOOLS

MAX_DESTINATIONS: Final = 5
MAX_VARIABLES: Final = 50
MAX_NAME_CHARS: Final = 256
MAX_VALUE_CHARS: Final = 16_384
DESTINATION_TYPES: Final = ("extension", "tel", "sip", "agent")

VOICE_RULES: Final = (
    "You are a voice assistant on a live phone call. Everything you write is spoken aloud to the caller: "
    "answer in one or two short sentences of plain spoken words, with no lists, markdown, emoji or URLs. "
    "When the caller asks for something one of your tools does, call the tool at once instead of "
    "describing it."
)

_DEFINITIONS: Final[Mapping[str, tuple[str, Mapping[str, Any], tuple[str, ...]]]] = {
    "connect_call": (
        (
            "Put the caller through to a person or number. Call it when the caller asks to be transferred, "
            "connected, put through, or to speak to someone. Say one short sentence first, such as 'Putting you "
            "through now.'"
        ),
        {
            "destination": {
                "type": "string",
                "description": "Who to connect to: an extension such as 2001, or a phone number such as +15551234567.",
            },
        },
        ("destination",),
    ),
    "stop_service": (
        (
            "End your part of the call and hand the caller back to the rest of the call flow. Call it when the "
            "caller is done or says goodbye."
        ),
        {},
        (),
    ),
    "stop_flow": (
        "End the whole call. Call it only when the caller asks to hang up or end the call.",
        {},
        (),
    ),
    "set_variables": (
        (
            "Remember facts from the conversation for the rest of the call flow, such as the caller's name or "
            "order number."
        ),
        {
            "variables": {
                "type": "object",
                "description": "Names and values to store, e.g. {\"customer.name\": \"Ada\"}.",
                "additionalProperties": {"type": "string"},
            },
        },
        ("variables",),
    ),
    "get_variables": (
        "Read the call's variables: who is calling, the number called, and what earlier steps stored.",
        {},
        (),
    ),
    "get_aicall_messages": (
        "Read this conversation's earlier messages, e.g. to repeat something said before.",
        {},
        (),
    ),
    "stop_media": (
        "Stop the audio now playing to the caller.",
        {},
        (),
    ),
}


class ToolArgumentError(ValueError):
    """Arguments a tool cannot act on; the message goes back to the model, which may retry."""


def offered(tool_names: Iterable[str]) -> list[str]:
    """The tools an AI's ``tool_names`` give it, in the platform's order (``all``: every one)."""
    names = set(tool_names)
    return [name for name in TOOLS if "all" in names or name in names]


def definitions(names: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI-style function definitions of ``names``."""
    out = []
    for name in names:
        description, properties, required = _DEFINITIONS[name]
        parameters = {"type": "object", "properties": dict(properties), "required": list(required)}
        out.append({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
    return out


def system_prompt(init_prompt: str) -> str:
    """The platform's rules for a spoken conversation, then the customer's own prompt."""
    return f"{VOICE_RULES}\n\n{init_prompt.strip()}" if init_prompt.strip() else VOICE_RULES


def destination(arguments: Mapping[str, Any]) -> dict[str, str]:
    """connect_call's one destination as a connect address: digits and '+' a number, a bare short
    number an extension; VoIPBIN's ``destinations`` list is accepted too (its first entry)."""
    listed = arguments.get("destinations")
    if isinstance(listed, list) and listed and isinstance(listed[0], Mapping):
        kind, target = str(listed[0].get("type", "")), str(listed[0].get("target", ""))
        if kind not in DESTINATION_TYPES:
            raise ToolArgumentError(f"destination type must be one of {', '.join(DESTINATION_TYPES)}")
    else:
        raw = arguments.get("destination")
        if not isinstance(raw, str) or not raw.strip():
            raise ToolArgumentError("destination is required: an extension such as 2001 or a number such as +15551234567")
        target = raw.strip().removeprefix("extension").strip()
        kind = "tel" if target.startswith("+") else "extension"
    target = target.strip()
    if not target or len(target) > MAX_NAME_CHARS or any(ch.isspace() or ord(ch) < 32 for ch in target):
        raise ToolArgumentError("destination must be one extension or number, without spaces")
    return {"type": kind, "target": target}


def variables(arguments: Mapping[str, Any]) -> dict[str, str]:
    """set_variables' names and values, bounded (the flow bounds them again as a whole)."""
    raw = arguments.get("variables")
    if not isinstance(raw, Mapping) or not raw:
        raise ToolArgumentError("variables must be an object of names and string values")
    if len(raw) > MAX_VARIABLES:
        raise ToolArgumentError(f"at most {MAX_VARIABLES} variables at once")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or name.startswith("voipbin."):
            raise ToolArgumentError(f"variable name {str(name)[:64]!r} must be 1-{MAX_NAME_CHARS} characters, not voipbin.*")
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_VALUE_CHARS:
            raise ToolArgumentError(f"variable {name[:64]!r} is longer than {MAX_VALUE_CHARS} characters")
        out[name] = text
    return out
