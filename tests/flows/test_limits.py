"""A flow is customer input: loops, growing variables and huge values are bounded, whatever it says."""

from __future__ import annotations

from typing import Any

import pytest

from voipbin.flows.actions import MAX_DURATION_MS, FlowError, parse_actions
from voipbin.flows.engine import LIMIT, ActionStarted, ActiveFlow, FlowEnded, FlowLimits, StartTimer, TimerFired
from voipbin.flows.harness import EPOCH, FLOW_ID, run_flow

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "aaaaaaaa-0000-4000-8000-000000000002"


def ended(commands: list[Any]) -> FlowEnded:
    last = commands[-1]
    assert isinstance(last, FlowEnded), last
    return last


def test_a_goto_loop_around_a_1_ms_sleep_is_stopped_by_its_step_budget() -> None:
    loop = [
        {"id": A, "type": "sleep", "option": {"duration": 1}},
        {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 1_000_000}},
    ]

    commands = run_flow(loop, limit_s=3600)

    end = ended(commands)
    assert end.reason == LIMIT and "actions in" in end.detail
    steps = sum(isinstance(c, ActionStarted) for c in commands)
    limits = FlowLimits()
    # The budget: a burst, then steps_per_second of simulated call time (2 ms per lap here).
    assert limits.steps_burst <= steps <= limits.steps_burst * 1.2


def test_an_ivr_that_waits_like_a_person_never_meets_the_budget() -> None:
    menu = [
        {"id": A, "type": "sleep", "option": {"duration": 1000}},
        {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 3000}},
    ]

    commands = run_flow(menu, limit_s=10_000)

    assert ended(commands).reason == "finished"


def test_a_self_doubling_variable_ends_the_flow_before_it_grows_large() -> None:
    doubling = [
        {"id": A, "type": "variable_set", "option": {"key": "x", "value": "${x}${x}"}},
        {"type": "variable_set", "option": {"key": "x", "value": "${x}${x}"}},
        {"type": "sleep", "option": {"duration": 1}},
        {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 1000}},
    ]

    commands = run_flow(doubling, variables={"x": "ab"})

    end = ended(commands)
    assert end.reason == LIMIT and "variable 'x'" in end.detail
    largest = max(len(c.action.option.get("value", "")) for c in commands if isinstance(c, ActionStarted))
    assert FlowLimits().variable_chars < largest <= 2 * FlowLimits().variable_chars  # the one refused


def test_substitution_cannot_build_an_option_beyond_its_bound() -> None:
    big = "y" * FlowLimits().variable_chars
    talk = {"type": "talk", "option": {"text": "${v}" * 10}}

    end = ended(run_flow([talk], variables={"v": big}))

    assert end.reason == LIMIT and "characters" in end.detail


def test_the_number_of_variables_is_bounded() -> None:
    keys = [{"type": "variable_set", "option": {"key": f"k{i}", "value": "1"}} for i in range(FlowLimits().variable_count + 1)]

    flow = ActiveFlow(FLOW_ID, parse_actions(keys), {}, EPOCH, limits=FlowLimits(steps_burst=10_000))
    end = ended(flow.start(EPOCH))

    assert end.reason in (LIMIT, "loop_limit")


def test_the_executed_history_keeps_only_the_newest_actions() -> None:
    flow = ActiveFlow(FLOW_ID, parse_actions([
        {"id": A, "type": "sleep", "option": {"duration": 1000}},
        {"type": "goto", "option": {"target_id": A, "loop_count": 100}},
    ]), {}, EPOCH, limits=FlowLimits(history=10))
    commands = flow.start(EPOCH)
    for second in range(1, 60):
        token = next(c.token for c in reversed(commands) if isinstance(c, StartTimer))
        commands = flow.handle(TimerFired(token), EPOCH.replace(second=second))

    assert len(flow.snapshot()["executed_actions"]) == 10


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ({"type": "sleep", "option": {"duration": 10**400}}, "between 0 and"),
        ({"type": "sleep", "option": {"duration": MAX_DURATION_MS + 1}}, "between 0 and"),
        ({"type": "digits_receive", "option": {"duration": 10**20}}, "between 0 and"),
        ({"type": "recording_start", "option": {"duration": 10**9}}, "between 0 and"),
        ({"type": "talk", "option": {"text": "x" * 5001}}, "at most 5000 characters"),
        ({"type": "variable_set", "option": {"key": "k", "value": "v" * 20_000}}, "at most"),
        ({"type": "condition_variable", "option": {"value_type": "number", "value_number": 10**400}}, "between"),
        ({"type": "play", "option": {"stream_urls": ["http://example.com/a.wav"] * 11}}, "at most 10 entries"),
        ({"type": "goto", "option": {"target_id": A, "loop_count": 10**12}}, "between 0 and"),
    ],
)
def test_options_beyond_their_range_are_refused_when_the_flow_is_stored(action: dict[str, Any], words: str) -> None:
    with pytest.raises(FlowError) as refused:
        parse_actions([{"id": A, **action}])

    assert words in refused.value.message
