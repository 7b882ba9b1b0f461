"""One AI conversation on a call as a sans-IO state machine: events in, commands out.

:class:`Conversation` never touches the LLM, the speech engines or the call. The AI session feeds
it what happened (the caller said something, started speaking over the AI, a token streamed, a
sentence finished playing, a tool ran) and carries out the commands it returns, in order, as
``flows/engine.py`` does for flows. Its rules:

- A reply is generated from the whole history; its text is spoken sentence by sentence as each
  sentence completes, so the caller hears the first while the rest is still being generated.
- The caller speaking over the AI (barge-in) stops the audio and the generation at once, and the
  history keeps what the caller actually heard, not what the model wrote.
- A caller's new words while a reply is still being generated (nothing spoken yet) restart the
  reply with both utterances, rather than answering the first half.
- Tool calls run one by one; their results go back to the model, which then speaks again. A tool
  that ends the AI's part (``stop_service``, ``connect_call``, ``stop_flow``) ends the conversation;
  what the AI said before calling it still plays out. A caller speaking while tools run is answered
  once they are done (a tool's result must follow its call in the history).

Each generation has a turn number, carried by its commands and echoed by its events, so a token
of a cancelled reply cannot leak into the next one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

ENDING_TOOLS: Final = frozenset({"stop_service", "connect_call", "stop_flow"})
"""Tools after which the AI says nothing more: the flow goes on (or the call is transferred)."""

MAX_TOOL_ROUNDS: Final = 8
"""Tool calls in a row without the caller speaking; more means a model calling tools in a loop."""

# A sentence ends at . ! ? followed by a space (so "3.5" or "e.g." mid-word do not cut).
_SENTENCE_END: Final = re.compile(r"(?<=[.!?。！？])\s+")

Message = Mapping[str, Any]


# --- events (session -> conversation) ---------------------------------------


@dataclass(frozen=True)
class CallerSaid:
    """A final transcript of the caller."""

    text: str


@dataclass(frozen=True)
class CallerStartedSpeaking:
    """The caller's voice began (the recogniser's speech start): a barge-in if the AI is speaking."""


@dataclass(frozen=True)
class ReplyText:
    turn: int
    text: str


@dataclass(frozen=True)
class ReplyToolCall:
    turn: int
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ReplyFinished:
    turn: int


@dataclass(frozen=True)
class ReplyFailed:
    turn: int
    reason: str


@dataclass(frozen=True)
class Spoken:
    """The sentence of ``Say(piece)`` finished playing to the caller."""

    piece: int


@dataclass(frozen=True)
class ToolDone:
    call_id: str
    result: Mapping[str, Any]


@dataclass(frozen=True)
class Injected:
    """A message put into the live conversation through the API (``POST /aimessages``).

    ``user`` is answered as if the caller had said it; ``assistant`` is spoken as written;
    ``system`` and ``notification`` guide the model from its next reply on.
    """

    role: str
    content: str


Event = (
    CallerSaid
    | CallerStartedSpeaking
    | ReplyText
    | ReplyToolCall
    | ReplyFinished
    | ReplyFailed
    | Spoken
    | ToolDone
    | Injected
)


# --- commands (conversation -> session) -------------------------------------


@dataclass(frozen=True)
class Generate:
    """Ask the model for the next reply to ``messages`` (OpenAI chat shape)."""

    turn: int
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class CancelReply:
    turn: int


@dataclass(frozen=True)
class Say:
    """Speak one sentence; send ``Spoken(piece)`` once it has played."""

    piece: int
    text: str


@dataclass(frozen=True)
class StopSpeaking:
    """Silence what is playing now and drop the sentences queued behind it."""


@dataclass(frozen=True)
class RunTool:
    """Run a tool; send ``ToolDone(call_id, result)``."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Record:
    """A message joined the history: store it (an aimessage) and announce it."""

    message: Message


@dataclass(frozen=True)
class End:
    """The AI's part is over (a tool ended it, or the model failed)."""

    reason: str


Command = Generate | CancelReply | Say | StopSpeaking | RunTool | Record | End


@dataclass
class _Reply:
    """The reply being generated and spoken."""

    turn: int
    pending: str = ""  # text not yet a whole sentence
    said: list[tuple[int, str]] = field(default_factory=list)  # pieces sent to be spoken
    heard: set[int] = field(default_factory=set)  # pieces that finished playing
    tool_calls: list[ReplyToolCall] = field(default_factory=list)
    finished: bool = False


class Conversation:
    def __init__(self, system_prompt: str, *, history: Sequence[Message] = ()) -> None:
        self._history: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self._history += history
        self._turn = 0
        self._piece = 0
        self._reply: _Reply | None = None
        self._tools: list[ReplyToolCall] = []  # calls of a finished reply, run one by one
        self._tool_rounds = 0
        self._heard_during_tools: list[str] = []  # caller's words while tools run, answered after them
        self.ended = False

    @property
    def history(self) -> tuple[Message, ...]:
        return tuple(self._history)

    def start(self) -> list[Command]:
        """The AI speaks first: a greeting generated from the prompt."""
        return self._generate()

    def handle(self, event: Event) -> list[Command]:
        if self.ended:
            return []
        match event:
            case CallerSaid(text=text):
                return self._on_caller_said(text)
            case CallerStartedSpeaking():
                return self._on_barge_in()
            case ReplyText() | ReplyToolCall() | ReplyFinished() | ReplyFailed():
                reply = self._reply
                if reply is None or event.turn != reply.turn or reply.finished:
                    return []
                return self._on_reply(reply, event)
            case Spoken(piece=piece):
                return self._on_spoken(piece)
            case ToolDone():
                return self._on_tool_done(event)
            case Injected():
                return self._on_injected(event)

    # --- the caller ---------------------------------------------------------

    def _on_caller_said(self, text: str) -> list[Command]:
        text = text.strip()
        if not text:
            return []
        if self._tools:
            # A tool is running: its result must follow its call in the history.
            self._heard_during_tools.append(text)
            return []
        out: list[Command] = []
        reply = self._reply
        if reply is not None and not reply.said and not reply.tool_calls:
            # Still thinking about the caller's earlier words: answer them all at once.
            out.append(CancelReply(reply.turn))
            self._reply = None
        elif reply is not None:
            out += self._interrupt(reply)
        self._tool_rounds = 0
        out += self._add({"role": "user", "content": text})
        return [*out, *self._generate()]

    def _on_barge_in(self) -> list[Command]:
        reply = self._reply
        if reply is None or not reply.said:
            return []  # nothing is being spoken: the caller is just talking
        return self._interrupt(reply)

    def _interrupt(self, reply: _Reply) -> list[Command]:
        """Stop the reply where the caller cut in; keep the sentences they heard."""
        self._reply = None
        out: list[Command] = [StopSpeaking()]
        if not reply.finished:
            out.append(CancelReply(reply.turn))
        heard = " ".join(text for piece, text in reply.said if piece in reply.heard)
        if heard:
            out += self._add({"role": "assistant", "content": heard})
        return out

    def _on_injected(self, event: Injected) -> list[Command]:
        content = event.content.strip()
        if not content:
            return []
        if event.role == "user":
            return self._on_caller_said(content)
        if event.role == "assistant":
            self._piece += 1  # spoken after what is playing; not part of any reply
            return [*self._add({"role": "assistant", "content": content}), Say(self._piece, content)]
        # The model knows no "notification" role: it reads one as a system message.
        return self._add({"role": "system", "content": content}, shown_as=event.role)

    # --- the model ------------------------------------------------------------

    def _generate(self) -> list[Command]:
        self._turn += 1
        self._reply = _Reply(self._turn)
        return [Generate(self._turn, tuple(self._history))]

    def _on_reply(self, reply: _Reply, event: ReplyText | ReplyToolCall | ReplyFinished | ReplyFailed) -> list[Command]:
        match event:
            case ReplyText(text=text):
                reply.pending += text
                *sentences, reply.pending = _SENTENCE_END.split(reply.pending)
                return [self._say(reply, sentence) for sentence in sentences if sentence.strip()]
            case ReplyToolCall():
                reply.tool_calls.append(event)
                return []
            case ReplyFailed(reason=reason):
                self._reply = None
                return self._end(f"the model failed: {reason}")
            case ReplyFinished():
                reply.finished = True
                out: list[Command] = [self._say(reply, reply.pending)] if reply.pending.strip() else []
                reply.pending = ""
                return [*out, *self._settle(reply)]

    def _say(self, reply: _Reply, text: str) -> Say:
        self._piece += 1
        reply.said.append((self._piece, text.strip()))
        return Say(self._piece, text.strip())

    def _on_spoken(self, piece: int) -> list[Command]:
        reply = self._reply
        if reply is None or piece not in {p for p, _ in reply.said}:
            return []
        reply.heard.add(piece)
        return self._settle(reply) if reply.finished else []

    def _settle(self, reply: _Reply) -> list[Command]:
        """A finished reply joins the history once heard, or at once when it calls tools (they run
        while it plays)."""
        if self._reply is not reply or (reply.said and not reply.tool_calls and len(reply.heard) < len(reply.said)):
            return []
        self._reply = None
        return self._commit(reply)

    def _commit(self, reply: _Reply) -> list[Command]:
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(text for _, text in reply.said)}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in reply.tool_calls
            ]
        out = self._add(message) if message["content"] or reply.tool_calls else []
        self._tools = list(reply.tool_calls)
        return [*out, *self._next_tool()]

    # --- tools ----------------------------------------------------------------

    def _next_tool(self) -> list[Command]:
        if not self._tools:
            return []
        if self._tool_rounds >= MAX_TOOL_ROUNDS:
            return self._end(f"{MAX_TOOL_ROUNDS} tool calls in a row without the caller speaking")
        call = self._tools[0]
        self._tool_rounds += 1
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            failed = {"result": "failed", "message": "arguments are not a JSON object"}
            return self._on_tool_done(ToolDone(call.call_id, failed))
        return [RunTool(call.call_id, call.name, arguments)]

    def _on_tool_done(self, event: ToolDone) -> list[Command]:
        if not self._tools or self._tools[0].call_id != event.call_id:
            return []
        call = self._tools.pop(0)
        out = self._add({"role": "tool", "tool_call_id": call.call_id, "content": json.dumps(dict(event.result))})
        if call.name in ENDING_TOOLS:
            self._tools.clear()
            return [*out, *self._end(call.name)]
        if self._tools:
            return [*out, *self._next_tool()]
        if self._heard_during_tools:
            self._tool_rounds = 0
            out += self._add({"role": "user", "content": " ".join(self._heard_during_tools)})
            self._heard_during_tools.clear()
        return [*out, *self._generate()]  # the model reads the results (and the caller) and speaks

    # --- bookkeeping ------------------------------------------------------------

    def _add(self, message: Message, *, shown_as: str = "") -> list[Command]:
        self._history.append(message)
        return [Record({**message, "role": shown_as} if shown_as else message)]

    def _end(self, reason: str) -> list[Command]:
        self.ended = True
        return [End(reason)]
