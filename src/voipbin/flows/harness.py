"""Run a flow against a simulated call in simulated time, so a flow test fits on one line.

The harness plays the call layer: it fires every StartTimer when its time comes, lets a
*script* answer the other commands (by default media plays for a second, connects bridge
for a second, an AI talks for a second, sync webhooks are delivered at once), and injects any extra events at given
simulated times, such as key presses or the caller hanging up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from voipbin.flows.actions import Action, parse_actions
from voipbin.flows.engine import (
    ActiveFlow,
    AiTalk,
    AiTalkDone,
    Command,
    Connect,
    Connected,
    Event,
    FlowStatus,
    MediaDone,
    Play,
    SendWebhook,
    StartTimer,
    Talk,
    TimerFired,
    WebhookDone,
)

__all__ = ["EPOCH", "FLOW_ID", "Script", "autocomplete", "run_flow"]

EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
"""Simulated second 0."""

FLOW_ID: Final = "6a1b0b6e-0000-4000-8000-000000000001"

Script = Callable[[Command], Iterable[tuple[float, Event]]]
"""Given a command the flow issued, the events the call answers with, each after a delay in seconds."""


def autocomplete(media_s: float = 1.0) -> Script:
    """A cooperative call: every talk and play lasts ``media_s``, so does every bridge."""

    def react(command: Command) -> list[tuple[float, Event]]:
        match command:
            case Talk(token=token) | Play(token=token):
                return [(media_s, MediaDone(token))]
            case Connect(token=token):
                return [(media_s, Connected(token))]
            case SendWebhook(sync=True, token=token):
                return [(0.0, WebhookDone(token))]
            case AiTalk(token=token):
                return [(media_s, AiTalkDone(token))]
        return []

    return react


def run_flow(
    actions: Sequence[Mapping[str, Any]] | Sequence[Action],
    script: Script | None = None,
    *,
    at: Iterable[tuple[float, Event]] = (),
    variables: Mapping[str, str] | None = None,
    limit_s: float = 86_400.0,
) -> list[Command]:
    """Every command the flow issues until it ends, nothing is left to happen, or ``limit_s`` passes.

    ``actions`` may be raw JSON (validated here) or parsed actions; ``at`` holds events to
    inject at absolute simulated seconds. ``script`` defaults to :func:`autocomplete`.
    """
    given = [action for action in actions if isinstance(action, Action)]
    parsed = given if len(given) == len(actions) else parse_actions(actions)
    react = script or autocomplete()
    flow = ActiveFlow(FLOW_ID, parsed, variables or {}, EPOCH)
    order = itertools.count()
    pending: list[tuple[float, int, Event]] = [(when, next(order), event) for when, event in at]
    heapq.heapify(pending)
    issued: list[Command] = []

    def follow(now_s: float, commands: list[Command]) -> None:
        issued.extend(commands)
        for command in commands:
            if isinstance(command, StartTimer):
                heapq.heappush(pending, (now_s + command.duration_s, next(order), TimerFired(command.token)))
            for delay, event in react(command):
                heapq.heappush(pending, (now_s + delay, next(order), event))

    follow(0.0, flow.start(EPOCH))
    while pending and flow.status is FlowStatus.RUNNING:
        now_s, _, event = heapq.heappop(pending)
        if now_s > limit_s:
            break
        follow(now_s, flow.handle(event, EPOCH + timedelta(seconds=now_s)))
    return issued
