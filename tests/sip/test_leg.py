"""The call leg, sans-IO: forking, CANCEL races, re-INVITE and glare, BYE in every state, the
2xx retransmitted until its ACK, session refreshes and hangup reasons -- driven by parsed
messages and explicit times, and judged by the actions the leg returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pytest

from voipbin.media.sdp import parse_sdp
from voipbin.sip.leg import (
    Action,
    CallLeg,
    CallState,
    Local,
    MediaAgreed,
    Respond,
    Send,
    StateChanged,
    Transact,
    reason_for_status,
)
from voipbin.sip.location import Peer
from voipbin.sip.message import Address, Headers, Request, Response, make_response
from voipbin.sip.parser import parse_message
from voipbin.sip.session_timer import SessionTimerPolicy
from voipbin.sip.transactions import new_branch

LOCAL = Local("192.0.2.10", 5060)
POLICY = SessionTimerPolicy(expires_s=1800, min_se_s=90)
PHONE_A: Peer = ("udp", "192.0.2.1", 5062)
PHONE_B: Peer = ("udp", "192.0.2.2", 5062)
MEDIA_PORT = 20000


def sdp(host: str = "192.0.2.1", port: int = 4000, direction: str = "sendrecv") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    ).encode()


M = TypeVar("M", Request, Response)


def wire(message: M) -> M:
    """The message as the far end would receive it: encoded, then parsed."""
    parsed = parse_message(message.encode())
    assert isinstance(parsed, type(message))
    return parsed


# --- reading actions ------------------------------------------------------------------------


def states(actions: Sequence[Action]) -> list[CallState]:
    return [a.state for a in actions if isinstance(a, StateChanged)]


def started(actions: Sequence[Action], method: str | None = None) -> list[Request]:
    return [a.request for a in actions if isinstance(a, Transact) and method in (None, a.request.method)]


def sent(actions: Sequence[Action]) -> list[Request | Response]:
    return [a.message for a in actions if isinstance(a, Send)]


def answers(actions: Sequence[Action], to: Request | None = None) -> list[Response]:
    return [a.response for a in actions if isinstance(a, Respond) and (to is None or a.request is to)]


def codes(actions: Sequence[Action]) -> list[int]:
    return [response.status_code for response in answers(actions)]


# --- the far end ----------------------------------------------------------------------------


def reply(request: Request, code: int, tag: str | None = "phone", body: bytes = b"",
          headers: Sequence[tuple[str, str]] = ()) -> Response:
    response = make_response(request, code, to_tag=tag if code > 100 else None)
    if 100 < code < 300:
        response.headers.add("Contact", "<sip:phone@192.0.2.1:5062>")
    for name, value in headers:
        response.headers.add(name, value)
    if body:
        response.headers.add("Content-Type", "application/sdp")
        response.body = body
    return wire(response)


def phone_invite(headers: Sequence[tuple[str, str]] = (), body: bytes | None = None) -> Request:
    invite = Request("INVITE", "sip:2000@192.0.2.10", Headers([
        ("Via", f"SIP/2.0/UDP 192.0.2.1:5062;branch={new_branch()}"),
        ("Max-Forwards", "70"),
        ("From", "<sip:1000@voipbin.test>;tag=caller"),
        ("To", "<sip:2000@voipbin.test>"),
        ("Call-ID", "in-1@192.0.2.1"),
        ("CSeq", "10 INVITE"),
        ("Contact", "<sip:1000@192.0.2.1:5062>"),
        *headers,
        ("Content-Type", "application/sdp"),
    ]), sdp() if body is None else body)
    return wire(invite)


def from_peer(leg: CallLeg, method: str, cseq: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = (),
              to_tag: str | None = None) -> Request:
    """A request the far end sends within the leg's dialog (or names it, with ``to_tag``)."""
    call_id, local_tag, remote_tag = leg.dialog_id or ("nowhere", "", "")
    remote_uri, local_uri = (leg.dialog.remote_uri, leg.dialog.local_uri) if leg.dialog else ("sip:x@y", "sip:z@y")
    request = Request(method, "sip:voipbin@192.0.2.10:5060", Headers([
        ("Via", f"SIP/2.0/UDP 192.0.2.1:5062;branch={new_branch()}"),
        ("Max-Forwards", "70"),
        ("From", str(Address(remote_uri, params={"tag": remote_tag}))),
        ("To", str(Address(local_uri, params={"tag": local_tag if to_tag is None else to_tag}))),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", "<sip:phone@192.0.2.1:5062>"),
        *headers,
    ]), body)
    if body:
        request.headers.add("Content-Type", "application/sdp")
    return wire(request)


def dial(*peers: Peer, now: float = 0.0, auth: tuple[str, str] | None = None) -> tuple[CallLeg, list[Request]]:
    leg = CallLeg("outgoing", LOCAL, POLICY, MEDIA_PORT)
    targets = [(f"sip:2000@{peer[1]}:{peer[2]}", peer) for peer in peers]
    actions = leg.dial(targets, Address("sip:+15551234567@voipbin.test"), "sip:2000@voipbin.test", now, auth=auth)
    assert states(actions) == []
    return leg, started(actions, "INVITE")


def answered_outgoing(headers: Sequence[tuple[str, str]] = ()) -> tuple[CallLeg, Request]:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180), 0.5)
    leg.receive_response(reply(invite, 200, body=sdp(), headers=headers), 1.0)
    assert leg.state is CallState.PROGRESSING
    return leg, invite


def ringing_incoming(invite: Request | None = None, source: Peer = PHONE_A) -> tuple[CallLeg, Request]:
    invite = invite or phone_invite()
    leg = CallLeg("incoming", LOCAL, POLICY, MEDIA_PORT)
    leg.invited(invite, source, 0.0)
    return leg, invite


def answered_incoming(invite: Request | None = None, acked: bool = True) -> tuple[CallLeg, Request]:
    leg, invite = ringing_incoming(invite)
    leg.answer(0.0)
    if acked:
        leg.receive_request(from_peer(leg, "ACK", invite.cseq.number), PHONE_A, 0.1)
    return leg, invite


def drive(leg: CallLeg, until: float) -> list[tuple[float, list[Action]]]:
    """Fire the leg's timers exactly at their deadlines, as an event loop would."""
    timeline = []
    while (deadline := leg.next_deadline()) is not None and deadline <= until:
        timeline.append((deadline, leg.on_timer(deadline)))
    return timeline


# --- dialling and forks ---------------------------------------------------------------------


def test_every_contact_gets_its_own_invite_with_our_offer() -> None:
    leg, invites = dial(PHONE_A, PHONE_B)

    assert [invite.uri for invite in invites] == ["sip:2000@192.0.2.1:5062", "sip:2000@192.0.2.2:5062"]
    assert len({invite.call_id for invite in invites}) == 2
    for invite in invites:
        assert parse_sdp(invite.body).audio is not None and parse_sdp(invite.body).audio.port == MEDIA_PORT  # type: ignore[union-attr]
        assert invite.headers.get("Session-Expires") == "1800" and invite.headers.get("Contact") == "<sip:voipbin@192.0.2.10:5060>"
    assert leg.next_deadline() == 60.0  # the ring timeout


def test_no_contact_fails_at_once() -> None:
    leg = CallLeg("outgoing", LOCAL, POLICY, MEDIA_PORT)

    actions = leg.dial([], Address("sip:a@b"), "sip:c@d", 0.0)

    assert states(actions) == [CallState.HANGUP] and (leg.hangup_by, leg.hangup_reason) == ("local", "failed")
    assert leg.finished


def test_the_first_ringing_fork_rings_the_call_and_trying_does_not() -> None:
    leg, (a, b) = dial(PHONE_A, PHONE_B)

    assert states(leg.receive_response(reply(a, 100), 0.1)) == []
    assert states(leg.receive_response(reply(b, 180, tag="b"), 0.2)) == [CallState.RINGING]
    assert states(leg.receive_response(reply(a, 183, tag="a"), 0.3)) == []


def test_behind_a_forking_proxy_the_first_200_wins_and_a_second_gets_ack_and_bye() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180, tag="one"), 0.1)
    leg.receive_response(reply(invite, 180, tag="two"), 0.2)

    first = leg.receive_response(reply(invite, 200, tag="one", body=sdp()), 1.0)
    (ack,) = sent(first)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to_addr.tag == "one"
    assert states(first) == [CallState.PROGRESSING]
    assert [type(a) for a in first if isinstance(a, MediaAgreed)] == [MediaAgreed]
    # The transaction ended on the first 2xx; the second reaches the leg as a stray 2xx.
    second = leg.receive_response(reply(invite, 200, tag="two", body=sdp(port=4002)), 1.1)
    (ack2,) = sent(second)
    (bye,) = started(second, "BYE")
    assert isinstance(ack2, Request) and ack2.method == "ACK" and ack2.to_addr.tag == "two"
    assert bye.to_addr.tag == "two" and bye.call_id == invite.call_id
    assert states(second) == [] and leg.dialog is not None and leg.dialog.remote_tag == "one"
    assert not any(isinstance(a, MediaAgreed) for a in second)


def test_the_first_phone_to_answer_wins_and_the_other_is_cancelled() -> None:
    leg, (a, b) = dial(PHONE_A, PHONE_B)
    leg.receive_response(reply(a, 180, tag="a"), 0.1)
    leg.receive_response(reply(b, 180, tag="b"), 0.1)

    actions = leg.receive_response(reply(a, 200, tag="a", body=sdp()), 2.0)

    (cancel,) = started(actions, "CANCEL")
    assert cancel.vias[0].branch == b.vias[0].branch and str(cancel.cseq) == "1 CANCEL"
    assert cancel.call_id == b.call_id and cancel.to_addr.tag is None
    assert states(actions) == [CallState.PROGRESSING] and not leg.finished


def test_a_retransmitted_200_is_acknowledged_again_and_nothing_more() -> None:
    leg, invite = answered_outgoing()

    again = leg.receive_response(reply(invite, 200, body=sdp()), 1.5)

    assert [m.method for m in sent(again) if isinstance(m, Request)] == ["ACK"]
    assert started(again) == [] and states(again) == []


def test_a_refusal_on_one_fork_while_another_rings_changes_nothing() -> None:
    leg, (a, b) = dial(PHONE_A, PHONE_B)
    leg.receive_response(reply(a, 180, tag="a"), 0.1)

    assert leg.receive_response(reply(b, 486, tag="b"), 0.5) == []
    assert leg.state is CallState.RINGING
    assert states(leg.receive_response(reply(a, 200, tag="a", body=sdp()), 3.0)) == [CallState.PROGRESSING]


@pytest.mark.parametrize(("finals", "reason"), [((486,), "busy"), ((486, 480), "noanswer"), ((404, 503), "failed"),
                                                ((487,), "cancel"), ((603, 600), "busy")])
def test_when_every_fork_refuses_the_lowest_final_names_the_reason(finals: tuple[int, ...], reason: str) -> None:
    leg, invites = dial(*[("udp", f"192.0.2.{i + 1}", 5062) for i in range(len(finals))])

    actions = [leg.receive_response(reply(invite, code), 1.0) for invite, code in zip(invites, finals, strict=True)]

    assert [states(a) for a in actions] == [[]] * (len(finals) - 1) + [[CallState.HANGUP]]
    assert (leg.hangup_by, leg.hangup_reason) == ("remote", reason) and leg.finished


def test_an_answer_with_unusable_sdp_is_acknowledged_then_hung_up() -> None:
    leg, (invite,) = dial(PHONE_A)

    actions = leg.receive_response(reply(invite, 200, body=b"v=0\r\nnonsense\r\n"), 1.0)

    assert [m.method for m in sent(actions) if isinstance(m, Request)] == ["ACK"]
    assert [r.method for r in started(actions)] == ["BYE"]
    assert states(actions) == [CallState.PROGRESSING, CallState.TERMINATING, CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason) == ("local", "failed")


def test_a_digest_challenge_is_answered_once_and_the_retry_s_final_counts() -> None:
    leg, (invite,) = dial(PHONE_A, auth=("trunkuser", "secret"))
    challenge = [("Proxy-Authenticate", 'Digest realm="trunk", nonce="abc", algorithm=MD5')]

    (retry,) = started(leg.receive_response(reply(invite, 407, headers=challenge), 0.2), "INVITE")
    assert retry.cseq.number == 2 and retry.vias[0].branch != invite.vias[0].branch
    assert retry.call_id == invite.call_id and 'username="trunkuser"' in (retry.headers.get("Proxy-Authorization") or "")
    assert leg.receive_response(reply(retry, 407, headers=challenge), 0.4) != []  # not a second time: it ends
    assert (leg.state, leg.hangup_reason) == (CallState.HANGUP, "failed")

    leg, (invite,) = dial(PHONE_A, auth=("trunkuser", "secret"))
    (retry,) = started(leg.receive_response(reply(invite, 407, headers=challenge), 0.2), "INVITE")
    leg.receive_response(reply(retry, 486), 0.5)
    assert leg.hangup_reason == "busy"  # the retry's 486, not the 407 it replaced


def test_a_422_is_retried_once_with_the_interval_asked_for() -> None:
    leg, (invite,) = dial(PHONE_A)

    (retry,) = started(leg.receive_response(reply(invite, 422, headers=[("Min-SE", "3600")]), 0.2), "INVITE")

    assert retry.headers.get("Session-Expires") == "3600" and retry.headers.get("Min-SE") == "3600"
    assert started(leg.receive_response(reply(retry, 422, headers=[("Min-SE", "7200")]), 0.4)) == []
    assert leg.state is CallState.HANGUP


def test_a_call_nobody_answers_is_cancelled_when_it_has_rung_long_enough() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180), 1.0)

    assert leg.on_timer(59.9) == []
    actions = leg.on_timer(60.0)

    assert [r.method for r in started(actions)] == ["CANCEL"]
    assert states(actions) == [CallState.CANCELING, CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason) == ("local", "dialout")


# --- CANCEL and its races -------------------------------------------------------------------


def test_a_hangup_before_any_provisional_holds_the_cancel_back_until_one_comes() -> None:
    leg, (invite,) = dial(PHONE_A)

    actions = leg.hangup("normal", "", 0.2)

    assert started(actions) == []  # RFC 3261 9.1: no CANCEL before a provisional response
    assert states(actions) == [CallState.CANCELING, CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason) == ("local", "cancel") and not leg.finished
    (cancel,) = started(leg.receive_response(reply(invite, 100), 0.3), "CANCEL")
    assert cancel.vias[0].branch == invite.vias[0].branch
    assert started(leg.receive_response(reply(invite, 180), 0.4)) == []  # once is enough
    assert leg.receive_response(reply(invite, 487), 0.5) == [] and leg.finished


def test_an_invite_that_never_answers_a_cancelled_call_ends_with_its_timeout() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.hangup("normal", "", 0.2)

    assert leg.receive_response(reply(invite, 408, tag=None), 32.0) == []  # timer B's synthetic 408

    assert leg.finished and leg.hangup_reason == "cancel"


def test_a_200_crossing_our_cancel_is_acknowledged_then_released_with_bye() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180), 0.5)
    assert [r.method for r in started(leg.hangup("normal", "", 1.0))] == ["CANCEL"]

    actions = leg.receive_response(reply(invite, 200, body=sdp()), 1.1)

    assert [m.method for m in sent(actions) if isinstance(m, Request)] == ["ACK"]
    assert [r.method for r in started(actions)] == ["BYE"]
    assert states(actions) == [] and leg.state is CallState.HANGUP and leg.hangup_reason == "cancel"


def test_the_cancel_winning_ends_with_487_as_cancelled() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180), 0.5)
    leg.hangup("normal", "", 1.0)

    assert not leg.finished
    assert leg.receive_response(reply(invite, 487), 1.1) == []
    assert leg.finished and (leg.hangup_by, leg.hangup_reason) == ("local", "cancel")


def test_a_fork_that_never_answers_our_cancel_is_given_up_after_64_t1() -> None:
    leg, (invite,) = dial(PHONE_A)
    leg.receive_response(reply(invite, 180), 0.5)
    leg.hangup("normal", "", 1.0)

    assert leg.next_deadline() == 33.0
    assert leg.on_timer(33.0) == [] and leg.finished


def test_the_far_end_cancelling_its_invite_ends_the_call_as_cancelled() -> None:
    leg, invite = ringing_incoming()
    cancel = wire(Request("CANCEL", invite.uri, Headers([(n, v) for n, v in invite.headers if n != "CSeq"]
                                                         + [("CSeq", "10 CANCEL")])))

    actions = leg.receive_request(cancel, PHONE_A, 3.0)

    assert [r.status_code for r in answers(actions, cancel)] == [200]
    assert [r.status_code for r in answers(actions, invite)] == [487]
    assert states(actions) == [CallState.HANGUP] and (leg.hangup_by, leg.hangup_reason) == ("remote", "cancel")
    # Once answered, a CANCEL changes nothing (RFC 3261 9.2).
    leg, invite = answered_incoming()
    actions = leg.receive_request(cancel, PHONE_A, 3.0)
    assert codes(actions) == [200] and leg.state is CallState.PROGRESSING


# --- incoming calls -------------------------------------------------------------------------


def test_an_incoming_call_rings_with_our_tag_and_contact() -> None:
    invite = phone_invite()
    leg = CallLeg("incoming", LOCAL, POLICY, MEDIA_PORT)

    actions = leg.invited(invite, PHONE_A, 0.0)

    trying, ringing = answers(actions, invite)
    assert (trying.status_code, trying.to_addr.tag) == (100, None)
    assert (ringing.status_code, ringing.to_addr.tag) == (180, leg.tag)
    assert ringing.headers.get("Contact") == "<sip:voipbin@192.0.2.10:5060>"
    assert states(actions) == [CallState.RINGING]
    assert leg.dialog_id == ("in-1@192.0.2.1", leg.tag, "caller")


def test_an_interval_too_short_is_refused_422() -> None:
    invite = phone_invite([("Supported", "timer"), ("Session-Expires", "30")])
    leg = CallLeg("incoming", LOCAL, POLICY, MEDIA_PORT)

    (too_small,) = answers(leg.invited(invite, PHONE_A, 0.0))

    assert too_small.status_code == 422 and too_small.headers.get("Min-SE") == "90"
    assert leg.state is CallState.HANGUP and leg.finished


def test_our_200_is_sent_again_at_t1_doubling_until_the_ack() -> None:
    leg, invite = ringing_incoming()

    actions = leg.answer(0.0)

    (ok,) = answers(actions, invite)
    assert ok.status_code == 200 and ok.to_addr.tag == leg.tag and parse_sdp(ok.body).audio is not None
    assert [type(a) for a in actions if isinstance(a, MediaAgreed)] == [MediaAgreed]
    assert states(actions) == [CallState.PROGRESSING]
    timeline = drive(leg, 7.6)
    assert [t for t, acts in timeline if sent(acts) == [ok]] == [0.5, 1.5, 3.5, 7.5]
    assert leg.receive_request(from_peer(leg, "ACK", 10), PHONE_A, 8.0) == []
    assert leg.next_deadline() is None and leg.on_timer(11.5) == []


def test_no_ack_for_64_t1_ends_the_call_with_bye() -> None:
    leg, _ = ringing_incoming()
    leg.answer(0.0)

    timeline = drive(leg, 40.0)

    last_at, last = timeline[-1]
    assert last_at == 32.0 and [r.method for r in started(last)] == ["BYE"]
    assert states(last) == [CallState.TERMINATING, CallState.HANGUP] and leg.hangup_reason == "failed"


def test_an_offer_we_cannot_answer_is_refused_488() -> None:
    leg, _ = ringing_incoming(phone_invite(body=b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"))

    actions = leg.answer(1.0)

    assert codes(actions) == [488] and states(actions) == [CallState.HANGUP] and leg.hangup_reason == "failed"


@pytest.mark.parametrize(("reason", "status"), [("normal", 603), ("busy", 486), ("noanswer", 480), ("failed", 480)])
def test_hanging_up_a_ringing_incoming_call_refuses_it(reason: str, status: int) -> None:
    leg, invite = ringing_incoming()

    actions = leg.hangup(reason, "", 1.0)

    assert [r.status_code for r in answers(actions, invite)] == [status]
    assert (leg.hangup_by, leg.hangup_reason) == ("local", reason) and leg.finished


def test_a_rejected_call_gets_the_status_asked_for() -> None:
    leg, invite = ringing_incoming()

    (refusal,) = answers(leg.reject(404, "No Such Number", 1.0), invite)

    assert (refusal.status_code, refusal.reason, refusal.to_addr.tag) == (404, "No Such Number", leg.tag)
    assert (leg.hangup_by, leg.hangup_reason) == ("local", "noanswer")
    assert leg.reject(486, None, 2.0) == [] and leg.answer(2.0) == []  # decided already


def test_a_hangup_before_the_ack_holds_our_bye_until_it_comes() -> None:
    leg, invite = answered_incoming(acked=False)

    actions = leg.hangup("normal", "", 1.0)

    assert started(actions) == []  # RFC 3261 15: not before the ACK of our 2xx
    assert states(actions) == [CallState.TERMINATING, CallState.HANGUP] and not leg.finished
    (bye,) = started(leg.receive_request(from_peer(leg, "ACK", invite.cseq.number), PHONE_A, 1.2), "BYE")
    assert bye.to_addr.tag == "caller" and bye.uri == "sip:1000@192.0.2.1:5062"
    assert not leg.finished  # until the BYE is answered
    leg.receive_response(reply(bye, 200, tag=None), 1.3)
    assert leg.finished


# --- BYE in every state ---------------------------------------------------------------------


def test_a_bye_while_dialling_or_ringing_out_names_no_dialog() -> None:
    leg, (invite,) = dial(PHONE_A)
    assert codes(leg.receive_request(from_peer(leg, "BYE", 1, to_tag="nobody"), PHONE_A, 0.1)) == [481]
    assert leg.state is CallState.DIALING

    leg.receive_response(reply(invite, 180, tag="early"), 0.2)
    # The callee never BYEs an early dialog (RFC 3261 15): that fork's INVITE decides.
    bye = from_peer(leg, "BYE", 1, to_tag=invite.from_addr.tag)
    assert codes(leg.receive_request(bye, PHONE_A, 0.3)) == [481]
    assert leg.state is CallState.RINGING


def test_the_caller_may_bye_our_early_dialog() -> None:
    leg, invite = ringing_incoming()

    actions = leg.receive_request(from_peer(leg, "BYE", 11), PHONE_A, 2.0)

    assert codes(actions) == [200, 487] and [r.status_code for r in answers(actions, invite)] == [487]
    assert states(actions) == [CallState.HANGUP] and (leg.hangup_by, leg.hangup_reason) == ("remote", "cancel")


@pytest.mark.parametrize("direction", ["outgoing", "incoming"])
def test_a_bye_in_an_answered_call_ends_it_normally(direction: str) -> None:
    leg, _ = answered_outgoing() if direction == "outgoing" else answered_incoming()

    actions = leg.receive_request(from_peer(leg, "BYE", 20), PHONE_A, 5.0)

    assert codes(actions) == [200] and states(actions) == [CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason) == ("remote", "normal") and leg.finished


def test_a_bye_crossing_ours_is_answered_and_changes_nothing() -> None:
    leg, _ = answered_outgoing()
    (bye,) = started(leg.hangup("normal", "", 5.0), "BYE")

    actions = leg.receive_request(from_peer(leg, "BYE", 20), PHONE_A, 5.1)

    assert codes(actions) == [200] and states(actions) == []
    assert (leg.hangup_by, leg.hangup_reason) == ("local", "normal") and not leg.finished
    leg.receive_response(reply(bye, 481, tag=None), 5.2)
    assert leg.finished


def test_a_bye_before_the_ack_of_our_200_ends_the_call_and_its_retransmissions() -> None:
    leg, _ = answered_incoming(acked=False)

    actions = leg.receive_request(from_peer(leg, "BYE", 11), PHONE_A, 0.3)

    assert codes(actions) == [200] and states(actions) == [CallState.HANGUP]
    assert leg.hangup_by == "remote" and leg.finished and leg.next_deadline() is None


def test_in_dialog_requests_for_another_dialog_get_481() -> None:
    leg, _ = answered_incoming()

    for method in ("BYE", "INVITE", "UPDATE", "INFO"):
        assert codes(leg.receive_request(from_peer(leg, method, 30, to_tag="other"), PHONE_A, 1.0)) == [481]
    assert leg.state is CallState.PROGRESSING


# --- re-INVITE, UPDATE and glare ------------------------------------------------------------


def test_a_reinvite_is_answered_with_our_sdp_for_its_offer() -> None:
    leg, _ = answered_incoming()
    hold = from_peer(leg, "INVITE", 11, sdp(port=4100, direction="sendonly"))

    actions = leg.receive_request(hold, PHONE_A, 10.0)

    (ok,) = answers(actions, hold)
    (media,) = [a for a in actions if isinstance(a, MediaAgreed)]
    assert ok.status_code == 200 and media.negotiation.remote == ("192.0.2.1", 4100) and media.direction == "recvonly"
    assert ok.body == leg.local_sdp and parse_sdp(ok.body).audio.direction == "recvonly"  # type: ignore[union-attr]


def test_an_offerless_reinvite_gets_our_current_sdp_and_its_ack_answers() -> None:
    leg, _ = answered_incoming()
    current = leg.local_sdp
    reinvite = from_peer(leg, "INVITE", 11)

    (ok,) = answers(leg.receive_request(reinvite, PHONE_A, 10.0), reinvite)

    assert ok.status_code == 200 and ok.body == current
    actions = leg.receive_request(from_peer(leg, "ACK", 11, sdp(port=4200)), PHONE_A, 10.1)
    (media,) = [a for a in actions if isinstance(a, MediaAgreed)]
    assert media.negotiation.remote == ("192.0.2.1", 4200)


def test_a_reinvite_while_ours_is_pending_is_glare_491() -> None:
    leg, _ = answered_incoming(phone_invite([("Session-Expires", "90")]))  # no "timer": we refresh
    (refresh,) = started(leg.on_timer(45.0), "INVITE")

    actions = leg.receive_request(from_peer(leg, "INVITE", 11, sdp()), PHONE_A, 45.1)

    assert codes(actions) == [491] and not any(isinstance(a, MediaAgreed) for a in actions)
    assert codes(leg.receive_request(from_peer(leg, "UPDATE", 12, sdp()), PHONE_A, 45.2)) == [491]
    leg.receive_response(reply(refresh, 200, tag=None, body=sdp()), 45.3)
    assert codes(leg.receive_request(from_peer(leg, "INVITE", 13, sdp()), PHONE_A, 46.0)) == [200]


def test_a_request_older_than_the_last_is_refused_500() -> None:
    leg, _ = answered_incoming()
    leg.receive_request(from_peer(leg, "INFO", 12), PHONE_A, 1.0)

    assert codes(leg.receive_request(from_peer(leg, "INVITE", 12, sdp()), PHONE_A, 2.0)) == [500]


def test_our_refresh_repeats_our_sdp_and_its_200_restarts_the_timer() -> None:
    leg, _ = answered_incoming(phone_invite([("Session-Expires", "90")]))
    assert leg.session is not None and leg.session.we_refresh and leg.next_deadline() == 45.0

    (refresh,) = started(leg.on_timer(45.0), "INVITE")

    assert refresh.body == leg.local_sdp and refresh.headers.get("Session-Expires") == "90;refresher=uas"
    actions = leg.receive_response(reply(refresh, 200, tag=None, body=sdp(), headers=[("Session-Expires", "120")]), 45.5)
    assert [m.method for m in sent(actions) if isinstance(m, Request)] == ["ACK"]
    assert (leg.session.refreshed_at, leg.session.interval_s) == (45.5, 120)
    assert leg.next_deadline() == 105.5


@pytest.mark.parametrize("status", [408, 481])
def test_a_refresh_that_times_out_or_finds_no_dialog_ends_the_call(status: int) -> None:
    leg, _ = answered_incoming(phone_invite([("Session-Expires", "90")]))
    (refresh,) = started(leg.on_timer(45.0), "INVITE")

    actions = leg.receive_response(reply(refresh, status, tag=None), 77.0)

    assert [r.method for r in started(actions)] == ["BYE"]
    assert states(actions) == [CallState.TERMINATING, CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason, leg.hangup_cause) == ("local", "failed", "session_refresh_failed")


def test_a_refused_refresh_is_tried_again_later() -> None:
    leg, _ = answered_incoming(phone_invite([("Session-Expires", "90")]))
    (refresh,) = started(leg.on_timer(45.0), "INVITE")

    assert leg.receive_response(reply(refresh, 491, tag=None), 45.2) == []

    assert leg.next_deadline() == 50.2
    assert [r.method for r in started(leg.on_timer(50.2))] == ["INVITE"]


def test_a_session_the_far_end_stops_refreshing_expires() -> None:
    leg, _ = answered_outgoing(headers=[("Session-Expires", "90;refresher=uas"), ("Require", "timer")])
    assert leg.session is not None and not leg.session.we_refresh
    assert leg.next_deadline() == 61.0  # answered at 1.0; 90 s less a third

    actions = leg.on_timer(61.0)

    assert [r.method for r in started(actions)] == ["BYE"]
    assert (leg.hangup_reason, leg.hangup_cause) == ("failed", "session_expired")


def test_an_update_refreshes_the_session_and_may_change_its_interval() -> None:
    leg, _ = answered_outgoing(headers=[("Session-Expires", "90;refresher=uas"), ("Require", "timer")])

    update = from_peer(leg, "UPDATE", 5)
    (ok,) = answers(leg.receive_request(update, PHONE_A, 50.0), update)
    assert ok.status_code == 200 and not ok.body
    assert leg.session is not None and leg.session.refreshed_at == 50.0 and leg.next_deadline() == 110.0

    longer = from_peer(leg, "UPDATE", 6, headers=[("Supported", "timer"), ("Session-Expires", "300;refresher=uac")])
    (ok,) = answers(leg.receive_request(longer, PHONE_A, 100.0), longer)
    assert ok.headers.get("Session-Expires") == "300;refresher=uac" and leg.session.interval_s == 300


def test_an_update_with_an_offer_changes_the_media() -> None:
    leg, _ = answered_outgoing()
    update = from_peer(leg, "UPDATE", 5, sdp(port=4300))

    actions = leg.receive_request(update, PHONE_A, 5.0)

    (media,) = [a for a in actions if isinstance(a, MediaAgreed)]
    assert media.negotiation.remote == ("192.0.2.1", 4300) and answers(actions, update)[0].body == leg.local_sdp


# --- hangup reasons -------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(486, "busy"), (600, "busy"), (408, "noanswer"), (480, "noanswer"),
                                                (603, "noanswer"), (487, "cancel"), (404, "failed"), (500, "failed")])
def test_finals_map_to_voipbin_hangup_reasons(status: int, reason: str) -> None:
    assert reason_for_status(status) == reason


def test_a_hangup_keeps_the_first_cause_and_happens_once() -> None:
    leg, _ = answered_outgoing()

    first = leg.hangup("failed", "media_timeout", 10.0)

    assert states(first) == [CallState.TERMINATING, CallState.HANGUP]
    assert (leg.hangup_by, leg.hangup_reason, leg.hangup_cause) == ("local", "failed", "media_timeout")
    assert leg.hangup("normal", "connection_lost", 11.0) == []
    assert leg.hangup_cause == "media_timeout"


def test_over_tcp_our_200_is_sent_once_and_our_contact_names_tcp() -> None:
    tcp: Peer = ("tcp", "192.0.2.1", 40000)
    leg = CallLeg("incoming", LOCAL, POLICY, MEDIA_PORT)
    invite = phone_invite()
    leg.invited(invite, tcp, 0.0)

    (ok,) = answers(leg.answer(0.0), invite)

    assert ok.headers.get("Contact") == "<sip:voipbin@192.0.2.10:5060;transport=tcp>"
    timeline = drive(leg, 40.0)  # a stream delivers it, or says it could not: nothing sent again
    assert [t for t, _ in timeline] == [32.0] and [r.method for r in started(timeline[0][1])] == ["BYE"]
    assert started(timeline[0][1])[0].vias[0].transport == "TCP"


def test_a_200_to_our_refresh_that_comes_again_is_acknowledged_again() -> None:
    leg, _ = answered_incoming(phone_invite([("Session-Expires", "90")]))
    (refresh,) = started(leg.on_timer(45.0), "INVITE")
    leg.receive_response(reply(refresh, 200, tag=None, body=sdp()), 45.5)

    again = leg.receive_response(reply(refresh, 200, tag=None, body=sdp()), 46.0)

    (ack,) = sent(again)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.number == refresh.cseq.number
    assert leg.session is not None and leg.session.refreshed_at == 45.5
