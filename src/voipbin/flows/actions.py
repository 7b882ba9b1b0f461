"""Flow actions: the ``{id, next_id, type, option}`` model and the validation of a list of them.

A flow is checked once, when it is stored (``POST /flows``, or the inline ``actions`` of
``POST /calls``), so that a running call never meets a malformed action: every option has
the type VoIPBIN's Go structs would unmarshal it into, and every jump lands on an action of
the same flow. Ids missing from the request are generated here and then kept with the
flow, which is what lets ``goto``/``branch`` and the activeflow's history refer to them.

Unknown option keys are kept but never read, as VoIPBIN does (its option is a free map).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from voipbin.core.ids import new_id

__all__ = [
    "EMPTY_ACTION",
    "FINISH_ACTION",
    "NIL_ID",
    "OPTION_SCHEMAS",
    "SUPPORTED_TYPES",
    "Action",
    "FlowError",
    "OptionField",
    "parse_actions",
]

NIL_ID: Final = "00000000-0000-0000-0000-000000000000"
"""What VoIPBIN shows for an unset id, e.g. ``next_id`` of an action that just falls through."""

DTMF_KEYS: Final = "0123456789ABCD#*"


class FlowError(ValueError):
    """An action list that cannot run; ``message`` names the action and is fit for a 400 body."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Action:
    """One step of a flow. ``option`` holds what the request gave, defaults are applied on read."""

    id: str
    type: str
    option: Mapping[str, Any] = field(default_factory=dict)
    next_id: str = NIL_ID

    def value(self, name: str) -> Any:
        """The option ``name``, or the default VoIPBIN applies when it is absent."""
        return self.option.get(name, OPTION_SCHEMAS[self.type][name].default)

    def to_dict(self) -> dict[str, Any]:
        """VoIPBIN's JSON shape: ``type`` and ``option`` are left out when empty (Go ``omitempty``)."""
        out: dict[str, Any] = {"id": self.id, "next_id": self.next_id}
        if self.type:
            out["type"] = self.type
        if self.option:
            out["option"] = copy.deepcopy(dict(self.option))
        return out


EMPTY_ACTION: Final = Action(id=NIL_ID, type="")
"""An activeflow's current action before it starts (VoIPBIN's ``ActionEmpty``)."""

FINISH_ACTION: Final = Action(id="00000000-0000-0000-0000-000000000002", type="")
"""An activeflow's current action once it ran past its last action (VoIPBIN's ``ActionFinish``)."""


# --- option schemas ---------------------------------------------------------

Kind = Literal["str", "int", "bool", "number", "strs", "str_map", "address", "addresses"]

_ADDRESS_FIELDS: Final = ("type", "target", "target_name", "name", "detail")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_address(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(value.get(k, ""), str) for k in _ADDRESS_FIELDS)


_KINDS: Final[Mapping[Kind, tuple[Callable[[object], bool], str]]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "number": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "str_map": (
        lambda v: isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()),
        "an object of strings",
    ),
    "address": (_is_address, "an address object"),
    "addresses": (lambda v: isinstance(v, list) and all(_is_address(x) for x in v), "a list of address objects"),
}


@dataclass(frozen=True)
class OptionField:
    """The type and limits of one option; ``jump`` marks values that are action ids of the flow."""

    kind: Kind
    default: Any
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    dtmf: bool = False
    jump: bool = False

    def problem(self, value: object) -> str | None:
        """Why ``value`` is unacceptable, or None."""
        accepts, noun = _KINDS[self.kind]
        if not accepts(value):
            return f"must be {noun}"
        if self.required and (value in ("", []) or (self.jump and _is_unset_id(value))):
            return "is required"
        if self.choices and value not in self.choices:
            return "must be one of " + ", ".join(repr(c) for c in self.choices)
        if isinstance(value, int | float) and not isinstance(value, bool) and not self._in_range(value):
            return self._range_text()
        if isinstance(value, str) and self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters"
        if isinstance(value, list | Mapping) and self.max_items is not None and len(value) > self.max_items:
            return f"may hold at most {self.max_items} entries"
        if self.max_length is not None and isinstance(value, list | Mapping):
            items = value.values() if isinstance(value, Mapping) else value
            if any(isinstance(item, str) and len(item) > self.max_length for item in items):
                return f"entries must be at most {self.max_length} characters"
        if isinstance(value, str) and self.dtmf and not set(value) <= set(DTMF_KEYS):
            return "may only contain the DTMF keys 0-9, A-D, # and *"
        return None

    def _in_range(self, value: float) -> bool:
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def _range_text(self) -> str:
        if self.maximum is None:
            return f"must be >= {self.minimum}"
        return f"must be between {self.minimum} and {self.maximum}"


_NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})


# Bounds on options: a flow is customer input, and each value ends up in a timer, a buffer, a
# header or a loop (flows.engine bounds what substitution and loops do at run time).
MAX_DURATION_MS: Final = 24 * 3600 * 1000
MAX_DURATION_S: Final = 24 * 3600
MAX_TALK_CHARS: Final = 5000
"""As the quickstart's ``/speakings/{id}/say``."""
MAX_NAME_CHARS: Final = 256
MAX_VALUE_CHARS: Final = 16_384
MAX_URL_CHARS: Final = 2048
MAX_NUMBER: Final = 10**15


def _text(default: str = "", **limits: Any) -> OptionField:
    return OptionField("str", default, **{"max_length": MAX_NAME_CHARS, **limits})


def _count(default: int = 0, **limits: Any) -> OptionField:
    return OptionField("int", default, minimum=limits.pop("minimum", 0), **limits)


def _milliseconds(default: int = 0, **limits: Any) -> OptionField:
    return _count(default, maximum=MAX_DURATION_MS, **limits)


def _seconds() -> OptionField:
    return _count(maximum=MAX_DURATION_S)


def _flag() -> OptionField:
    return OptionField("bool", False)


def _target(required: bool = False) -> OptionField:
    return OptionField("str", "", required=required, jump=True)


OPTION_SCHEMAS: Final[Mapping[str, Mapping[str, OptionField]]] = {
    "answer": {},
    "talk": {
        "text": _text(required=True, max_length=MAX_TALK_CHARS),
        "language": _text(),
        "gender": _text(),
        "provider": _text(),
        "voice_id": _text(),
        "digits_handle": _text(choices=("", "next")),
        "async": _flag(),
    },
    "play": {"stream_urls": OptionField("strs", (), required=True, max_items=10, max_length=MAX_URL_CHARS)},
    "sleep": {"duration": _milliseconds(required=True)},
    "hangup": {"reason": _text()},
    "transcribe_start": {
        "language": _text(),
        "direction": _text("both", choices=("in", "out", "both")),
        "provider": _text(),
        # Ours: also publish transcribe_speech_started/interim/ended while the caller speaks.
        "interim": _flag(),
    },
    "transcribe_stop": {},
    "recording_start": {
        "format": _text("wav", choices=("wav",)),
        "end_of_silence": _seconds(),
        "end_of_key": _text(choices=("", "none", "any", "*", "#")),
        "duration": _seconds(),
        "beep_start": _flag(),
    },
    "recording_stop": {},
    "digits_receive": {
        "duration": _milliseconds(),
        "length": _count(maximum=100),
        "key": _text(dtmf=True, max_length=16),
    },
    "digits_send": {
        "digits": _text(required=True, max_length=100, dtmf=True),
        "duration": _count(100, minimum=100, maximum=1000),
        "interval": _count(100, minimum=0, maximum=5000),
    },
    "goto": {"target_id": _target(required=True), "loop_count": _count(maximum=1_000_000)},
    "branch": {
        "variable": _text("voipbin.call.digits"),
        "target_ids": OptionField("str_map", _NOTHING, jump=True, max_items=100),
        "default_target_id": _target(),
    },
    "condition_variable": {
        "condition": _text("==", choices=("==", "!=", ">", ">=", "<", "<=")),
        "variable": _text(),
        "value_type": _text("string", choices=("string", "number", "length")),
        "value_string": _text(max_length=MAX_VALUE_CHARS),
        "value_number": OptionField("number", 0.0, minimum=-MAX_NUMBER, maximum=MAX_NUMBER),
        "value_length": _count(maximum=MAX_VALUE_CHARS),
        "false_target_id": _target(),
    },
    "variable_set": {"key": _text(required=True), "value": _text(max_length=MAX_VALUE_CHARS)},
    "connect": {
        "source": OptionField("address", _NOTHING),
        "destinations": OptionField("addresses", (), required=True, max_items=100),
        "early_media": _flag(),
        "relay_reason": _flag(),
    },
    "webhook_send": {
        "sync": _flag(),
        "uri": _text(required=True, max_length=MAX_URL_CHARS),
        "method": _text("POST", choices=("POST", "GET", "PUT", "DELETE")),
        "data_type": _text(),
        "data": _text(max_length=65_536),
    },
    "ai_talk": {
        "assistance_type": _text("ai", choices=("", "ai")),
        "assistance_id": _text(),
        "ai_id": _text(),  # VoIPBIN's older name for assistance_id, still accepted
        "duration": _seconds(),
    },
    "conference_join": {
        "conference_id": _text(required=True, max_length=36),
        # Ours, as peers offer: join muted; a moderator; wait (with music) until a moderator is
        # there; end the conference when this participant leaves.
        "muted": _flag(),
        "moderator": _flag(),
        "wait_for_moderator": _flag(),
        "end_conference_on_exit": _flag(),
    },
    "ai_summary": {
        "on_end_flow_id": _text(max_length=36),
        "reference_type": _text("call", choices=("", "call", "conference", "transcribe", "recording")),
        "reference_id": _text(max_length=36),  # empty: this flow's call
        "language": _text(max_length=35),
    },
    "stop": {},
}

SUPPORTED_TYPES: Final = frozenset(OPTION_SCHEMAS)

_UNSUPPORTED_VOIPBIN_TYPES: Final = frozenset({
    "ai_task", "amd", "beep", "block", "call", "case_create",
    "condition_call_digits", "condition_call_status", "condition_datetime", "confbridge_join",
    "conversation_send", "echo", "email_send", "empty", "external_media_start",
    "external_media_stop", "fetch", "fetch_flow", "message_send", "mute", "queue_join", "stream_echo",
    "transcribe_recording",
})  # fmt: skip
"""VoIPBIN types this server does not run yet: named as such rather than as typos."""


# --- parsing ----------------------------------------------------------------


def _canonical_id(value: object) -> str | None:
    """The lowercase form VoIPBIN gives a UUID, or None for anything that is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _is_unset_id(value: object) -> bool:
    return value is None or value == "" or _canonical_id(value) == NIL_ID


def parse_actions(raw: object, *, make_id: Callable[[], str] = new_id) -> tuple[Action, ...]:
    """Validate a JSON ``actions`` array and return it as actions with all ids assigned.

    Raises :class:`FlowError` for the first problem found, in array order.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise FlowError("actions must be a list")
    actions = [_parse_action(i, item, make_id) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, action in enumerate(actions):
        if action.id in seen:
            raise FlowError(f"{_where(i, action.type)}: duplicate id '{action.id}'")
        seen.add(action.id)
    for i, action in enumerate(actions):
        _check_jumps(i, action, seen)
    return tuple(actions)


def _where(index: int, type_: str | None = None) -> str:
    return f"actions[{index}] {type_}" if type_ else f"actions[{index}]"


def _parse_action(index: int, item: object, make_id: Callable[[], str]) -> Action:
    if not isinstance(item, Mapping):
        raise FlowError(f"{_where(index)}: must be an object")
    type_ = item.get("type")
    if type_ is None or type_ == "":
        raise FlowError(f"{_where(index)}: 'type' is required")
    if not isinstance(type_, str):
        raise FlowError(f"{_where(index)}: 'type' must be a string")
    if type_ in _UNSUPPORTED_VOIPBIN_TYPES:
        raise FlowError(f"{_where(index)}: action type '{type_}' is not supported by this server")
    if type_ not in SUPPORTED_TYPES:
        raise FlowError(f"{_where(index)}: unknown action type '{type_}'")
    where = _where(index, type_)
    return Action(
        id=make_id() if _is_unset_id(item.get("id")) else _parse_id(where, "id", item["id"]),
        type=type_,
        option=_parse_option(where, type_, item.get("option")),
        next_id=NIL_ID if _is_unset_id(item.get("next_id")) else _parse_id(where, "next_id", item["next_id"]),
    )


def _parse_id(where: str, name: str, value: object) -> str:
    canonical = _canonical_id(value)
    if canonical is None:
        raise FlowError(f"{where}: {name} {value!r} is not a UUID")
    return canonical


def _parse_option(where: str, type_: str, raw: object) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise FlowError(f"{where}: 'option' must be an object")
    option = {k: copy.deepcopy(v) for k, v in raw.items() if v is not None}
    for name, spec in OPTION_SCHEMAS[type_].items():
        if name not in option:
            if spec.required:
                raise FlowError(f"{where}: option '{name}' is required")
            continue
        problem = spec.problem(option[name])
        if problem is not None:
            raise FlowError(f"{where}: option '{name}' {problem}")
        if spec.jump:
            option[name] = _canonical_jump(option[name])
    if type_ == "ai_talk" and not (option.get("assistance_id") or option.get("ai_id")):
        raise FlowError(f"{where}: option 'assistance_id' is required (the id of one of your AIs)")
    return option


def _canonical_jump(value: Any) -> Any:
    """Jump targets in VoIPBIN's lowercase form, so the engine can look them up as stored."""
    if isinstance(value, Mapping):
        return {k: _canonical_id(v) or v for k, v in value.items()}
    return NIL_ID if _is_unset_id(value) else _canonical_id(value) or value


def _check_jumps(index: int, action: Action, ids: set[str]) -> None:
    where = _where(index, action.type)
    if action.next_id != NIL_ID and action.next_id not in ids:
        raise FlowError(f"{where}: next_id references unknown action id '{action.next_id}'")
    for name, spec in OPTION_SCHEMAS[action.type].items():
        if not spec.jump or name not in action.option:
            continue
        value = action.option[name]
        if isinstance(value, Mapping):
            for key, target in value.items():
                if target not in ids:
                    raise FlowError(f"{where}: option '{name}' entry '{key}' references unknown action id '{target}'")
        elif value != NIL_ID and value not in ids:
            raise FlowError(f"{where}: option '{name}' references unknown action id '{value}'")
