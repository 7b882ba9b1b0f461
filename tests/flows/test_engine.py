"""The flow engine: VoIPBIN's action semantics, driven by events, checked command by command."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from voipbin.flows.actions import NIL_ID, Action, FlowError, parse_actions
from voipbin.flows.engine import (
    CALL_HUNG_UP,
    DIGITS_VARIABLE,
    FINISHED,
    HUNG_UP,
    LIMIT,
    LOOP_LIMIT,
    MAX_IMMEDIATE_STEPS,
    STOPPED,
    ActionStarted,
    ActiveFlow,
    AiTalk,
    AiTalkDone,
    Answer,
    CallHungUp,
    CollectDigits,
    Command,
    CommandFailed,
    ConferenceJoin,
    ConferenceLeft,
    Connect,
    Connected,
    ConnectFailed,
    DigitsReceived,
    FlowEnded,
    FlowStatus,
    Hangup,
    MediaDone,
    Play,
    SendDigits,
    SendWebhook,
    StartRecording,
    StartSummary,
    StartTimer,
    StartTranscribe,
    StopMedia,
    StopRecording,
    StopRequested,
    StopTranscribe,
    Talk,
    TimerFired,
    WebhookDone,
)
from voipbin.flows.harness import EPOCH, FLOW_ID, run_flow

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "aaaaaaaa-0000-4000-8000-000000000002"
C = "aaaaaaaa-0000-4000-8000-000000000003"
D = "aaaaaaaa-0000-4000-8000-000000000004"
LATER = EPOCH + timedelta(seconds=1)


def talk(text: str, id: str | None = None, **option: Any) -> dict[str, Any]:
    return {"id": id, "type": "talk", "option": {"text": text, **option}}


def flow(actions: list[dict[str, Any]], variables: dict[str, str] | None = None) -> ActiveFlow:
    return ActiveFlow(FLOW_ID, parse_actions(actions), variables or {}, EPOCH, activeflow_id=D)


def spoken(commands: list[Command]) -> list[str]:
    return [c.text for c in commands if isinstance(c, Talk)]


def without_started(commands: list[Command]) -> list[Command]:
    return [c for c in commands if not isinstance(c, ActionStarted)]


def only(commands: list[Command], kind: type) -> Any:
    (found,) = [c for c in commands if isinstance(c, kind)]
    return found


# --- the quickstart's two calls ---------------------------------------------


def test_quickstart_talk_call() -> None:
    actions = parse_actions(
        [
            {
                "type": "talk",
                "option": {"text": "Hello. This is a VoIPBIN test call. Thank you, bye.", "language": "en-US"},
            }
        ]
    )
    active = ActiveFlow(FLOW_ID, actions, {}, EPOCH)
    assert active.start(EPOCH) == [
        ActionStarted(actions[0]),
        Talk("Hello. This is a VoIPBIN test call. Thank you, bye.", "en-US", "", "", "", "", token=1),
    ]
    assert active.handle(MediaDone(1), LATER) == [FlowEnded(FINISHED)]
    assert active.status is FlowStatus.ENDED


def test_quickstart_realtime_voice_call() -> None:
    text = (
        "Hello. This is the VoIPBIN real-time voice interaction test. You can speak now and your "
        "speech will be transcribed. The call will stay open for you to test the Speaking API."
    )
    actions = parse_actions(
        [
            {"type": "transcribe_start", "option": {"language": "en-US"}},
            {"type": "talk", "option": {"text": text, "gender": "female", "language": "en-US"}},
            {"type": "sleep", "option": {"duration": 600000}},
        ]
    )
    active = ActiveFlow(FLOW_ID, actions, {}, EPOCH)
    assert active.start(EPOCH) == [
        ActionStarted(actions[0]),
        StartTranscribe("en-US", "both", ""),
        ActionStarted(actions[1]),
        Talk(text, "en-US", "female", "", "", "", token=2),
    ]
    assert active.handle(MediaDone(2), LATER) == [ActionStarted(actions[2]), StartTimer(600.0, token=3)]
    assert active.handle(TimerFired(3), LATER) == [FlowEnded(FINISHED)]
    assert run_flow(actions) == [
        ActionStarted(actions[0]),
        StartTranscribe("en-US", "both", ""),
        ActionStarted(actions[1]),
        Talk(text, "en-US", "female", "", "", "", token=2),
        ActionStarted(actions[2]),
        StartTimer(600.0, token=3),
        FlowEnded(FINISHED),
    ]


# --- order and jumps ------------------------------------------------------------


def test_empty_flow_finishes_at_once() -> None:
    assert flow([]).start(EPOCH) == [FlowEnded(FINISHED)]


def test_next_id_overrides_array_order() -> None:
    commands = run_flow([talk("one") | {"next_id": C}, talk("skipped"), talk("three", C)])
    assert spoken(commands) == ["one", "three"]


def test_goto_jumps_loop_count_times_then_falls_through() -> None:
    commands = run_flow([talk("menu", A), {"type": "goto", "option": {"target_id": A, "loop_count": 2}}, talk("bye")])
    assert spoken(commands) == ["menu", "menu", "menu", "bye"]
    assert commands[-1] == FlowEnded(FINISHED)


def test_goto_without_loop_count_never_jumps_as_in_voipbin() -> None:
    assert spoken(run_flow([talk("menu", A), {"type": "goto", "option": {"target_id": A}}, talk("bye")])) == [
        "menu",
        "bye",
    ]


def test_each_goto_counts_its_own_loops() -> None:
    actions = [
        talk("a", A),
        {"type": "goto", "option": {"target_id": A, "loop_count": 1}},
        talk("b", B),
        {"type": "goto", "option": {"target_id": B, "loop_count": 2}},
    ]
    assert spoken(run_flow(actions)) == ["a", "a", "b", "b", "b"]


def test_jump_loop_without_a_wait_is_cut_off() -> None:
    commands = run_flow([{"id": A, "type": "goto", "option": {"target_id": A, "loop_count": 10**6}}, talk("never")])
    assert sum(isinstance(c, ActionStarted) for c in commands) == MAX_IMMEDIATE_STEPS
    assert commands[-1] == FlowEnded(
        LOOP_LIMIT, f"{MAX_IMMEDIATE_STEPS} actions ran without waiting for the call; stopped before actions[0] goto"
    )


def test_next_id_cycle_is_cut_off() -> None:
    active = flow(
        [
            {"id": A, "next_id": B, "type": "variable_set", "option": {"key": "x", "value": "1"}},
            {"id": B, "next_id": A, "type": "variable_set", "option": {"key": "y", "value": "2"}},
        ]
    )
    assert active.start(EPOCH)[-1].reason == LOOP_LIMIT  # type: ignore[union-attr]
    assert active.end_reason == LOOP_LIMIT


def test_a_wait_in_the_loop_resets_the_step_budget() -> None:
    actions = [talk("again", A), {"type": "goto", "option": {"target_id": A, "loop_count": 1500}}]
    assert len(spoken(run_flow(actions))) == 1501


# --- branch and condition_variable -------------------------------------------------

MENU = [
    talk("press 1 for sales, 2 for support"),
    {"type": "digits_receive", "option": {"duration": 5000, "length": 1}},
    {"type": "branch", "option": {"target_ids": {"1": A, "2": B}, "default_target_id": C}},
    talk("sales", A),
    {"type": "stop"},
    talk("support", B),
    {"type": "stop"},
    talk("sorry", C),
]


@pytest.mark.parametrize(
    ("press_at", "digits", "heard"),
    [
        (2.0, "1", "sales"),
        (2.0, "2", "support"),
        (2.0, "9", "sorry"),
        (0.5, "2", "support"),  # pressed during the prompt: kept for the digits_receive
        (None, "", "sorry"),  # nothing pressed: the timeout leads to the default
    ],
)
def test_branch_on_digits(press_at: float | None, digits: str, heard: str) -> None:
    at = [(press_at, DigitsReceived(digits))] if press_at is not None else []
    assert spoken(run_flow(MENU, at=at))[1:] == [heard]


def test_branch_clears_the_variable_and_goes_on_without_a_default() -> None:
    active = flow(
        [
            {"type": "branch", "option": {"variable": "choice", "target_ids": {"x": A}}},
            talk("no match"),
            talk("matched", A),
        ],
        {"choice": "y"},
    )
    assert spoken(active.start(EPOCH)) == ["no match"]
    assert active.variables["choice"] == ""


def condition(option: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "condition_variable", "option": {"variable": "v", "false_target_id": A, **option}},
        talk("true"),
        {"type": "stop"},
        talk("false", A),
    ]


@pytest.mark.parametrize(
    ("value", "option", "holds"),
    [
        ("abc", {"condition": "==", "value_string": "abc"}, True),
        ("abc", {"condition": "==", "value_string": "abd"}, False),
        ("abc", {"condition": "!=", "value_string": "abd"}, True),
        ("abc", {"condition": ">", "value_string": "abb"}, True),
        ("abc", {"condition": ">=", "value_string": "abc"}, True),
        ("abc", {"condition": "<", "value_string": "abc"}, False),
        ("abc", {"condition": "<=", "value_string": "abd"}, True),
        ("", {"value_string": ""}, True),  # defaults: == on strings
        ("10", {"condition": "==", "value_type": "number", "value_number": 10}, True),
        ("10", {"condition": "!=", "value_type": "number", "value_number": 10.5}, True),
        ("10", {"condition": ">", "value_type": "number", "value_number": 9}, True),
        ("9", {"condition": ">", "value_type": "number", "value_number": 10}, False),  # numbers, not strings
        ("2.5", {"condition": ">=", "value_type": "number", "value_number": 2.5}, True),
        ("-1", {"condition": "<", "value_type": "number", "value_number": 0}, True),
        ("3", {"condition": "<=", "value_type": "number", "value_number": 2}, False),
        ("ten", {"condition": "!=", "value_type": "number", "value_number": 10}, False),  # not a number: false
        ("1234", {"condition": "==", "value_type": "length", "value_length": 4}, True),
        ("1234", {"condition": "!=", "value_type": "length", "value_length": 4}, False),
        ("1234", {"condition": ">", "value_type": "length", "value_length": 3}, True),
        ("12", {"condition": ">=", "value_type": "length", "value_length": 3}, False),
        ("", {"condition": "<", "value_type": "length", "value_length": 1}, True),
        ("123", {"condition": "<=", "value_type": "length", "value_length": 3}, True),
    ],
)
def test_condition_variable(value: str, option: dict[str, Any], holds: bool) -> None:
    assert spoken(flow(condition(option), {"v": value}).start(EPOCH)) == ["true" if holds else "false"]


def test_condition_variable_accepts_a_template_as_well_as_a_name() -> None:
    actions = condition({"variable": "${a}-${b}", "value_string": "1-2"})
    assert spoken(flow(actions, {"a": "1", "b": "2"}).start(EPOCH)) == ["true"]
    actions = condition({"variable": "${voipbin.call.digits}", "value_string": "5"})
    assert spoken(flow(actions, {DIGITS_VARIABLE: "5"}).start(EPOCH)) == ["true"]


def test_condition_without_false_target_goes_on() -> None:
    active = flow([{"type": "condition_variable", "option": {"variable": "v", "value_string": "x"}}, talk("next")])
    assert spoken(active.start(EPOCH)) == ["next"]


# --- variables ---------------------------------------------------------------------


def test_variables_are_substituted_when_the_action_runs() -> None:
    commands = run_flow(
        [
            talk("Hello ${voipbin.call.source.target}, ${missing}."),
            {"type": "variable_set", "option": {"key": "greeting", "value": "hi ${voipbin.call.id}"}},
            talk("${greeting}!"),
            {"type": "play", "option": {"stream_urls": ["https://media/${greeting}.wav"]}},
            {
                "type": "webhook_send",
                "option": {
                    "uri": "https://hooks/${voipbin.call.id}",
                    "data": '{"flow": "${voipbin.activeflow.flow_id}"}',
                },
            },
        ],
        variables={"voipbin.call.source.target": "+15551234567", "voipbin.call.id": "c1"},
    )
    assert spoken(commands) == ["Hello +15551234567, .", "hi c1!"]
    assert only(commands, Play).urls == ("https://media/hi c1.wav",)
    hook = only(commands, SendWebhook)
    assert (hook.uri, hook.data) == ("https://hooks/c1", f'{{"flow": "{FLOW_ID}"}}')


def test_started_action_carries_substituted_options_and_history_keeps_them() -> None:
    active = flow([talk("${name} on ${voipbin.activeflow.id}")], {"name": "Ann"})
    started = active.start(EPOCH)[0]
    assert isinstance(started, ActionStarted) and started.action.option == {"text": f"Ann on {D}"}
    assert active.executed_actions[0].option == {"text": f"Ann on {D}"}
    assert active.variables["voipbin.activeflow.id"] == D
    assert active.variables["voipbin.activeflow.flow_id"] == FLOW_ID


# --- digits ------------------------------------------------------------------------


def receive(**option: Any) -> ActiveFlow:
    active = flow(
        [{"type": "digits_receive", "option": {"duration": 5000, **option}}, talk("got ${voipbin.call.digits}")]
    )
    assert without_started(active.start(EPOCH)) == [
        CollectDigits(option.get("length", 0), option.get("key", ""), 5.0),
        StartTimer(5.0, token=1),
    ]
    return active


def test_digits_receive_by_length() -> None:
    active = receive(length=3)
    assert active.handle(DigitsReceived("1"), LATER) == []
    assert spoken(active.handle(DigitsReceived("23"), LATER)) == ["got 123"]


def test_digits_receive_by_key_keeps_the_key() -> None:
    active = receive(length=10, key="#*")
    assert active.handle(DigitsReceived("12"), LATER) == []
    assert spoken(active.handle(DigitsReceived("*"), LATER)) == ["got 12*"]


def test_digits_receive_by_timeout() -> None:
    active = receive(length=4)
    active.handle(DigitsReceived("4"), LATER)
    assert spoken(active.handle(TimerFired(1), LATER)) == ["got 4"]


def test_digits_receive_done_by_stored_digits_does_not_wait() -> None:
    active = flow(
        [{"type": "digits_receive", "option": {"duration": 5000, "length": 1}}, talk("${voipbin.call.digits}")],
        {DIGITS_VARIABLE: "7"},
    )
    assert spoken(active.start(EPOCH)) == ["7"]


def test_digits_receive_with_zero_duration_does_not_wait() -> None:
    active = flow([{"type": "digits_receive", "option": {"length": 4}}, talk("next")])
    assert spoken(active.start(EPOCH)) == ["next"]


def test_key_outside_digits_receive_replaces_stored_digits() -> None:
    active = flow([{"type": "sleep", "option": {"duration": 1000}}])
    active.start(EPOCH)
    active.handle(DigitsReceived("12"), LATER)
    assert active.variables[DIGITS_VARIABLE] == "2"


def test_talk_with_digits_handle_next_is_cut_short_by_a_key() -> None:
    active = flow([talk("long prompt", digits_handle="next"), talk("after")])
    active.start(EPOCH)
    commands = active.handle(DigitsReceived("5"), LATER)
    assert commands[0] == StopMedia(1)
    assert spoken(commands) == ["after"]
    assert active.variables[DIGITS_VARIABLE] == "5"
    assert active.handle(MediaDone(1), LATER) == []  # the cut prompt's end is stale
    assert active.handle(MediaDone(2), LATER) == [FlowEnded(FINISHED)]


def test_talk_without_digits_handle_plays_on() -> None:
    active = flow([talk("prompt"), talk("after")])
    active.start(EPOCH)
    assert active.handle(DigitsReceived("5"), LATER) == []
    assert spoken(active.handle(MediaDone(1), LATER)) == ["after"]


def test_digits_send_waits_for_its_tones() -> None:
    commands = flow([{"type": "digits_send", "option": {"digits": "12#", "duration": 200, "interval": 50}}]).start(
        EPOCH
    )
    assert without_started(commands) == [SendDigits("12#", 200, 50), StartTimer(0.7, token=1)]


# --- waiting and stale events ---------------------------------------------------------


def test_stale_or_foreign_timer_is_ignored() -> None:
    active = flow([{"type": "sleep", "option": {"duration": 1000}}, {"type": "sleep", "option": {"duration": 2000}}])
    active.start(EPOCH)
    assert active.handle(TimerFired(7), LATER) == []
    assert without_started(active.handle(TimerFired(1), LATER)) == [StartTimer(2.0, token=2)]
    assert active.handle(TimerFired(1), LATER) == []  # the first sleep's timer again
    assert active.handle(MediaDone(2), LATER) == []  # right token, wrong kind of event
    assert active.handle(TimerFired(2), LATER) == [FlowEnded(FINISHED)]


def test_sleep_zero_does_not_wait() -> None:
    assert spoken(flow([{"type": "sleep", "option": {"duration": 0}}, talk("next")]).start(EPOCH)) == ["next"]


def test_async_talk_and_webhook_do_not_wait_but_sync_webhook_does() -> None:
    active = flow(
        [
            {"type": "talk", "option": {"text": "background", "async": True}},
            {"type": "webhook_send", "option": {"uri": "https://a"}},
            {"type": "webhook_send", "option": {"uri": "https://b", "method": "PUT", "sync": True}},
            talk("after"),
        ]
    )
    assert without_started(active.start(EPOCH)) == [
        Talk("background", "", "", "", "", "", token=1),
        SendWebhook("https://a", "POST", "", "", False, token=2),
        SendWebhook("https://b", "PUT", "", "", True, token=3),
    ]
    assert spoken(active.handle(WebhookDone(3), LATER)) == ["after"]


def test_command_failure_moves_on() -> None:
    active = flow([{"type": "play", "option": {"stream_urls": ["https://x/a.wav", "https://x/b.wav"]}}, talk("next")])
    assert without_started(active.start(EPOCH)) == [Play(("https://x/a.wav", "https://x/b.wav"), token=1)]
    assert spoken(active.handle(CommandFailed(1, "404 from media server"), LATER)) == ["next"]


def test_immediate_actions_issue_their_commands_and_go_on() -> None:
    commands = flow(
        [
            {"type": "answer"},
            {"type": "recording_start", "option": {"end_of_key": "#", "beep_start": True}},
            {"type": "recording_stop"},
            {"type": "transcribe_start", "option": {"language": "ko-KR", "direction": "in", "provider": "gcp"}},
            {"type": "transcribe_stop"},
        ]
    ).start(EPOCH)
    assert without_started(commands) == [
        Answer(),
        StartRecording({"format": "wav", "end_of_silence": 0, "end_of_key": "#", "duration": 0, "beep_start": True}),
        StopRecording(),
        StartTranscribe("ko-KR", "in", "gcp"),
        StopTranscribe(),
        FlowEnded(FINISHED),
    ]


# --- connect ---------------------------------------------------------------------------

DESTINATION = {"type": "tel", "target": "+15557654321"}


def connect(**option: Any) -> ActiveFlow:
    active = flow([{"type": "connect", "option": {"destinations": [DESTINATION], **option}}, talk("after")])
    (command,) = without_started(active.start(EPOCH))
    assert command == Connect(
        {}, (DESTINATION,), {"early_media": False, "relay_reason": option.get("relay_reason", False)}, token=1
    )
    return active


def test_connect_waits_for_the_bridge_then_goes_on() -> None:
    active = connect()
    assert spoken(active.handle(Connected(1), LATER)) == ["after"]


def test_connect_failure_goes_on_unless_relaying_the_reason() -> None:
    assert spoken(connect().handle(ConnectFailed(1, "busy"), LATER)) == ["after"]
    assert connect(relay_reason=True).handle(ConnectFailed(1, "busy"), LATER) == [Hangup("busy"), FlowEnded(HUNG_UP)]
    assert connect(relay_reason=True).handle(Connected(1), LATER) == [Hangup("normal"), FlowEnded(HUNG_UP)]


# --- ai_talk ----------------------------------------------------------------------------

AI = "bbbbbbbb-0000-4000-8000-000000000001"


def ai_talk(**option: Any) -> ActiveFlow:
    active = flow([{"type": "ai_talk", "option": {"assistance_id": AI, **option}}, talk("after")], {"x": "1"})
    assert only(active.start(EPOCH), AiTalk) == AiTalk(
        AI, float(option.get("duration", 0)), {"x": "1", "voipbin.activeflow.id": D, "voipbin.activeflow.flow_id": FLOW_ID}, 1
    )
    return active


def test_ai_talk_waits_for_the_agent_then_goes_on_with_the_variables_it_set() -> None:
    active = ai_talk(duration=300)
    assert active.handle(MediaDone(1), LATER) == []  # not what ends an ai_talk
    assert active.handle(AiTalkDone(2), LATER) == []  # a stale token
    assert spoken(active.handle(AiTalkDone(1, {"order.size": "large"}), LATER)) == ["after"]
    assert active.variables["order.size"] == "large"


def test_ai_talk_accepts_voipbins_legacy_ai_id() -> None:
    active = flow([{"type": "ai_talk", "option": {"ai_id": AI}}])
    assert only(active.start(EPOCH), AiTalk).ai_id == AI


def test_ai_talk_stop_flow_ends_the_flow() -> None:
    assert ai_talk().handle(AiTalkDone(1, stop_flow=True), LATER) == [FlowEnded(STOPPED)]


def test_ai_talk_transfer_connects_then_goes_on_after_the_bridge_or_a_failure() -> None:
    for outcome in (Connected, lambda token: ConnectFailed(token, "noanswer")):
        active = ai_talk()
        (connect,) = active.handle(AiTalkDone(1, connect=(DESTINATION,)), LATER)
        assert connect == Connect({}, (DESTINATION,), {"early_media": False, "relay_reason": False}, token=2)
        assert active.handle(Connected(1), LATER) == []  # the ai_talk's own token is spent
        assert spoken(active.handle(outcome(2), LATER)) == ["after"]


def test_ai_talk_variables_are_bounded_like_any_other() -> None:
    active = ai_talk()
    done = AiTalkDone(1, {"big": "x" * (active.limits.variable_chars + 1)})
    assert only(active.handle(done, LATER), FlowEnded).reason == LIMIT


def test_ai_talk_failure_moves_on() -> None:
    assert spoken(ai_talk().handle(CommandFailed(1, "no such AI"), LATER)) == ["after"]


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ({}, "option 'assistance_id' is required"),
        ({"assistance_id": AI, "assistance_type": "team"}, "option 'assistance_type' must be one of"),
        ({"assistance_id": AI, "duration": -1}, "option 'duration' must be between 0 and"),
    ],
)
def test_ai_talk_options_are_checked_when_stored(option: dict[str, Any], problem: str) -> None:
    with pytest.raises(FlowError, match=problem):
        parse_actions([{"type": "ai_talk", "option": option}])


# --- ending -----------------------------------------------------------------------------


def test_hangup_mid_flow() -> None:
    commands = run_flow([talk("bye"), {"type": "hangup", "option": {"reason": "busy"}}, talk("never")])
    assert without_started(commands)[1:] == [Hangup("busy"), FlowEnded(HUNG_UP)]
    assert without_started(run_flow([{"type": "hangup"}])) == [Hangup("normal"), FlowEnded(HUNG_UP)]


def test_call_hung_up_during_talk_ends_silently() -> None:
    active = flow([talk("hello"), talk("never")])
    active.start(EPOCH)
    assert active.handle(CallHungUp(), LATER) == []
    assert (active.status, active.end_reason) == (FlowStatus.ENDED, CALL_HUNG_UP)
    assert active.handle(MediaDone(1), LATER) == []
    assert run_flow([talk("hello"), talk("never")], at=[(0.5, CallHungUp())])[-1] == Talk(
        "hello", "", "", "", "", "", token=1
    )


def test_stop_action_and_stop_request() -> None:
    assert spoken(run_flow([talk("a"), {"type": "stop"}, talk("b")])) == ["a"]
    assert run_flow([{"type": "stop"}])[-1] == FlowEnded(STOPPED)
    active = flow([{"type": "sleep", "option": {"duration": 60000}}])
    active.start(EPOCH)
    assert active.handle(StopRequested(), LATER) == [FlowEnded(STOPPED)]
    assert active.handle(TimerFired(1), LATER) == []


def test_digits_after_the_flow_ended_are_ignored() -> None:
    active = flow([talk("x", digits_handle="next"), {"type": "hangup"}])
    active.start(EPOCH)
    assert without_started(active.handle(DigitsReceived("12"), LATER)) == [
        StopMedia(1),
        Hangup("normal"),
        FlowEnded(HUNG_UP),
    ]
    assert active.variables[DIGITS_VARIABLE] == "1"


def test_start_twice_is_a_bug() -> None:
    active = flow([])
    active.start(EPOCH)
    with pytest.raises(RuntimeError):
        active.start(EPOCH)


# --- snapshot -------------------------------------------------------------------------------


def test_snapshot_is_voipbins_activeflow_shape() -> None:
    actions = [talk("hi ${name}", A), {"id": B, "type": "answer"}]
    active = flow(actions, {"name": "Ann"})
    assert active.snapshot()["current_action"] == {"id": NIL_ID, "next_id": NIL_ID}
    active.start(EPOCH)
    assert active.snapshot() == {
        "id": D,
        "flow_id": FLOW_ID,
        "status": "running",
        "current_action": {"id": A, "next_id": NIL_ID, "type": "talk", "option": {"text": "hi Ann"}},
        "executed_actions": [{"id": A, "next_id": NIL_ID, "type": "talk", "option": {"text": "hi Ann"}}],
        "variables": {"name": "Ann", "voipbin.activeflow.id": D, "voipbin.activeflow.flow_id": FLOW_ID},
        "tm_create": "2026-01-01T00:00:00.000000Z",
        "tm_update": "2026-01-01T00:00:00.000000Z",
    }
    active.handle(MediaDone(1), LATER)
    snapshot = active.snapshot()
    assert snapshot["status"] == "ended"
    assert snapshot["current_action"] == {"id": "00000000-0000-0000-0000-000000000002", "next_id": NIL_ID}
    assert [a["id"] for a in snapshot["executed_actions"]] == [A, B]
    assert snapshot["tm_update"] == "2026-01-01T00:00:01.000000Z"


def test_actions_keep_their_ids_across_runs() -> None:
    actions = parse_actions([{"type": "answer"}, talk("x")])
    first = [c.action.id for c in run_flow(actions) if isinstance(c, ActionStarted)]
    second = [c.action.id for c in run_flow(actions) if isinstance(c, ActionStarted)]
    assert first == second == [a.id for a in actions]
    assert all(isinstance(a, Action) for a in actions)


# --- ai_summary ---------------------------------------------------------------


def test_ai_summary_asks_for_the_summary_of_the_call_and_goes_on_at_once() -> None:
    active = flow([
        {"type": "ai_summary", "option": {"on_end_flow_id": A, "language": "de-DE"}},
        talk("Thanks for calling."),
    ])  # fmt: skip
    commands = without_started(active.start(EPOCH))
    assert commands[0] == StartSummary("call", "", "de-DE", A)
    assert spoken(commands) == ["Thanks for calling."]


def test_ai_summary_of_a_named_transcribe_keeps_its_reference() -> None:
    active = flow([{"type": "ai_summary", "option": {"reference_type": "transcribe", "reference_id": B}}])
    assert without_started(active.start(EPOCH)) == [StartSummary("transcribe", B, "", ""), FlowEnded(FINISHED)]


# --- conference_join ----------------------------------------------------------


def test_conference_join_waits_until_the_call_leaves_then_goes_on() -> None:
    active = flow([{"type": "conference_join", "option": {"conference_id": A, "muted": True}}, talk("You left.")])
    join = only(active.start(EPOCH), ConferenceJoin)
    assert join.conference_id == A and join.options == {
        "muted": True, "moderator": False, "wait_for_moderator": False, "end_conference_on_exit": False,
    }  # fmt: skip
    assert active.handle(MediaDone(join.token), LATER) == []  # only leaving completes it
    assert spoken(active.handle(ConferenceLeft(join.token), LATER)) == ["You left."]


def test_a_conference_join_that_is_refused_goes_on_like_voipbin() -> None:
    active = flow([{"type": "conference_join", "option": {"conference_id": A}}, talk("No conference.")])
    join = only(active.start(EPOCH), ConferenceJoin)
    assert spoken(active.handle(CommandFailed(join.token, "full"), LATER)) == ["No conference."]
