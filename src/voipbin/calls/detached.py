"""Flows that run without a call: an AI summary's ``on_end_flow_id``, for one.

The engine is the same as a call's; what needs a call (talk, play, digits, connect, ai_talk)
fails and the flow moves on, as VoIPBIN's flow-manager skips an action it cannot run. What is
left (variables, branches, sleeps, webhooks) is what such a flow is for: telling a system
elsewhere. A flow is customer input, so each runs for at most ``MAX_LIFE_S`` and a customer has
at most ``MAX_PER_CUSTOMER`` of them running at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Final

import httpx

from voipbin.calls import records
from voipbin.calls.context import CallContext
from voipbin.core.egress import EgressBlocked, EgressPolicy, describe_failure, egress_client
from voipbin.core.ids import new_id
from voipbin.flows import engine as fe
from voipbin.flows.actions import Action
from voipbin.store.models import Activeflow

log = logging.getLogger(__name__)

MAX_LIFE_S: Final = 3600.0
MAX_PER_CUSTOMER: Final = 20
NO_CALL: Final = "this flow runs without a call"


class TooManyFlows(Exception):
    """The customer already has ``MAX_PER_CUSTOMER`` flows running without a call."""


async def send_webhook(egress: EgressPolicy, command: fe.SendWebhook) -> None:
    """A flow's ``webhook_send``, within the egress policy; raises httpx.HTTPError, EgressBlocked, ValueError."""
    async with egress_client(egress, timeout=5) as client:
        await client.request(
            command.method or "POST",
            command.uri,
            content=command.data.encode() if isinstance(command.data, str) else b"",
            headers={"Content-Type": command.data_type or "application/json"},
        )


class DetachedFlowRunner:
    def __init__(
        self,
        ctx: CallContext,
        customer_id: str,
        flow_id: str,
        actions: Sequence[Action],
        variables: Mapping[str, str],
        reference: tuple[str, str],
    ) -> None:
        self.ctx = ctx
        self.customer_id = customer_id
        self.flow_id = flow_id
        self.id = new_id()
        self._actions = tuple(actions)
        self._variables = dict(variables)
        self._reference_type, self._reference_id = reference
        self._events: asyncio.Queue[fe.Event] = asyncio.Queue()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.ended = asyncio.Event()

    def post(self, event: fe.Event) -> None:
        self._events.put_nowait(event)

    async def stop(self) -> None:
        """End the flow now (``POST /activeflows/{id}/stop``, or the platform stopping)."""
        if not self.ended.is_set():
            self.post(fe.StopRequested())
            await asyncio.wait_for(self.ended.wait(), 10)

    async def record_start(self) -> None:
        row = Activeflow(
            id=self.id, customer_id=self.customer_id, flow_id=self.flow_id, status="running",
            reference_type=self._reference_type, reference_id=self._reference_id, tm_create=self.ctx.clock.now(),
        )  # fmt: skip
        await records.add(self.ctx.store, row, "activeflow_created")

    async def run(self) -> None:
        clock = self.ctx.clock
        flow = fe.ActiveFlow(self.flow_id, self._actions, self._variables, clock.now(), activeflow_id=self.id)
        life = asyncio.get_running_loop().call_later(MAX_LIFE_S, self.post, fe.StopRequested())
        try:
            commands = flow.start(clock.now())
            while True:
                for command in commands:
                    await self._execute(command)
                if flow.status is fe.FlowStatus.ENDED:
                    break
                commands = flow.handle(await self._events.get(), clock.now())
        except Exception:
            log.exception("flow %s of customer %s (without a call) failed", self.flow_id, self.customer_id)
        finally:
            life.cancel()
            await self._finish(flow)

    async def _finish(self, flow: fe.ActiveFlow) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        try:
            await records.change(
                self.ctx.store, Activeflow, self.id, "activeflow_updated",
                status="ended", current_action={}, executed_actions=flow.snapshot()["executed_actions"],
            )  # fmt: skip
        finally:
            self.ended.set()

    async def _execute(self, command: fe.Command) -> None:
        match command:
            case fe.ActionStarted():
                await records.change(self.ctx.store, Activeflow, self.id, None, current_action=command.action.to_dict())
            case fe.StartTimer():
                loop = asyncio.get_running_loop()
                self._timers.append(loop.call_later(command.duration_s, self.post, fe.TimerFired(command.token)))
            case fe.SendWebhook():
                self._spawn(self._send_webhook(command))
            case fe.Connect():
                self.post(fe.ConnectFailed(command.token, NO_CALL))
            case fe.FlowEnded() | fe.Answer() | fe.Hangup() | fe.StopMedia():
                pass
            case _:
                if (token := getattr(command, "token", None)) is not None:
                    self.post(fe.CommandFailed(token, NO_CALL))

    async def _send_webhook(self, command: fe.SendWebhook) -> None:
        try:
            await send_webhook(self.ctx.egress, command)
        except (httpx.HTTPError, EgressBlocked, ValueError) as error:
            log.info("webhook_send of activeflow %s failed: %s", self.id, describe_failure(error))
        if command.sync:
            self.post(fe.WebhookDone(command.token))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class DetachedFlows:
    """The flows running without a call on this node."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.running: dict[str, DetachedFlowRunner] = {}

    async def start(
        self,
        customer_id: str,
        flow_id: str,
        actions: Sequence[Action],
        variables: Mapping[str, str],
        reference: tuple[str, str],
    ) -> str:
        """Start the flow in the background; its activeflow id. TooManyFlows past the customer's bound."""
        if sum(1 for r in self.running.values() if r.customer_id == customer_id) >= MAX_PER_CUSTOMER:
            raise TooManyFlows(f"customer {customer_id} already runs {MAX_PER_CUSTOMER} flows without a call")
        runner = DetachedFlowRunner(self.ctx, customer_id, flow_id, actions, variables, reference)
        await runner.record_start()
        self.running[runner.id] = runner
        self.ctx.spawn(self._run(runner))
        return runner.id

    async def _run(self, runner: DetachedFlowRunner) -> None:
        try:
            await runner.run()
        finally:
            self.running.pop(runner.id, None)

    async def stop_all(self) -> None:
        await asyncio.gather(*(runner.stop() for runner in list(self.running.values())), return_exceptions=True)
