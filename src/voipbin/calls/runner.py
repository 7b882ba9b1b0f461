"""Runs a call's flow: the engine's commands become media, timers, SIP and HTTP on the live call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from voipbin.calls import records
from voipbin.calls.context import (
    AiTalkRefused,
    AiTalkRequest,
    CallContext,
    ConferenceJoinRequest,
    ConferenceRefused,
    SummaryRefused,
    SummaryRequest,
)
from voipbin.calls.detached import send_webhook
from voipbin.calls.errors import CallRequestError, RecordingError
from voipbin.calls.recording import RecordingOptions
from voipbin.calls.transcription import TranscribeSession
from voipbin.core.egress import EgressBlocked, EgressPolicy, describe_failure, egress_client
from voipbin.core.ids import new_id
from voipbin.flows import engine as fe
from voipbin.flows.actions import Action, FlowError, parse_actions
from voipbin.media.audiofile import decode_to_pcm8k
from voipbin.media.endpoint import bridge
from voipbin.sip.ua import CallState
from voipbin.speech.stt import SttError
from voipbin.speech.tts import TtsError, TtsService
from voipbin.store.models import Activeflow, Call, Flow, StorageFile

if TYPE_CHECKING:
    from voipbin.calls.live import LiveCall

log = logging.getLogger(__name__)

MAX_PLAY_BYTES = 20 << 20
# A play URL that names an uploaded storage file (``uri_download``, on any host, or just its path):
# the file is read from the data dir rather than fetched, so the URL needs no credential.
STORAGE_FILE_URL = re.compile(r"^(?:https?://[^/?#]*)?/v1\.0/storage_files/([0-9a-fA-F-]{36})/file/?(?:[?#].*)?$")
# Dials a connect's destinations as legs of the given call (its master); the legs, once placed.
DialLegs = Callable[["LiveCall", dict[str, Any], list[dict[str, Any]]], Awaitable[list["LiveCall"]]]
MEDIA_COMMANDS = (
    fe.Talk, fe.Play, fe.StartTranscribe, fe.StartRecording, fe.CollectDigits, fe.SendDigits, fe.StartTimer, fe.AiTalk,
    fe.StartSummary, fe.ConferenceJoin,
)  # fmt: skip


# Actions a flow may open with that neither play audio nor wait: a talk after them is the greeting.
_BEFORE_GREETING = frozenset({"answer", "transcribe_start", "recording_start"})


def prefetch_greeting(tts: TtsService, actions: Sequence[Action]) -> None:
    """Render the first sentence of the flow's opening ``talk`` now, while the call rings.

    The answer then hears it at once instead of after a render (65-110 ms with piper).
    A talk whose text has variables is left alone: they are only known when it runs.
    """
    for action in actions:
        if action.type == "talk":
            text = str(action.value("text"))
            if "${" not in text:
                tts.prefetch(
                    text, action.value("language"), action.value("voice_id"),
                    gender=action.value("gender"), provider=action.value("provider"),
                )
            return
        if action.type not in _BEFORE_GREETING:
            return


class FlowRunner:
    def __init__(
        self,
        ctx: CallContext,
        live: LiveCall,
        flow_id: str,
        dial_legs: DialLegs,
        *,
        nested_actions: tuple[Action, ...] | None = None,
    ) -> None:
        self.ctx = ctx
        self.live = live
        self._dial_legs = dial_legs
        self.flow_id = flow_id
        # A flow run inside another on the same call (a conference's pre_flow_id): it leaves the
        # call up when it finishes, and the outer flow goes on.
        self._nested_actions = nested_actions
        self._nested: FlowRunner | None = None
        self.id = new_id()
        self._events: asyncio.Queue[fe.Event] = asyncio.Queue()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.transcribe: TranscribeSession | None = None
        self.ended = asyncio.Event()
        self._stopped_from_api = False

    def post(self, event: fe.Event) -> None:
        self._events.put_nowait(event)
        if self._nested is not None and isinstance(event, fe.CallHungUp | fe.StopRequested):
            self._nested.post(event)

    async def stop(self) -> None:
        """End the flow now, leaving the call up for the API to drive (``POST /activeflows/{id}/stop``).

        What the flow is playing is cut off. VoIPBIN's call-manager likewise keeps a call whose
        activeflow was stopped: it finds no next action and does not hang up.
        """
        if self.ended.is_set():
            return
        self._stopped_from_api = True
        if self.live.endpoint is not None:
            self.live.endpoint.stop()
        self.post(fe.StopRequested())
        await asyncio.wait_for(self.ended.wait(), 10)

    async def run(self) -> None:
        """Run the flow to its end; a failure of the runner itself hangs the call up (``failed``)."""
        try:
            await self._run()
        except Exception:
            log.exception("the flow of call %s failed; hanging up", self.live.id)
            self.ctx.spawn(self.live.hangup("failed", "flow_failed"))

    async def _run(self) -> None:
        clock = self.ctx.clock
        actions = self.live.actions if self._nested_actions is None else self._nested_actions
        flow = fe.ActiveFlow(self.flow_id, actions, self._variables(), clock.now(), activeflow_id=self.id)
        await self._record_start()
        endpoint = self.live.endpoint
        if endpoint is not None:
            endpoint.on_dtmf = lambda digit: self.post(fe.DigitsReceived(digit))
        commands = flow.start(clock.now())
        try:
            while True:
                for command in commands:
                    await self._execute(command)
                if flow.status is fe.FlowStatus.ENDED:
                    break
                commands = flow.handle(await self._events.get(), clock.now())
        finally:
            await self._finish(flow)

    def _variables(self) -> dict[str, str]:
        live = self.live
        variables = {"voipbin.call.id": live.id, "voipbin.call.direction": live.direction}
        for side, address in (("source", live.source), ("destination", live.destination)):
            for key in ("name", "detail", "target", "target_name", "type"):
                variables[f"voipbin.call.{side}.{key}"] = str(address.get(key, ""))
        return variables

    async def _record_start(self) -> None:
        row = Activeflow(
            id=self.id,
            customer_id=self.live.customer_id,
            flow_id=self.flow_id,
            status="running",
            reference_type="call",
            reference_id=self.live.id,
            tm_create=self.ctx.clock.now(),
        )
        await records.add(self.ctx.store, row, "activeflow_created")
        if self._nested_actions is None:
            await records.change(self.ctx.store, Call, self.live.id, None, activeflow_id=self.id)

    async def _finish(self, flow: fe.ActiveFlow) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        try:
            if self.transcribe is not None:
                await self.transcribe.stop()
            snapshot = flow.snapshot()
            await records.change(
                self.ctx.store, Activeflow, self.id, "activeflow_updated",
                status="ended", current_action={}, executed_actions=snapshot["executed_actions"],
            )
        finally:
            self.ended.set()

    # -- commands ------------------------------------------------------------------------------

    async def _execute(self, command: fe.Command) -> None:
        if isinstance(command, MEDIA_COMMANDS):
            await self._answer_if_ringing()
        handler = getattr(self, f"_do_{type(command).__name__}", None)
        if handler is None:
            log.info("flow command %s is not supported here", type(command).__name__)
            token = getattr(command, "token", None)
            if token is not None:
                self.post(fe.CommandFailed(token, f"{type(command).__name__} is not supported yet"))
            return
        await handler(command)

    async def _do_ActionStarted(self, command: fe.ActionStarted) -> None:
        """The flow moved on: the call's and the activeflow's current action, in one write."""
        action = command.action.to_dict()
        async with self.ctx.store.transaction() as tx:
            await records.update(tx, Call, self.live.id, "call_updated", action=action)
            await records.update(tx, Activeflow, self.id, None, current_action=action)

    async def _do_Answer(self, command: fe.Answer) -> None:
        await self._answer_if_ringing()

    async def _answer_if_ringing(self) -> None:
        """Media needs an answered call: an incoming one is answered first, as Asterisk would."""
        leg = self.live.sip
        if leg is not None and self.live.direction == "incoming" and leg.state is CallState.RINGING:
            await leg.answer()

    async def _do_Talk(self, command: fe.Talk) -> None:
        tts = self.ctx.tts
        try:
            tts.engine_for(command.provider, command.language)  # refuse a bad provider before any audio
        except TtsError as error:
            self.post(fe.CommandFailed(command.token, str(error)))
            return
        chunks = tts.stream(command.text, command.language, command.voice_id, gender=command.gender, provider=command.provider)
        self._play(self._guarded(chunks, command.token), command.token)

    async def _do_Play(self, command: fe.Play) -> None:
        self._spawn(self._fetch_and_play(command))

    async def _fetch_and_play(self, command: fe.Play) -> None:
        egress = self.ctx.egress
        try:
            pcm = b"".join([await _fetch_audio_as_pcm8k(url, egress, self._read_storage_file) for url in command.urls])
        except (httpx.HTTPError, EgressBlocked) as error:
            self.post(fe.CommandFailed(command.token, f"cannot play: {describe_failure(error)}"))
            return
        except ValueError as error:
            self.post(fe.CommandFailed(command.token, f"cannot play: {error}"))
            return
        endpoint = self.live.endpoint
        if endpoint is None:
            return
        await self._await_playback(endpoint.play(pcm), command.token)

    async def _read_storage_file(self, file_id: str) -> bytes:
        """The bytes of a storage file of the call's own customer (another's is refused like a missing one)."""
        async with self.ctx.store.session() as session:
            row = await session.scalar(
                select(StorageFile).where(
                    StorageFile.id == file_id.lower(),
                    StorageFile.customer_id == self.live.customer_id,
                    StorageFile.tm_delete.is_(None),
                )
            )
        if row is None:
            raise ValueError(f"storage file {file_id} does not exist in this call's account")
        path = self.ctx.files.storage_file(row.customer_id, row.id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError:
            raise ValueError(f"storage file {file_id} has no content on this node") from None

    def _play(self, chunks: AsyncIterator[bytes], token: int) -> None:
        endpoint = self.live.endpoint
        if endpoint is None:
            self.post(fe.CommandFailed(token, "the call has no media"))
            return
        self._spawn(self._await_playback(endpoint.play_stream(chunks), token))

    async def _await_playback(self, playback: Any, token: int) -> None:
        await playback.done
        self.post(fe.MediaDone(token))

    async def _guarded(self, chunks: AsyncIterator[bytes], token: int) -> AsyncIterator[bytes]:
        try:
            async for pcm in chunks:
                yield pcm
        except TtsError as error:
            self.post(fe.CommandFailed(token, str(error)))

    async def _do_StopMedia(self, command: fe.StopMedia) -> None:
        if self.live.endpoint is not None:
            self.live.endpoint.stop()

    async def _do_StartTimer(self, command: fe.StartTimer) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(command.duration_s, self.post, fe.TimerFired(command.token)))

    # Hanging up outlives the flow (whose own tasks end with it), so it runs in the background.

    async def _do_Hangup(self, command: fe.Hangup) -> None:
        self.ctx.spawn(self.live.hangup(command.reason or "normal"))

    async def _do_FlowEnded(self, command: fe.FlowEnded) -> None:
        if self._nested_actions is not None and command.reason != fe.LIMIT:
            return  # the outer flow goes on
        if command.reason == fe.LIMIT:
            log.info("the flow of call %s went past a limit: %s", self.live.id, command.detail)
            self.ctx.spawn(self.live.hangup("failed", "flow_limit"))
        elif command.reason != fe.HUNG_UP and not self._stopped_from_api:
            # VoIPBIN hangs up a call whose flow has nothing more to do.
            self.ctx.spawn(self.live.hangup("normal"))

    async def _do_StartTranscribe(self, command: fe.StartTranscribe) -> None:
        if self.transcribe is not None:
            return
        try:
            await self.ensure_transcribe(command.language, command.direction, command.provider, command.interim)
        except SttError as error:
            log.info("transcription on call %s refused: %s", self.live.id, error)

    async def ensure_transcribe(
        self, language: str, direction: str = "both", provider: str = "", interim: bool = False
    ) -> TranscribeSession:
        """The call's transcription, started now if it has none (SttError if it cannot be)."""
        if self.transcribe is None:
            session = TranscribeSession(self.ctx, self.live, language, direction, provider, self.id, interim)
            await session.start()
            self.transcribe = session
        return self.transcribe

    async def _do_StopTranscribe(self, command: fe.StopTranscribe) -> None:
        if self.transcribe is not None:
            session, self.transcribe = self.transcribe, None
            await session.stop()

    async def _do_StartSummary(self, command: fe.StartSummary) -> None:
        """Ask for the summary and go on: it is made once the transcript is complete (the call ended)."""
        reference_id = command.reference_id or (self.live.id if command.reference_type == "call" else "")
        request = SummaryRequest(
            self.live.customer_id, command.reference_type, reference_id, command.language, command.on_end_flow_id, self.id
        )
        try:
            await self.ctx.ai_summary(request)
        except SummaryRefused as refusal:
            log.info("ai_summary on call %s refused: %s", self.live.id, refusal.message)

    async def _do_StartRecording(self, command: fe.StartRecording) -> None:
        try:
            await self.live.start_recording(RecordingOptions.from_action(command.options))
        except RecordingError as error:
            log.info("recording_start on call %s ignored: %s", self.live.id, error.message)

    async def _do_StopRecording(self, command: fe.StopRecording) -> None:
        await self.live.stop_recording()

    async def _do_CollectDigits(self, command: fe.CollectDigits) -> None:
        return None  # digits always reach the flow (endpoint.on_dtmf); the engine decides when it is done

    async def _do_SendDigits(self, command: fe.SendDigits) -> None:
        if self.live.endpoint is not None:
            with contextlib.suppress(Exception):
                self.live.endpoint.send_dtmf(command.digits, command.duration_ms)

    async def _do_Connect(self, command: fe.Connect) -> None:
        self._spawn(self._connect(command))

    async def _connect(self, command: fe.Connect) -> None:
        """Dial the destinations; bridge this call to the first that answers until it hangs up."""
        source = dict(command.source) if command.source else dict(self.live.source)
        try:
            legs = await self._dial_legs(self.live, source, [dict(d) for d in command.destinations])
        except CallRequestError as error:
            self.post(fe.ConnectFailed(command.token, error.message))
            return
        answered = await _first_answered(legs)
        if answered is None or answered.endpoint is None or self.live.endpoint is None:
            self.post(fe.ConnectFailed(command.token, "noanswer"))
            return
        for other in legs:
            if other is not answered:
                self.ctx.spawn(other.hangup("normal"))
        await self._answer_if_ringing()  # a caller waiting on connect is answered when the callee is
        link = bridge(self.live.endpoint, answered.endpoint)
        try:
            await answered.ended.wait()
        finally:
            link.close()
        self.post(fe.Connected(command.token))

    async def _do_SendWebhook(self, command: fe.SendWebhook) -> None:
        # A fire-and-forget webhook must outlive the flow; a sync one is part of it.
        (self._spawn if command.sync else self.ctx.spawn)(self._send_webhook(command))

    async def _send_webhook(self, command: fe.SendWebhook) -> None:
        try:
            await send_webhook(self.ctx.egress, command)
        except (httpx.HTTPError, EgressBlocked, ValueError) as error:
            log.info("webhook_send of call %s failed: %s", self.live.id, describe_failure(error))
        if command.sync:
            self.post(fe.WebhookDone(command.token))

    async def _do_AiTalk(self, command: fe.AiTalk) -> None:
        endpoint = self.live.endpoint
        if endpoint is None:
            self.post(fe.CommandFailed(command.token, "the call has no media"))
            return
        request = AiTalkRequest(
            self.live.id, self.live.customer_id, self.id, endpoint, command.ai_id, command.duration_s, command.variables
        )
        self._spawn(self._ai_talk(request, command.token))

    async def _ai_talk(self, request: AiTalkRequest, token: int) -> None:
        try:
            result = await self.ctx.ai_talk(request)
        except AiTalkRefused as refusal:
            log.info("ai_talk on call %s refused: %s", self.live.id, refusal)
            self.post(fe.CommandFailed(token, str(refusal)))
            return
        self.post(fe.AiTalkDone(token, result.variables, result.stop_flow, result.connect))

    async def _do_ConferenceJoin(self, command: fe.ConferenceJoin) -> None:
        endpoint = self.live.endpoint
        if endpoint is None:
            self.post(fe.CommandFailed(command.token, "the call has no media"))
            return
        request = ConferenceJoinRequest(
            self.live.id, self.live.customer_id, self.id, endpoint, command.conference_id, command.options
        )
        self._spawn(self._conference(request, command.token))

    async def _conference(self, request: ConferenceJoinRequest, token: int) -> None:
        """The conference's pre_flow_id on this call, its stay there, then its post_flow_id."""
        try:
            seat = await self.ctx.conference_join(request)
        except ConferenceRefused as refusal:
            log.info("conference_join on call %s refused: %s", self.live.id, refusal)
            self.post(fe.CommandFailed(token, str(refusal)))
            return
        if seat.pre_flow_id:
            await self.run_nested(seat.pre_flow_id)
        if self.live.ended.is_set():
            return
        await seat.attend()
        if seat.post_flow_id and not self.live.ended.is_set():
            await self.run_nested(seat.post_flow_id)
        self.post(fe.ConferenceLeft(token))

    async def run_nested(self, flow_id: str) -> None:
        """Run the customer's flow on this call to its end, then give the call back to this flow."""
        async with self.ctx.store.session() as session:
            flow = await session.scalar(
                select(Flow).where(Flow.id == flow_id, Flow.customer_id == self.live.customer_id, Flow.tm_delete.is_(None))
            )
        try:
            actions = parse_actions(flow.actions) if flow is not None else None
        except FlowError:
            actions = None
        if actions is None:
            log.info("flow %s of call %s cannot run: not a valid flow of its customer", flow_id, self.live.id)
            return
        nested = FlowRunner(self.ctx, self.live, flow_id, self._dial_legs, nested_actions=actions)
        endpoint = self.live.endpoint
        on_dtmf = endpoint.on_dtmf if endpoint is not None else None
        self._nested = nested
        try:
            await nested.run()
        finally:
            self._nested = None
            if endpoint is not None:
                endpoint.on_dtmf = on_dtmf

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _fetch_audio_as_pcm8k(
    url: str, egress: EgressPolicy, read_storage_file: Callable[[str], Awaitable[bytes]] | None = None
) -> bytes:
    """An audio file (WAV, MP3, ...) from a URL as 8 kHz 16-bit mono PCM, fetched within ``egress``.

    With ``read_storage_file``, a storage file URL is read through it instead of over HTTP.
    """
    storage_file = STORAGE_FILE_URL.match(url)
    if storage_file is not None and read_storage_file is not None:
        data = await read_storage_file(storage_file[1])
    else:
        buffer = bytearray()
        async with egress_client(egress, timeout=10, follow_redirects=True) as client, client.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                buffer += chunk
                if len(buffer) > MAX_PLAY_BYTES:  # stop downloading, rather than hold an endless stream
                    raise ValueError(f"{url} is larger than {MAX_PLAY_BYTES >> 20} MiB")
        data = bytes(buffer)
    try:
        return await asyncio.to_thread(decode_to_pcm8k, data, max_bytes=MAX_PLAY_BYTES)
    except ValueError as error:
        raise ValueError(f"{url}: {error}") from None


async def _first_answered(legs: list[LiveCall]) -> LiveCall | None:
    """The first leg to answer, or None once every leg has ended unanswered."""
    if not legs:
        return None
    answers = {asyncio.ensure_future(leg.answered.wait()): leg for leg in legs}
    endings = [asyncio.ensure_future(leg.ended.wait()) for leg in legs]
    try:
        while True:
            done, _ = await asyncio.wait([*answers, *endings], return_when=asyncio.FIRST_COMPLETED)
            answered = [answers[waiter] for waiter in done if waiter in answers]
            if answered:
                return answered[0]
            if all(ending.done() for ending in endings):
                return None
    finally:
        # Plain waiters, not a gather: a cancelled gather leaves an exception nobody retrieves.
        for waiter in [*answers, *endings]:
            waiter.cancel()
