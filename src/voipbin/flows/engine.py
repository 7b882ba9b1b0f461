"""A running flow (VoIPBIN's *activeflow*) as a sans-IO state machine.

:class:`ActiveFlow` never touches a call, a clock or a socket: the call layer feeds it
events through :meth:`ActiveFlow.handle` and carries out the commands it returns, in order,
the way h11 and aioquic separate protocol rules from I/O. Every flow rule can then be
tested in microseconds, and timers, media and HTTP stay the caller's choice.

The rules are VoIPBIN's (flow-manager plus call-manager): actions run in array order unless
``next_id`` or a jump says otherwise; actions that need nothing from the call complete at
once and the engine keeps going, within the same call, until an action has to wait for the
call (talk, play, sleep, digits_receive, digits_send, connect, a sync webhook_send). Each
action gets a fresh token, carried by its commands and echoed by the event that completes
it, so a late event for an earlier action (a timer that fired while the caller was
pressing keys, the end of a prompt that a key press cut short) cannot complete a later one.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from voipbin.core.clock import format_timestamp
from voipbin.core.ids import new_id
from voipbin.flows.actions import EMPTY_ACTION, FINISH_ACTION, NIL_ID, OPTION_SCHEMAS, Action

__all__ = [
    "CALL_HUNG_UP",
    "DIGITS_VARIABLE",
    "FINISHED",
    "HUNG_UP",
    "LIMIT",
    "LOOP_LIMIT",
    "MAX_IMMEDIATE_STEPS",
    "STOPPED",
    "ActionStarted",
    "ActiveFlow",
    "AiTalk",
    "AiTalkDone",
    "Answer",
    "CallHungUp",
    "CollectDigits",
    "Command",
    "CommandFailed",
    "ConferenceJoin",
    "ConferenceLeft",
    "Connect",
    "ConnectFailed",
    "Connected",
    "DigitsReceived",
    "Event",
    "FlowEnded",
    "FlowLimits",
    "FlowStatus",
    "Hangup",
    "MediaDone",
    "Play",
    "SendDigits",
    "SendWebhook",
    "StartRecording",
    "StartSummary",
    "StartTimer",
    "StartTranscribe",
    "StopMedia",
    "StopRecording",
    "StopRequested",
    "StopTranscribe",
    "Talk",
    "TimerFired",
    "WebhookDone",
]

DIGITS_VARIABLE: Final = "voipbin.call.digits"

MAX_IMMEDIATE_STEPS: Final = 100
"""Actions one event may run without waiting for the call; more means a jump loop with no wait."""

# Reasons a flow ends (FlowEnded.reason, ActiveFlow.end_reason).
FINISHED: Final = "finished"
"""Ran past its last action; the call layer hangs the call up with reason ``normal``, as VoIPBIN does."""
STOPPED: Final = "stopped"
"""A ``stop`` action (the call layer hangs up as for FINISHED) or :class:`StopRequested` (it keeps the call)."""
HUNG_UP: Final = "hangup"
"""A ``hangup`` action (or connect's ``relay_reason``); the :class:`Hangup` command precedes it."""
LOOP_LIMIT: Final = "loop_limit"
"""MAX_IMMEDIATE_STEPS actions ran back to back; the call layer hangs up as for FINISHED."""
LIMIT: Final = "limit"
"""The flow went past one of its :class:`FlowLimits`; the call layer hangs up (``failed``)."""
CALL_HUNG_UP: Final = "call_hungup"
"""The call went away (:class:`CallHungUp`); no FlowEnded is issued, there is nobody to tell."""


class FlowStatus(StrEnum):
    RUNNING = "running"
    ENDED = "ended"


@dataclass(frozen=True)
class FlowLimits:
    """What one flow may consume, whatever its actions say: a flow is customer input, and a loop
    around a 1 ms sleep or a variable that doubles itself must cost the platform little."""

    steps_burst: int = 200
    """Actions a flow may run before its step budget starts to bind."""
    steps_per_second: float = 20.0
    """Actions per second of the flow's life beyond the burst: a menu that waits for a person
    runs a few a second at most."""
    variable_chars: int = 16_384
    variables_chars: int = 262_144
    """All variables together, names and values."""
    variable_count: int = 1000
    substituted_chars: int = 65_536
    """Any option once its ``${...}`` are replaced."""
    history: int = 1000
    """Executed actions kept for the activeflow's ``executed_actions`` (the newest)."""


class _LimitExceeded(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# --- commands (engine -> call layer) ----------------------------------------


@dataclass(frozen=True)
class ActionStarted:
    """An action begins, options already substituted; becomes the call's and activeflow's current action."""

    action: Action


@dataclass(frozen=True)
class Answer:
    """Answer the call if it is not answered yet."""


@dataclass(frozen=True)
class Talk:
    """Speak ``text`` (plain or SSML); send ``MediaDone(token)`` when it has played."""

    text: str
    language: str
    gender: str
    provider: str
    voice_id: str
    digits_handle: str
    token: int


@dataclass(frozen=True)
class Play:
    """Play the URLs in order; send ``MediaDone(token)`` after the last."""

    urls: tuple[str, ...]
    token: int


@dataclass(frozen=True)
class StopMedia:
    """Cut short the talk or play issued with ``token`` (a key press skipped it)."""

    token: int


@dataclass(frozen=True)
class StartTimer:
    """Send ``TimerFired(token)`` after ``duration_s``; timers are never cancelled, stale ones are ignored."""

    duration_s: float
    token: int


@dataclass(frozen=True)
class Hangup:
    """Hang the call up with a VoIPBIN hangup reason (``normal``, ``busy``...)."""

    reason: str


@dataclass(frozen=True)
class StartTranscribe:
    """Start real-time speech-to-text on the call; ``direction`` is in, out or both.

    With ``interim``, hypotheses and speech start/end are published while the caller speaks.
    """

    language: str
    direction: str
    provider: str
    interim: bool = False


@dataclass(frozen=True)
class StopTranscribe:
    """Stop the call's real-time transcription."""


@dataclass(frozen=True)
class StartRecording:
    """Start recording the call; ``options`` are recording_start's, defaults filled in."""

    options: Mapping[str, Any]


@dataclass(frozen=True)
class StopRecording:
    """Stop the call's recording."""


@dataclass(frozen=True)
class CollectDigits:
    """The flow now listens for DTMF; feed each key as DigitsReceived. The timeout is a separate StartTimer."""

    length: int
    key: str
    duration_s: float


@dataclass(frozen=True)
class SendDigits:
    """Send DTMF; the engine waits out the tones itself (a StartTimer follows), as VoIPBIN does."""

    digits: str
    duration_ms: int
    interval_ms: int


@dataclass(frozen=True)
class Connect:
    """Dial the destinations (ring all) and bridge the first to answer with this call.

    Send ``Connected(token)`` when that bridge is over, or ``ConnectFailed(token, reason)``
    if nobody answered; while bridged the flow stays on connect, like VoIPBIN's confbridge_join.
    """

    source: Mapping[str, Any]
    destinations: tuple[Mapping[str, Any], ...]
    options: Mapping[str, Any]
    token: int


@dataclass(frozen=True)
class SendWebhook:
    """Make the HTTP request; when ``sync``, the flow waits for ``WebhookDone(token)``."""

    uri: str
    method: str
    data_type: str
    data: str
    sync: bool
    token: int


@dataclass(frozen=True)
class AiTalk:
    """Hand the call to the AI voice agent ``ai_id``; send ``AiTalkDone(token)`` when its part is over.

    ``variables`` are the flow's as they stand, for the agent's get_variables tool; ``duration_s``
    bounds the agent's part (0: until it or the call ends).
    """

    ai_id: str
    duration_s: float
    variables: Mapping[str, str]
    token: int


@dataclass(frozen=True)
class ConferenceJoin:
    """Put the call in the conference until it leaves it (kicked, the conference ended); then ConferenceLeft."""

    conference_id: str
    options: Mapping[str, bool]
    token: int


@dataclass(frozen=True)
class StartSummary:
    """Summarise a call's (by default this flow's) or a transcribe's transcript once it is complete;
    the flow does not wait for it (``ai_summary``)."""

    reference_type: str
    reference_id: str
    language: str
    on_end_flow_id: str


@dataclass(frozen=True)
class FlowEnded:
    """The flow is over; unless ``reason`` is HUNG_UP the call layer hangs the call up (``normal``)."""

    reason: str
    detail: str = ""


Command = (
    ActionStarted
    | Answer
    | Talk
    | Play
    | StopMedia
    | StartTimer
    | Hangup
    | StartTranscribe
    | StopTranscribe
    | StartRecording
    | StopRecording
    | CollectDigits
    | SendDigits
    | Connect
    | SendWebhook
    | AiTalk
    | ConferenceJoin
    | StartSummary
    | FlowEnded
)


# --- events (call layer -> engine) ------------------------------------------


@dataclass(frozen=True)
class MediaDone:
    """The Talk or Play with ``token`` finished playing."""

    token: int


@dataclass(frozen=True)
class TimerFired:
    """The StartTimer with ``token`` ran out."""

    token: int


@dataclass(frozen=True)
class DigitsReceived:
    """DTMF from the caller, one or more keys in the order pressed."""

    digits: str


@dataclass(frozen=True)
class Connected:
    """The Connect with ``token`` is over after a destination answered and later left the bridge."""

    token: int


@dataclass(frozen=True)
class ConnectFailed:
    """No destination of the Connect with ``token`` answered; ``reason`` is a hangup reason."""

    token: int
    reason: str


@dataclass(frozen=True)
class WebhookDone:
    """The sync SendWebhook with ``token`` was delivered (its response is not read, as in VoIPBIN)."""

    token: int


@dataclass(frozen=True)
class AiTalkDone:
    """The AiTalk with ``token`` is over.

    ``variables`` are what the agent set (set_variables); ``stop_flow`` ends the flow (stop_flow);
    ``connect`` are destinations the agent put the caller through to (connect_call): the flow
    connects the call to them, as a ``connect`` action would, before it goes on.
    """

    token: int
    variables: Mapping[str, str] = field(default_factory=dict)
    stop_flow: bool = False
    connect: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ConferenceLeft:
    """The call left the conference of ConferenceJoin ``token``; the flow goes on after it."""

    token: int


@dataclass(frozen=True)
class CallHungUp:
    """The call is gone; the flow ends silently."""


@dataclass(frozen=True)
class CommandFailed:
    """The command with ``token`` could not be carried out; like VoIPBIN, the flow moves on."""

    token: int
    reason: str


@dataclass(frozen=True)
class StopRequested:
    """``POST /activeflows/{id}/stop``: end the flow as a ``stop`` action would; the call stays up."""


Event = (
    MediaDone
    | TimerFired
    | DigitsReceived
    | Connected
    | ConnectFailed
    | WebhookDone
    | AiTalkDone
    | ConferenceLeft
    | CallHungUp
    | CommandFailed
    | StopRequested
)

_COMPLETED_BY: Final[Mapping[str, tuple[type, ...]]] = {
    "talk": (MediaDone,),
    "play": (MediaDone,),
    "sleep": (TimerFired,),
    "digits_receive": (TimerFired,),
    "digits_send": (TimerFired,),
    "connect": (Connected, ConnectFailed),
    "webhook_send": (WebhookDone,),
    "conference_join": (ConferenceLeft,),
    "ai_talk": (AiTalkDone, Connected, ConnectFailed),  # the last two: a transfer the agent asked for
}
"""For each action that waits, the events that complete it (CommandFailed completes any)."""

_OPERATORS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

_VARIABLE: Final = re.compile(r"\$\{([^{}]+)\}")


@dataclass(frozen=True)
class _Wait:
    index: int
    action: Action
    token: int


class ActiveFlow:
    """One flow running for one call: cursor, variables, goto counters and executed history.

    ``actions`` come from :func:`voipbin.flows.actions.parse_actions`, so every jump target
    exists. ``variables`` are the call's (``voipbin.call.*``) and the request's; the engine
    adds ``voipbin.activeflow.id`` and ``voipbin.activeflow.flow_id``.
    """

    def __init__(
        self,
        flow_id: str,
        actions: Sequence[Action],
        variables: Mapping[str, str],
        now: datetime,
        *,
        activeflow_id: str | None = None,
        limits: FlowLimits = FlowLimits(),
    ) -> None:
        self.id = activeflow_id or new_id()
        self.limits = limits
        self.flow_id = flow_id
        self._actions = tuple(actions)
        self._index = {action.id: i for i, action in enumerate(self._actions)}
        self._variables = {
            **variables,
            "voipbin.activeflow.id": self.id,
            "voipbin.activeflow.flow_id": flow_id,
        }
        self._loops: dict[str, int] = {}
        self._executed: deque[Action] = deque(maxlen=limits.history)
        self._steps = 0
        self._started_at = self._now = now
        self._current = EMPTY_ACTION
        self._wait: _Wait | None = None
        self._token = 0
        self._started = False
        self._status = FlowStatus.RUNNING
        self._end_reason = ""
        self._tm_create = self._tm_update = now

    @property
    def status(self) -> FlowStatus:
        return self._status

    @property
    def end_reason(self) -> str:
        return self._end_reason

    @property
    def current_action(self) -> Action:
        return self._current

    @property
    def executed_actions(self) -> tuple[Action, ...]:
        return tuple(self._executed)

    @property
    def variables(self) -> Mapping[str, str]:
        return MappingProxyType(self._variables)

    def start(self, now: datetime) -> list[Command]:
        """Run the first actions, up to the first one that waits for the call."""
        if self._started:
            raise RuntimeError(f"activeflow {self.id} was already started")
        self._started = True
        self._tm_update = self._started_at = self._now = now
        return self._run(0)

    def handle(self, event: Event, now: datetime) -> list[Command]:
        """Apply one event from the call; events the flow is not waiting for change nothing."""
        if self._status is FlowStatus.ENDED:
            return []
        self._tm_update = self._now = now
        match event:
            case CallHungUp():
                self._end(CALL_HUNG_UP)
                return []
            case StopRequested():
                return self._end(STOPPED)
            case DigitsReceived(digits=digits):
                out: list[Command] = []
                for digit in digits:
                    if self._status is FlowStatus.RUNNING:
                        out += self._on_digit(digit)
                return out
            case AiTalkDone():
                return self._on_ai_talk_done(event)
            case MediaDone() | TimerFired() | Connected() | ConnectFailed() | WebhookDone() | ConferenceLeft() | CommandFailed():
                return self._on_completion(event)

    def snapshot(self) -> dict[str, Any]:
        """The engine's part of VoIPBIN's Activeflow resource, JSON-ready."""
        return {
            "id": self.id,
            "flow_id": self.flow_id,
            "status": self._status.value,
            "current_action": self._current.to_dict(),
            "executed_actions": [action.to_dict() for action in self._executed],
            "variables": dict(self._variables),
            "tm_create": format_timestamp(self._tm_create),
            "tm_update": format_timestamp(self._tm_update),
        }

    # --- events -----------------------------------------------------------

    def _on_completion(
        self, event: MediaDone | TimerFired | Connected | ConnectFailed | WebhookDone | ConferenceLeft | CommandFailed
    ) -> list[Command]:
        wait = self._wait
        if wait is None or event.token != wait.token:
            return []
        if not isinstance(event, (CommandFailed, *_COMPLETED_BY[wait.action.type])):
            return []
        if wait.action.type == "connect" and wait.action.value("relay_reason") and not isinstance(event, CommandFailed):
            # VoIPBIN follows the bridge with a hangup that copies the destination leg's reason.
            self._wait = None
            return [Hangup(event.reason if isinstance(event, ConnectFailed) else "normal"), *self._end(HUNG_UP)]
        return self._resume(wait)

    def _on_ai_talk_done(self, event: AiTalkDone) -> list[Command]:
        wait = self._wait
        if wait is None or event.token != wait.token or wait.action.type != "ai_talk":
            return []
        try:
            for name, value in event.variables.items():
                self._set_variable(name, value)
        except _LimitExceeded as exceeded:
            return self._end(LIMIT, f"actions[{wait.index}] ai_talk: {exceeded.detail}")
        if event.stop_flow:
            return self._end(STOPPED)
        if event.connect:
            # VoIPBIN's connect_call appends a connect action; here the ai_talk waits for it instead.
            self._token += 1
            self._wait = _Wait(wait.index, wait.action, self._token)
            return [Connect({}, event.connect, {"early_media": False, "relay_reason": False}, self._token)]
        return self._resume(wait)

    def _on_digit(self, digit: str) -> list[Command]:
        wait = self._wait
        if wait is not None and wait.action.type == "digits_receive":
            digits = self._variables.get(DIGITS_VARIABLE, "") + digit
            # A caller holding a key down stops adding digits at the variable's bound.
            self._variables[DIGITS_VARIABLE] = digits[: self.limits.variable_chars]
            return self._resume(wait) if self._digits_done(wait.action) else []
        # Elsewhere a key replaces what was stored, so a key pressed during a prompt
        # becomes the first digit of the next digits_receive (VoIPBIN's call-manager).
        self._variables[DIGITS_VARIABLE] = digit
        if wait is not None and wait.action.type == "talk" and wait.action.value("digits_handle") == "next":
            return [StopMedia(wait.token), *self._resume(wait)]
        return []

    def _resume(self, wait: _Wait) -> list[Command]:
        self._wait = None
        return self._run(self._next(wait.index, wait.action))

    # --- running actions --------------------------------------------------

    def _run(self, index: int) -> list[Command]:
        """Execute from ``index`` until an action waits or the flow ends."""
        out: list[Command] = []
        steps = 0
        while True:
            if index >= len(self._actions):
                self._current = FINISH_ACTION
                return [*out, *self._end(FINISHED)]
            if steps == MAX_IMMEDIATE_STEPS:
                detail = (
                    f"{steps} actions ran without waiting for the call; "
                    f"stopped before actions[{index}] {self._actions[index].type}"
                )
                return [*out, *self._end(LOOP_LIMIT, detail)]
            if self._steps >= self._step_budget():
                detail = f"{self._steps} actions in {self._age_s():.1f} s; stopped before actions[{index}] {self._actions[index].type}"
                return [*out, *self._end(LIMIT, detail)]
            try:
                action = self._substitute(self._actions[index])
                self._current = action
                self._executed.append(action)
                self._token += 1
                out.append(ActionStarted(action))
                steps += 1
                self._steps += 1
                step = self._execute(index, action, out)
            except _LimitExceeded as exceeded:
                return [*out, *self._end(LIMIT, f"actions[{index}] {self._actions[index].type}: {exceeded.detail}")]
            if isinstance(step, _Wait):
                self._wait = step
            if not isinstance(step, int):
                return out
            index = step

    def _execute(self, index: int, action: Action, out: list[Command]) -> int | _Wait | None:
        """Carry out one action: the index to go on with, what to wait for, or None once ended."""
        value = action.value
        token = self._token
        match action.type:
            case "answer":
                out.append(Answer())
            case "talk":
                out.append(
                    Talk(
                        value("text"),
                        value("language"),
                        value("gender"),
                        value("provider"),
                        value("voice_id"),
                        value("digits_handle"),
                        token,
                    )
                )
                if not value("async"):
                    return _Wait(index, action, token)
            case "play":
                out.append(Play(tuple(value("stream_urls")), token))
                return _Wait(index, action, token)
            case "sleep":
                if value("duration") > 0:
                    out.append(StartTimer(value("duration") / 1000, token))
                    return _Wait(index, action, token)
            case "hangup":
                out += [Hangup(value("reason") or "normal"), *self._end(HUNG_UP)]
                return None
            case "transcribe_start":
                out.append(
                    StartTranscribe(value("language"), value("direction"), value("provider"), value("interim"))
                )
            case "transcribe_stop":
                out.append(StopTranscribe())
            case "recording_start":
                out.append(StartRecording({name: value(name) for name in OPTION_SCHEMAS["recording_start"]}))
            case "recording_stop":
                out.append(StopRecording())
            case "digits_receive":
                # Stored digits may already satisfy it; a zero duration means no wait at all.
                if value("duration") > 0 and not self._digits_done(action):
                    seconds = value("duration") / 1000
                    out += [CollectDigits(value("length"), value("key"), seconds), StartTimer(seconds, token)]
                    return _Wait(index, action, token)
            case "digits_send":
                digits = value("digits")
                tones_ms = len(digits) * value("duration") + (len(digits) - 1) * value("interval")
                out += [SendDigits(digits, value("duration"), value("interval")), StartTimer(tones_ms / 1000, token)]
                return _Wait(index, action, token)
            case "goto":
                return self._goto(index, action)
            case "branch":
                return self._branch(index, action)
            case "condition_variable":
                return self._condition(index, action)
            case "variable_set":
                self._set_variable(value("key"), value("value"))
            case "connect":
                options = {"early_media": value("early_media"), "relay_reason": value("relay_reason")}
                out.append(Connect(value("source"), tuple(value("destinations")), options, token))
                return _Wait(index, action, token)
            case "webhook_send":
                out.append(
                    SendWebhook(value("uri"), value("method"), value("data_type"), value("data"), value("sync"), token)
                )
                if value("sync"):
                    return _Wait(index, action, token)
            case "ai_talk":
                ai_id = value("assistance_id") or value("ai_id")
                out.append(AiTalk(ai_id, float(value("duration")), dict(self._variables), token))
                return _Wait(index, action, token)
            case "conference_join":
                flags = ("muted", "moderator", "wait_for_moderator", "end_conference_on_exit")
                out.append(ConferenceJoin(value("conference_id"), {name: value(name) for name in flags}, token))
                return _Wait(index, action, token)
            case "ai_summary":
                reference_type = value("reference_type") or "call"
                out.append(StartSummary(reference_type, value("reference_id"), value("language"), value("on_end_flow_id")))
            case "stop":
                out += self._end(STOPPED)
                return None
        return self._next(index, action)

    def _step_budget(self) -> float:
        return self.limits.steps_burst + self.limits.steps_per_second * self._age_s()

    def _age_s(self) -> float:
        return max(0.0, (self._now - self._started_at).total_seconds())

    def _set_variable(self, name: str, value: str) -> None:
        limits = self.limits
        if len(value) > limits.variable_chars:
            raise _LimitExceeded(f"variable {name[:64]!r} would hold {len(value)} characters (at most {limits.variable_chars})")
        if name not in self._variables and len(self._variables) >= limits.variable_count:
            raise _LimitExceeded(f"more than {limits.variable_count} variables")
        total = sum(len(k) + len(v) for k, v in self._variables.items()) - len(self._variables.get(name, "")) + len(value)
        if name not in self._variables:
            total += len(name)
        if total > limits.variables_chars:
            raise _LimitExceeded(f"the variables would hold {total} characters (at most {limits.variables_chars})")
        self._variables[name] = value

    def _goto(self, index: int, action: Action) -> int:
        # VoIPBIN counts loop_count down per activeflow and falls through once it is spent,
        # so a goto without loop_count never jumps.
        remaining = self._loops.get(action.id, action.value("loop_count"))
        if remaining <= 0:
            return self._next(index, action)
        self._loops[action.id] = remaining - 1
        return self._index[action.value("target_id")]

    def _branch(self, index: int, action: Action) -> int:
        name, current = self._variable_ref(self._actions[index].value("variable"))
        if name is not None:
            # Cleared, as VoIPBIN does, so the next menu does not see this answer again.
            self._variables[name] = ""
        target = action.value("target_ids").get(current) or action.value("default_target_id")
        return self._jump(target, index, action)

    def _condition(self, index: int, action: Action) -> int:
        _, current = self._variable_ref(self._actions[index].value("variable"))
        compare = _OPERATORS[action.value("condition")]
        match action.value("value_type"):
            case "number":
                try:
                    holds = compare(float(current), float(action.value("value_number")))
                except ValueError:
                    holds = False
            case "length":
                holds = compare(len(current), action.value("value_length"))
            case _:
                holds = compare(current, action.value("value_string"))
        return self._next(index, action) if holds else self._jump(action.value("false_target_id"), index, action)

    def _jump(self, target: str, index: int, action: Action) -> int:
        """Go to ``target``; with no target the flow just goes on, as if the jump matched."""
        return self._index[target] if target and target != NIL_ID else self._next(index, action)

    def _next(self, index: int, action: Action) -> int:
        return self._index[action.next_id] if action.next_id != NIL_ID else index + 1

    def _end(self, reason: str, detail: str = "") -> list[Command]:
        self._status = FlowStatus.ENDED
        self._end_reason = reason
        self._wait = None
        return [FlowEnded(reason, detail)]

    # --- variables --------------------------------------------------------

    def _digits_done(self, action: Action) -> bool:
        """digits_receive's end test, on everything stored so far (terminator included)."""
        digits = self._variables.get(DIGITS_VARIABLE, "")
        length = action.value("length")
        return (length > 0 and len(digits) >= length) or any(d in action.value("key") for d in digits)

    def _variable_ref(self, ref: str) -> tuple[str | None, str]:
        """Resolve branch/condition ``variable``: a bare name (VoIPBIN's docs) or a ``${...}`` template (its code).

        Returns the variable's name when there is a single one, and the value.
        """
        whole = _VARIABLE.fullmatch(ref)
        if whole is not None:
            ref = whole.group(1)
        elif "${" in ref:
            return None, self._substitute_text(ref)
        return ref, self._variables.get(ref, "")

    def _substitute(self, action: Action) -> Action:
        """The action with ``${name}`` replaced in every string option; unknown names become ""."""
        return replace(action, option=self._substitute_value(action.option))

    def _substitute_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._substitute_text(value)
        if isinstance(value, Mapping):
            return {key: self._substitute_value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._substitute_value(item) for item in value]
        return value

    def _substitute_text(self, text: str) -> str:
        if "${" not in text:
            return text
        result = _VARIABLE.sub(lambda match: self._variables.get(match.group(1), ""), text)
        if len(result) > self.limits.substituted_chars:
            raise _LimitExceeded(f"an option would hold {len(result)} characters (at most {self.limits.substituted_chars})")
        return result
