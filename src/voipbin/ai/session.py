"""One AI voice agent on one call: the wing that carries out a :class:`Conversation`'s commands.

The caller's audio goes through a recogniser with speech boundaries (a voice starting is a
barge-in, a final transcript a turn); replies stream from the chat model sentence by sentence
into TTS and onto the call, each sentence a playback of its own so that a barge-in can cut the
one playing and drop the rest within a tick; tool calls run here, against the call's flow
variables and this conversation. Everything the conversation records becomes an aimessage.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select

from voipbin.ai import conversation as cv
from voipbin.ai import http_tools, tools
from voipbin.ai.llm import ChatModel, LlmError, LlmText, LlmToolCall
from voipbin.calls.service import AiTalkRequest, AiTalkResult
from voipbin.core.clock import Clock
from voipbin.core.egress import EgressPolicy, egress_client
from voipbin.core.ids import new_id
from voipbin.media.endpoint import Playback
from voipbin.speech.service import LiveTranscriber
from voipbin.speech.stt import SpeechBoundary, Utterance
from voipbin.speech.tts import TtsError, TtsService
from voipbin.store.db import Store
from voipbin.store.models import Ai, AiCall, AiMessage, Customer
from voipbin.views import announce

log = logging.getLogger(__name__)

DRAIN_S: Final = 30.0
"""How long the AI's last words may play on after it ended its part (a goodbye, 'putting you through')."""
MAX_MESSAGES_SHOWN: Final = 50
"""get_aicall_messages returns at most the newest this many."""
# The local voices; any other tts_type speaks with the local voice too (its key is not set here).
_LOCAL_TTS: Final = frozenset({"", "piper", "espeak", "elevenlabs"})


@dataclass(frozen=True)
class AiContext:
    store: Store
    clock: Clock
    tts: TtsService
    # A recogniser for the caller's side (options as ``SpeechService.transcriber``'s).
    transcriber: Callable[..., LiveTranscriber]
    # What customers' HTTP tools may reach (the webhooks' policy).
    egress: EgressPolicy


@dataclass(frozen=True)
class _Terminate:
    """``POST /aicalls/{id}/terminate``: end now, cutting off what plays."""


@dataclass(frozen=True)
class _TimeUp:
    """ai_talk's ``duration`` ran out."""


@dataclass(frozen=True)
class _Inject:
    event: cv.Injected
    stored: asyncio.Future[AiMessage]


@dataclass(frozen=True)
class _Drained:
    """Every sentence the AI said before it ended has played (or DRAIN_S passed)."""


_Event = cv.Event | _Terminate | _TimeUp | _Inject | _Drained


@dataclass
class _Outcome:
    variables: dict[str, str] = field(default_factory=dict)
    stop_flow: bool = False
    connect: tuple[Mapping[str, Any], ...] = ()


class AiTalkSession:
    """Runs until the AI ends its part, the time is up, or it is terminated; hang-up cancels it."""

    def __init__(self, ctx: AiContext, ai: Ai, request: AiTalkRequest, model: ChatModel) -> None:
        self.ctx = ctx
        self.ai = ai
        self.request = request
        self.model = model
        now = ctx.clock.now()
        self.row = AiCall(
            id=new_id(),
            customer_id=request.customer_id,
            assistance_type="ai",
            assistance_id=ai.id,
            ai_engine_model=ai.engine_model,
            ai_tts_type=ai.tts_type,
            ai_tts_voice_id=ai.tts_voice_id,
            ai_stt_type=ai.stt_type,
            ai_vad_config=dict(ai.vad_config),
            parameter=dict(ai.parameter),
            activeflow_id=request.activeflow_id,
            reference_type="call",
            reference_id=request.call_id,
            status="initiating",
            stt_language=ai.stt_language or "en-US",
            tm_create=now,
        )
        self._tools = tools.offered(ai.tool_names)
        self._http_tools = {t.name: t for t in map(http_tools.HttpTool.from_stored, ai.http_tools or [])}
        self._conversation = cv.Conversation(tools.system_prompt(ai.init_prompt))
        self._variables = dict(request.variables)
        self._outcome = _Outcome()
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._replies: dict[int, asyncio.Task[None]] = {}
        self._playing: dict[int, Playback] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._injecting: _Inject | None = None  # resolved by the Record of its message
        self._finished = asyncio.Event()

    @property
    def id(self) -> str:
        return self.row.id

    # --- the API's handles -----------------------------------------------------------------

    async def terminate(self) -> None:
        self._events.put_nowait(_Terminate())
        await asyncio.wait_for(self._finished.wait(), DRAIN_S)

    async def inject(self, role: str, content: str) -> AiMessage:
        stored: asyncio.Future[AiMessage] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(_Inject(cv.Injected(role, content), stored))
        return await asyncio.wait_for(stored, 10)

    # --- the run ---------------------------------------------------------------------------

    async def run(self) -> AiTalkResult:
        await self._add(self.row, "aicall_status_initiating")
        transcriber = self.ctx.transcriber(
            language=self.row.stt_language, provider=self._stt_provider(), boundaries=True, start_ms=self._barge_in_after_ms()
        )
        untap = self.request.endpoint.add_tap("in", transcriber.feed)
        self._spawn(self._listen(transcriber))
        timer = None
        if self.request.duration_s > 0:
            timer = asyncio.get_running_loop().call_later(self.request.duration_s, self._events.put_nowait, _TimeUp())
        try:
            await self._set_status("progressing")
            commands = self._conversation.start()
            while True:
                for command in commands:
                    await self._carry_out(command)
                self._settle_inject()
                event = await self._events.get()
                if isinstance(event, _Drained | _Terminate | _TimeUp):
                    break
                commands = self._on(event)
        finally:
            untap()
            transcriber.close()
            if timer is not None:
                timer.cancel()
            self._stop_speaking()
            for task in self._tasks:
                task.cancel()
            if self._injecting is not None:
                self._injecting.stored.cancel()
            await self.model.close()
            await self._set_status("terminated", tm_end=self.ctx.clock.now())
            self._finished.set()
        variables = {**self._outcome.variables, "voipbin.aicall.id": self.row.id, "voipbin.aicall.ai_id": self.ai.id}
        return AiTalkResult(variables, self._outcome.stop_flow, self._outcome.connect)

    def _on(self, event: _Event) -> list[cv.Command]:
        if isinstance(event, _Inject):
            self._injecting = event
            return self._conversation.handle(event.event)
        assert not isinstance(event, _Terminate | _TimeUp | _Drained)
        return self._conversation.handle(event)

    def _settle_inject(self) -> None:
        """An injected message the conversation did not take (it has ended, or it was blank)."""
        if self._injecting is not None and not self._injecting.stored.done():
            self._injecting.stored.set_exception(ValueError("the AI is ending its part and takes no more messages"))
        self._injecting = None

    async def _set_status(self, status: str, **values: Any) -> None:
        self.row.status = status
        async with self.ctx.store.transaction() as tx:
            row = await tx.session.get(AiCall, self.row.id)
            if row is None:  # deleted through the API meanwhile
                return
            for key, value in {"status": status, **values}.items():
                setattr(row, key, value)
            row.tm_update = tx.clock.now()
            announce(tx, row, f"aicall_status_{status}")

    async def _add(self, row: AiCall | AiMessage, event_type: str) -> None:
        async with self.ctx.store.transaction() as tx:
            tx.session.add(row)
            announce(tx, row, event_type)

    def _barge_in_after_ms(self) -> int:
        """vad_config.start_secs: how much of the caller's voice makes a barge-in (0: its first frame)."""
        return int(float(self.ai.vad_config.get("start_secs") or 0) * 1000)

    def _stt_provider(self) -> str:
        return "deepgram" if self.ai.stt_type == "deepgram" else ""

    # --- the caller ------------------------------------------------------------------------

    async def _listen(self, transcriber: LiveTranscriber) -> None:
        async for event in transcriber.results():
            match event:
                case SpeechBoundary(kind="started"):
                    self._events.put_nowait(cv.CallerStartedSpeaking())
                case Utterance(final=True, text=text) if text.strip():
                    self._events.put_nowait(cv.CallerSaid(text))

    # --- commands --------------------------------------------------------------------------

    async def _carry_out(self, command: cv.Command) -> None:
        match command:
            case cv.Generate(turn=turn, messages=messages):
                self._replies[turn] = self._spawn(self._generate(turn, messages))
            case cv.CancelReply(turn=turn):
                if (reply := self._replies.pop(turn, None)) is not None:
                    reply.cancel()
            case cv.Say(piece=piece, text=text):
                self._say(piece, text)
            case cv.StopSpeaking():
                self._stop_speaking()
            case cv.RunTool():
                self._spawn(self._run_tool(command))
            case cv.Record(message=message):
                await self._record(message)
            case cv.End(reason=reason):
                log.info("AI %s on call %s ended its part: %s", self.ai.id, self.request.call_id, reason)
                self._spawn(self._drain())

    async def _generate(self, turn: int, messages: tuple[cv.Message, ...]) -> None:
        put = self._events.put_nowait
        try:
            async for delta in self.model.reply(messages, self._definitions()):
                match delta:
                    case LlmText(text=text):
                        put(cv.ReplyText(turn, text))
                    case LlmToolCall(call_id=call_id, name=name, arguments=arguments):
                        put(cv.ReplyToolCall(turn, call_id, name, arguments))
        except LlmError as error:
            log.warning("AI %s on call %s: %s", self.ai.id, self.request.call_id, error)
            put(cv.ReplyFailed(turn, str(error)))
            return
        finally:
            self._replies.pop(turn, None)
        put(cv.ReplyFinished(turn))

    def _say(self, piece: int, text: str) -> None:
        playback = self.request.endpoint.play_stream(self._speech(text))
        self._playing[piece] = playback
        self._spawn(self._await_playback(piece, playback))

    async def _speech(self, text: str) -> AsyncIterator[bytes]:
        provider = self.ai.tts_type if self.ai.tts_type in _LOCAL_TTS else ""
        try:
            async for pcm in self.ctx.tts.stream(text, self.row.stt_language, self.ai.tts_voice_id, provider=provider):
                yield pcm
        except TtsError as error:
            log.warning("AI %s on call %s: speech failed: %s", self.ai.id, self.request.call_id, error)

    async def _await_playback(self, piece: int, playback: Playback) -> None:
        outcome = await playback.done
        self._playing.pop(piece, None)
        if outcome == "finished":
            self._events.put_nowait(cv.Spoken(piece))

    def _stop_speaking(self) -> None:
        endpoint = self.request.endpoint
        for playback in self._playing.values():
            endpoint.cancel(playback)
        self._playing.clear()

    async def _drain(self) -> None:
        """Let the last sentences play out (no more come: the conversation has ended), then end."""
        playing = [asyncio.shield(playback.done) for playback in self._playing.values()]
        if playing:
            await asyncio.wait(playing, timeout=DRAIN_S)
        self._events.put_nowait(_Drained())

    async def _record(self, message: cv.Message) -> None:
        role = str(message.get("role", ""))
        row = AiMessage(
            id=new_id(),
            customer_id=self.row.customer_id,
            aicall_id=self.row.id,
            activeflow_id=self.request.activeflow_id,
            active_ai_id=self.ai.id,
            role=role,
            content=str(message.get("content") or ""),
            direction="outgoing" if role == "assistant" else "incoming",
            tool_calls=list(message.get("tool_calls") or []),
            tool_call_id=str(message.get("tool_call_id", "")),
            tm_create=self.ctx.clock.now(),
        )
        await self._add(row, "aimessage_created")
        injecting = self._injecting
        matches = injecting and (role, row.content) == (injecting.event.role, injecting.event.content.strip())
        if injecting and matches and not injecting.stored.done():
            injecting.stored.set_result(row)

    # --- tools -----------------------------------------------------------------------------

    def _definitions(self) -> list[dict[str, Any]]:
        return [*tools.definitions(self._tools), *(tool.definition() for tool in self._http_tools.values())]

    async def _run_tool(self, call: cv.RunTool) -> None:
        try:
            if tool := self._http_tools.get(call.name):
                result = await self._call_http(tool, call.arguments)
            else:
                result = self._tool_result(call)
        except tools.ToolArgumentError as error:
            result = {"result": "failed", "message": str(error)}
        self._events.put_nowait(cv.ToolDone(call.call_id, result))

    async def _call_http(self, tool: http_tools.HttpTool, arguments: Mapping[str, Any]) -> dict[str, Any]:
        async with self.ctx.store.session() as session:
            secret = await session.scalar(select(Customer.webhook_secret).where(Customer.id == self.row.customer_id))
        about = {"aicall_id": self.row.id, "call_id": self.request.call_id}
        async with egress_client(self.ctx.egress, timeout=http_tools.TIMEOUT_S) as client:
            return await http_tools.call(client, tool, arguments, about, secret or "")

    def _tool_result(self, call: cv.RunTool) -> dict[str, Any]:
        if call.name not in self._tools:
            return {"result": "failed", "message": f"there is no tool {call.name!r} here"}
        arguments = call.arguments
        match call.name:
            case "connect_call":
                self._outcome.connect = (tools.destination(arguments),)
            case "stop_flow":
                self._outcome.stop_flow = True
            case "set_variables":
                values = tools.variables(arguments)
                self._variables.update(values)
                self._outcome.variables.update(values)
            case "get_variables":
                return {"result": "success", "variables": self._variables}
            case "get_aicall_messages":
                history = [m for m in self._conversation.history if m.get("role") != "system"]
                return {"result": "success", "messages": json.loads(json.dumps(history[-MAX_MESSAGES_SHOWN:]))}
            case "stop_media":
                self._stop_speaking()
        return {"result": "success"}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

