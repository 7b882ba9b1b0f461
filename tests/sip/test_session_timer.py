"""RFC 4028 session timers, sans-IO: what an INVITE asks, what we answer, and when a refresh is due
or the session over."""

from __future__ import annotations

import pytest

from voipbin.sip.message import Headers
from voipbin.sip.session_timer import (
    Agreed,
    SessionExpires,
    SessionTimer,
    SessionTimerPolicy,
    TooSmall,
    answer_invite,
    from_answer,
    offer_headers,
)

POLICY = SessionTimerPolicy(expires_s=1800, min_se_s=90)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1800", SessionExpires(1800)),
        ("90;refresher=uac", SessionExpires(90, "uac")),
        (" 600 ; REFRESHER = UAS ", SessionExpires(600, "uas")),
        ("600;refresher=nobody", SessionExpires(600)),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_session_expires_is_parsed(value: str | None, parsed: SessionExpires | None) -> None:
    assert SessionExpires.parse(value) == parsed


def test_a_caller_that_supports_timers_refreshes_and_we_require_them() -> None:
    verdict = answer_invite(Headers([("Supported", "replaces, timer"), ("Session-Expires", "120")]), POLICY, 10.0)

    assert isinstance(verdict, Agreed)
    assert verdict.headers == [("Session-Expires", "120;refresher=uac"), ("Require", "timer")]
    assert verdict.timer == SessionTimer(120, we_refresh=False, refreshed_at=10.0)


def test_a_caller_may_ask_us_to_refresh() -> None:
    verdict = answer_invite(Headers([("Supported", "timer"), ("Session-Expires", "300;refresher=uas")]), POLICY, 0.0)

    assert isinstance(verdict, Agreed) and verdict.timer is not None and verdict.timer.we_refresh


def test_an_interval_below_our_minimum_is_refused_with_422() -> None:
    assert answer_invite(Headers([("Supported", "timer"), ("Session-Expires", "30")]), POLICY, 0.0) == TooSmall(90)


def test_a_caller_that_knows_nothing_of_timers_gets_none() -> None:
    verdict = answer_invite(Headers([("Supported", "replaces")]), POLICY, 0.0)

    assert verdict == Agreed([], None)


def test_the_answer_to_our_invite_says_who_refreshes() -> None:
    assert from_answer(Headers([("Session-Expires", "90;refresher=uac")]), 5.0) == SessionTimer(90, True, 5.0)
    assert from_answer(Headers([("Session-Expires", "90;refresher=uas")]), 5.0) == SessionTimer(90, False, 5.0)
    assert from_answer(Headers([("Session-Expires", "90")]), 5.0) == SessionTimer(90, True, 5.0)
    assert from_answer(Headers([]), 5.0) is None


def test_a_refresh_is_due_halfway_and_the_session_ends_before_the_interval_does() -> None:
    timer = SessionTimer(90, we_refresh=False, refreshed_at=100.0)

    assert timer.refresh_due == 145.0
    assert timer.expires_at == 160.0  # 90 - min(32, 90 / 3)
    timer.refreshed(150.0, 1800)
    assert (timer.refresh_due, timer.expires_at) == (1050.0, 1918.0)


def test_our_invites_offer_timers() -> None:
    assert offer_headers(POLICY) == [("Supported", "timer"), ("Session-Expires", "1800"), ("Min-SE", "90")]
