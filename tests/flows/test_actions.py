"""Action validation: what a stored flow may contain, and the message for each mistake."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from voipbin.flows.actions import NIL_ID, SUPPORTED_TYPES, Action, FlowError, parse_actions

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
MISSING = "99999999-9999-4999-8999-999999999999"


def error_of(actions: Any) -> str:
    with pytest.raises(FlowError) as caught:
        parse_actions(actions)
    assert str(caught.value) == caught.value.message
    return caught.value.message


def test_supported_types() -> None:
    assert {
        "answer", "talk", "play", "sleep", "hangup", "transcribe_start", "transcribe_stop",
        "recording_start", "recording_stop", "digits_receive", "digits_send", "goto", "branch",
        "condition_variable", "variable_set", "connect", "webhook_send", "ai_talk", "ai_summary", "conference_join",
        "stop",
    } == SUPPORTED_TYPES  # fmt: skip


def test_ids_are_generated_once_and_kept() -> None:
    counter = itertools.count(1)
    actions = parse_actions(
        [{"type": "answer"}, {"id": A, "type": "hangup"}, {"id": "", "type": "stop"}],
        make_id=lambda: f"00000000-0000-4000-8000-{next(counter):012d}",
    )
    assert [a.id for a in actions] == [
        "00000000-0000-4000-8000-000000000001",
        A,
        "00000000-0000-4000-8000-000000000002",
    ]
    assert len({a.id for a in parse_actions([{"type": "answer"}] * 50)}) == 50


def test_ids_and_jump_targets_are_normalised_to_lowercase() -> None:
    (goto,) = parse_actions(
        [{"id": A.upper(), "next_id": A.upper(), "type": "goto", "option": {"target_id": A.upper()}}]
    )
    assert (goto.id, goto.next_id, goto.option["target_id"]) == (A, A, A)


def test_to_dict_is_voipbins_shape() -> None:
    answer, talk = parse_actions(
        [{"id": A, "type": "answer"}, {"id": B, "next_id": A, "type": "talk", "option": {"text": "hi"}}]
    )
    assert answer.to_dict() == {"id": A, "next_id": NIL_ID, "type": "answer"}
    assert talk.to_dict() == {"id": B, "next_id": A, "type": "talk", "option": {"text": "hi"}}


def test_unknown_option_keys_are_kept_but_ignored_and_null_means_absent() -> None:
    (talk,) = parse_actions([{"type": "talk", "option": {"text": "hi", "volume": 11, "language": None}}])
    assert talk.option == {"text": "hi", "volume": 11}
    assert talk.value("language") == ""


def test_defaults_are_applied_on_read() -> None:
    hook, transcribe, branch = parse_actions(
        [{"type": "webhook_send", "option": {"uri": "https://x"}}, {"type": "transcribe_start"}, {"type": "branch"}]
    )
    assert (hook.value("method"), hook.value("sync")) == ("POST", False)
    assert transcribe.value("direction") == "both"
    assert branch.value("variable") == "voipbin.call.digits"


def test_action_list_can_be_empty() -> None:
    assert parse_actions([]) == ()


def test_every_supported_type_accepts_a_minimal_option() -> None:
    minimal: dict[str, dict[str, Any]] = {
        "talk": {"text": "hi"},
        "play": {"stream_urls": ["https://x/a.wav"]},
        "sleep": {"duration": 0},
        "digits_send": {"digits": "1"},
        "goto": {"target_id": A},
        "variable_set": {"key": "k"},
        "connect": {"destinations": [{"type": "tel", "target": "+15551234567"}]},
        "ai_talk": {"assistance_id": A},
        "webhook_send": {"uri": "https://x"},
        "conference_join": {"conference_id": A},
    }
    raw = [{"id": A, "type": "answer"}] + [{"type": t, "option": minimal.get(t, {})} for t in sorted(SUPPORTED_TYPES)]
    assert [a.type for a in parse_actions(raw)][1:] == sorted(SUPPORTED_TYPES)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ("talk", "actions must be a list"),
        ({"type": "talk"}, "actions must be a list"),
        ([{"type": "answer"}, "talk"], "actions[1]: must be an object"),
        ([{"option": {}}], "actions[0]: 'type' is required"),
        ([{"type": 3}], "actions[0]: 'type' must be a string"),
        ([{"type": "answer"}, {"type": "answer"}, {"type": "tlak"}], "actions[2]: unknown action type 'tlak'"),
        ([{"type": "queue_join"}], "actions[0]: action type 'queue_join' is not supported by this server"),
        (
            [{"type": "answer"}, {"type": "talk", "option": {"language": "en-US"}}],
            "actions[1] talk: option 'text' is required",
        ),
        ([{"type": "talk", "option": {"text": ""}}], "actions[0] talk: option 'text' is required"),
        ([{"type": "talk", "option": "hello"}], "actions[0] talk: 'option' must be an object"),
        ([{"id": "main-menu", "type": "answer"}], "actions[0] answer: id 'main-menu' is not a UUID"),
        ([{"id": A, "type": "answer"}, {"id": A, "type": "hangup"}], f"actions[1] hangup: duplicate id '{A}'"),
        (
            [{"type": "answer", "next_id": MISSING}],
            f"actions[0] answer: next_id references unknown action id '{MISSING}'",
        ),
        ([{"type": "answer", "next_id": 7}], "actions[0] answer: next_id 7 is not a UUID"),
        ([{"type": "goto", "option": {}}], "actions[0] goto: option 'target_id' is required"),
        ([{"type": "goto", "option": {"target_id": NIL_ID}}], "actions[0] goto: option 'target_id' is required"),
        (
            [{"type": "answer"}, {"type": "goto", "option": {"target_id": MISSING}}],
            f"actions[1] goto: option 'target_id' references unknown action id '{MISSING}'",
        ),
        (
            [{"type": "goto", "option": {"target_id": "start"}}],
            "actions[0] goto: option 'target_id' references unknown action id 'start'",
        ),
        (
            [{"id": A, "type": "branch", "option": {"target_ids": {"1": A, "2": MISSING}}}],
            f"actions[0] branch: option 'target_ids' entry '2' references unknown action id '{MISSING}'",
        ),
        (
            [{"type": "branch", "option": {"default_target_id": MISSING}}],
            f"actions[0] branch: option 'default_target_id' references unknown action id '{MISSING}'",
        ),
        (
            [{"type": "condition_variable", "option": {"false_target_id": MISSING}}],
            f"actions[0] condition_variable: option 'false_target_id' references unknown action id '{MISSING}'",
        ),
        ([{"type": "sleep"}], "actions[0] sleep: option 'duration' is required"),
        ([{"type": "sleep", "option": {"duration": "5000"}}], "actions[0] sleep: option 'duration' must be an integer"),
        ([{"type": "sleep", "option": {"duration": 1.5}}], "actions[0] sleep: option 'duration' must be an integer"),
        ([{"type": "sleep", "option": {"duration": True}}], "actions[0] sleep: option 'duration' must be an integer"),
        ([{"type": "sleep", "option": {"duration": -1}}], "actions[0] sleep: option 'duration' must be between 0 and 86400000"),
        (
            [{"type": "talk", "option": {"text": "x", "async": "yes"}}],
            "actions[0] talk: option 'async' must be a boolean",
        ),
        (
            [{"type": "talk", "option": {"text": "x", "digits_handle": "skip"}}],
            "actions[0] talk: option 'digits_handle' must be one of '', 'next'",
        ),
        (
            [{"type": "play", "option": {"stream_urls": "https://x"}}],
            "actions[0] play: option 'stream_urls' must be a list of strings",
        ),
        ([{"type": "play", "option": {"stream_urls": []}}], "actions[0] play: option 'stream_urls' is required"),
        (
            [{"type": "transcribe_start", "option": {"direction": "up"}}],
            "actions[0] transcribe_start: option 'direction' must be one of 'in', 'out', 'both'",
        ),
        (
            [{"type": "recording_start", "option": {"format": "mp3"}}],
            "actions[0] recording_start: option 'format' must be one of 'wav'",
        ),
        (
            [{"type": "digits_receive", "option": {"key": "#x"}}],
            "actions[0] digits_receive: option 'key' may only contain the DTMF keys 0-9, A-D, # and *",
        ),
        (
            [{"type": "digits_send", "option": {"digits": "12e"}}],
            "actions[0] digits_send: option 'digits' may only contain the DTMF keys 0-9, A-D, # and *",
        ),
        (
            [{"type": "digits_send", "option": {"digits": "1" * 101}}],
            "actions[0] digits_send: option 'digits' must be at most 100 characters",
        ),
        (
            [{"type": "digits_send", "option": {"digits": "1", "duration": 50}}],
            "actions[0] digits_send: option 'duration' must be between 100 and 1000",
        ),
        (
            [{"type": "digits_send", "option": {"digits": "1", "interval": 5001}}],
            "actions[0] digits_send: option 'interval' must be between 0 and 5000",
        ),
        (
            [{"type": "goto", "option": {"target_id": A, "loop_count": -2}}],
            "actions[0] goto: option 'loop_count' must be between 0 and 1000000",
        ),
        (
            [{"type": "branch", "option": {"target_ids": {"1": 5}}}],
            "actions[0] branch: option 'target_ids' must be an object of strings",
        ),
        (
            [{"type": "condition_variable", "option": {"condition": "=~"}}],
            "actions[0] condition_variable: option 'condition' must be one of '==', '!=', '>', '>=', '<', '<='",
        ),
        (
            [{"type": "condition_variable", "option": {"value_type": "bool"}}],
            "actions[0] condition_variable: option 'value_type' must be one of 'string', 'number', 'length'",
        ),
        (
            [{"type": "condition_variable", "option": {"value_number": "3"}}],
            "actions[0] condition_variable: option 'value_number' must be a number",
        ),
        ([{"type": "variable_set", "option": {"value": "x"}}], "actions[0] variable_set: option 'key' is required"),
        (
            [{"type": "connect", "option": {"destinations": []}}],
            "actions[0] connect: option 'destinations' is required",
        ),
        (
            [{"type": "connect", "option": {"destinations": [{"target": 5}]}}],
            "actions[0] connect: option 'destinations' must be a list of address objects",
        ),
        (
            [{"type": "connect", "option": {"source": "+1555", "destinations": [{}]}}],
            "actions[0] connect: option 'source' must be an address object",
        ),
        ([{"type": "webhook_send", "option": {"method": "POST"}}], "actions[0] webhook_send: option 'uri' is required"),
        (
            [{"type": "webhook_send", "option": {"uri": "https://x", "method": "PATCH"}}],
            "actions[0] webhook_send: option 'method' must be one of 'POST', 'GET', 'PUT', 'DELETE'",
        ),
        (
            [{"type": "ai_summary", "option": {"reference_type": "meeting"}}],
            ("actions[0] ai_summary: option 'reference_type' must be one of '', 'call', 'conference', 'transcribe', "
             "'recording'"),
        ),
    ],
)
def test_validation_messages(actions: Any, message: str) -> None:
    assert error_of(actions) == message


def test_action_is_immutable() -> None:
    (action,) = parse_actions([{"type": "answer"}])
    with pytest.raises(AttributeError):
        action.type = "hangup"  # type: ignore[misc]
    assert isinstance(action, Action)
