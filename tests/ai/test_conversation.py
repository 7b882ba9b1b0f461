"""The AI conversation's rules, event by event (no model, no speech, no call)."""

from __future__ import annotations

import json

from voipbin.ai.conversation import (
    MAX_TOOL_ROUNDS,
    CallerSaid,
    CallerStartedSpeaking,
    CancelReply,
    Command,
    Conversation,
    End,
    Generate,
    Injected,
    Record,
    ReplyFailed,
    ReplyFinished,
    ReplyText,
    ReplyToolCall,
    RunTool,
    Say,
    Spoken,
    StopSpeaking,
    ToolDone,
)

PROMPT = "You answer the phone for a bakery."


def said(commands: list[Command]) -> list[str]:
    return [c.text for c in commands if isinstance(c, Say)]


def recorded(commands: list[Command]) -> list[dict[str, object]]:
    return [dict(c.message) for c in commands if isinstance(c, Record)]


def greeted() -> tuple[Conversation, list[Command]]:
    """A conversation whose greeting was generated and fully heard."""
    conversation = Conversation(PROMPT)
    (generate,) = conversation.start()
    assert isinstance(generate, Generate)
    out = conversation.handle(ReplyText(generate.turn, "Hello, bakery."))
    out += conversation.handle(ReplyFinished(generate.turn))
    for say in [c for c in out if isinstance(c, Say)]:
        out += conversation.handle(Spoken(say.piece))
    return conversation, out


def test_the_ai_greets_from_the_prompt_then_answers_the_caller() -> None:
    conversation = Conversation(PROMPT)
    assert conversation.start() == [Generate(1, ({"role": "system", "content": PROMPT},))]
    assert conversation.handle(ReplyText(1, "Hello, bakery.")) == []  # not yet a whole sentence
    finished = conversation.handle(ReplyFinished(1))
    assert said(finished) == ["Hello, bakery."] and recorded(finished) == []  # recorded once heard
    heard = conversation.handle(Spoken(finished[0].piece))  # type: ignore[union-attr]
    assert recorded(heard) == [{"role": "assistant", "content": "Hello, bakery."}]

    asked = conversation.handle(CallerSaid("Do you have rye bread?"))
    assert recorded(asked) == [{"role": "user", "content": "Do you have rye bread?"}]
    assert asked[-1] == Generate(2, conversation.history)


def test_sentences_are_spoken_as_they_complete() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("Hours?"))[-1].turn  # type: ignore[union-attr]
    out: list[Command] = []
    for token in ["We open at 7.", "5 on weekdays. We", " close at six! Anything", " else?"]:
        out += conversation.handle(ReplyText(turn, token))
    assert said(out) == ["We open at 7.5 on weekdays.", "We close at six!"]  # "7.5" is not cut
    assert said(conversation.handle(ReplyFinished(turn))) == ["Anything else?"]


def test_barge_in_stops_the_audio_and_keeps_only_what_was_heard() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("Tell me about your cakes."))[-1].turn  # type: ignore[union-attr]
    first = conversation.handle(ReplyText(turn, "We bake six kinds of cake. The chocolate one "))
    second = conversation.handle(ReplyText(turn, "is the best. It has three layers"))
    conversation.handle(Spoken(first[0].piece))  # type: ignore[union-attr]
    assert second  # the second sentence is playing when the caller cuts in

    cut = conversation.handle(CallerStartedSpeaking())
    assert cut[:2] == [StopSpeaking(), CancelReply(turn)]
    assert recorded(cut) == [{"role": "assistant", "content": "We bake six kinds of cake."}]
    assert conversation.handle(ReplyText(turn, " and cream. ")) == []  # the cancelled reply is gone
    answered = conversation.handle(CallerSaid("How much is it?"))
    assert answered[-1] == Generate(turn + 1, conversation.history)
    assert conversation.history[-2:] == (
        {"role": "assistant", "content": "We bake six kinds of cake."},
        {"role": "user", "content": "How much is it?"},
    )


def test_speech_while_nothing_plays_is_no_barge_in() -> None:
    conversation, _ = greeted()
    assert conversation.handle(CallerStartedSpeaking()) == []
    conversation.handle(CallerSaid("Hi."))
    assert conversation.handle(CallerStartedSpeaking()) == []  # the reply is still being thought of


def test_more_words_before_the_reply_speaks_restart_it_with_both() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("I would like"))[-1].turn  # type: ignore[union-attr]
    again = conversation.handle(CallerSaid("a birthday cake."))
    assert again[0] == CancelReply(turn) and again[-1] == Generate(turn + 1, conversation.history)
    assert [m["content"] for m in conversation.history if m["role"] == "user"] == ["I would like", "a birthday cake."]


def test_a_tool_result_goes_back_to_the_model() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("Remember my name, Ada."))[-1].turn  # type: ignore[union-attr]
    conversation.handle(ReplyToolCall(turn, "call-1", "set_variables", '{"variables": {"name": "Ada"}}'))
    out = conversation.handle(ReplyFinished(turn))
    assert recorded(out)[0]["tool_calls"] == [
        {"id": "call-1", "type": "function",
         "function": {"name": "set_variables", "arguments": '{"variables": {"name": "Ada"}}'}},
    ]
    assert out[-1] == RunTool("call-1", "set_variables", {"variables": {"name": "Ada"}})

    assert conversation.handle(CallerSaid("Also, are you open?")) == []  # answered after the tool
    done = conversation.handle(ToolDone("call-1", {"result": "success"}))
    assert [m["role"] for m in recorded(done)] == ["tool", "user"]
    assert json.loads(str(recorded(done)[0]["content"])) == {"result": "success"}
    assert done[-1] == Generate(turn + 1, conversation.history)


def test_an_ending_tool_ends_the_conversation() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("Put me through to the baker."))[-1].turn  # type: ignore[union-attr]
    out = conversation.handle(ReplyText(turn, "Connecting you now. "))
    out += conversation.handle(ReplyToolCall(turn, "call-9", "connect_call", '{"destinations": []}'))
    out += conversation.handle(ReplyFinished(turn))
    assert said(out) == ["Connecting you now."]
    assert isinstance(out[-1], RunTool)  # it runs while the sentence plays
    assert conversation.handle(ToolDone("call-9", {"result": "success"}))[-1] == End("connect_call")
    assert conversation.ended and conversation.handle(CallerSaid("Hello?")) == []


def test_bad_tool_arguments_are_reported_to_the_model() -> None:
    conversation, _ = greeted()
    turn = conversation.handle(CallerSaid("Hi."))[-1].turn  # type: ignore[union-attr]
    conversation.handle(ReplyToolCall(turn, "call-2", "get_variables", "not json"))
    out = conversation.handle(ReplyFinished(turn))
    assert json.loads(str(recorded(out)[-1]["content"]))["result"] == "failed"
    assert out[-1] == Generate(turn + 1, conversation.history)


def test_a_model_calling_tools_forever_is_stopped() -> None:
    conversation, _ = greeted()
    out = conversation.handle(CallerSaid("Hi."))
    for round_ in range(MAX_TOOL_ROUNDS + 1):
        turn = out[-1].turn  # type: ignore[union-attr]
        conversation.handle(ReplyToolCall(turn, f"c{round_}", "get_variables", "{}"))
        out = conversation.handle(ReplyFinished(turn))
        if isinstance(out[-1], End):
            break
        out = conversation.handle(ToolDone(f"c{round_}", {"result": "success"}))
    assert isinstance(out[-1], End) and "tool calls in a row" in out[-1].reason


def test_a_failed_model_ends_the_conversation() -> None:
    conversation = Conversation(PROMPT)
    conversation.start()
    assert conversation.handle(ReplyFailed(1, "the key was refused")) == [End("the model failed: the key was refused")]


def test_late_events_of_an_old_turn_change_nothing() -> None:
    conversation, _ = greeted()
    assert conversation.handle(ReplyText(1, "Stale. ")) == []
    assert conversation.handle(Spoken(999)) == []
    assert conversation.handle(ToolDone("nobody", {})) == []


def test_injected_messages_by_role() -> None:
    conversation, _ = greeted()
    guided = conversation.handle(Injected("notification", "The caller is a VIP."))
    assert recorded(guided) == [{"role": "notification", "content": "The caller is a VIP."}]
    assert conversation.history[-1] == {"role": "system", "content": "The caller is a VIP."}  # what the model reads
    spoken = conversation.handle(Injected("assistant", "One moment please."))
    assert said(spoken) == ["One moment please."] and not any(isinstance(c, Generate) for c in spoken)
    asked = conversation.handle(Injected("user", "Are you open today?"))
    assert recorded(asked) == [{"role": "user", "content": "Are you open today?"}]
    assert isinstance(asked[-1], Generate) and asked[-1].messages == conversation.history
