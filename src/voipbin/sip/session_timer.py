"""Session timers (RFC 4028), sans-IO: the negotiation in INVITEs and their answers, and, for a
running dialog, when a refresh is due and when the session is over.

A dialog whose far end vanished without a BYE (a phone that crashed, lost its network, or was
switched off) otherwise lives forever. With a session timer one side, the *refresher*, repeats
the session (re-INVITE or UPDATE) every half interval; the other side, hearing nothing for
almost a whole interval, ends the call. ``refresher`` is named from the dialog's point of view:
``uac`` is whoever sent the initial INVITE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voipbin.sip.message import Headers

Refresher = Literal["uac", "uas"]
_REFRESHERS: dict[str, Refresher] = {"uac": "uac", "uas": "uas"}

# RFC 4028 4: no interval below 90 s may be required of a peer; ours may be lowered for tests.
RFC_MIN_SE = 90


@dataclass(frozen=True)
class SessionTimerPolicy:
    expires_s: int = 1800
    min_se_s: int = RFC_MIN_SE


@dataclass(frozen=True)
class SessionExpires:
    """A Session-Expires header: the interval, and who refreshes when it says."""

    interval_s: int
    refresher: Refresher | None = None

    @classmethod
    def parse(cls, value: str | None) -> SessionExpires | None:
        if not value:
            return None
        head, *params = (part.strip() for part in value.split(";"))
        if not head.isdigit():
            return None
        refresher = None
        for param in params:
            name, _, param_value = param.partition("=")
            if name.strip().lower() == "refresher":
                refresher = _REFRESHERS.get(param_value.strip().lower(), refresher)
        return cls(int(head), refresher)

    def __str__(self) -> str:
        return f"{self.interval_s};refresher={self.refresher}" if self.refresher else str(self.interval_s)


def supports_timer(headers: Headers) -> bool:
    return any(
        option.strip().lower() == "timer"
        for name in ("Supported", "Require")
        for value in headers.get_all(name)
        for option in value.split(",")
    )


def min_se(headers: Headers) -> int | None:
    value = (headers.get("Min-SE") or "").split(";")[0].strip()
    return int(value) if value.isdigit() else None


@dataclass
class SessionTimer:
    """One dialog's timer: ``we_refresh`` when the refresher is this side."""

    interval_s: int
    we_refresh: bool
    refreshed_at: float

    @property
    def refresh_due(self) -> float:
        return self.refreshed_at + self.interval_s / 2

    @property
    def expires_at(self) -> float:
        """RFC 4028 10: the side that does not refresh gives up a little before the interval ends."""
        return self.refreshed_at + self.interval_s - min(32.0, self.interval_s / 3)

    def refreshed(self, now: float, interval_s: int | None = None) -> None:
        self.refreshed_at = now
        if interval_s:
            self.interval_s = interval_s


def offer_headers(policy: SessionTimerPolicy) -> list[tuple[str, str]]:
    """What our INVITEs carry: we take part in session timers, and ask for this interval."""
    return [("Supported", "timer"), ("Session-Expires", str(policy.expires_s)), ("Min-SE", str(policy.min_se_s))]


@dataclass(frozen=True)
class TooSmall:
    """Answer 422 Session Interval Too Small, with this Min-SE."""

    min_se_s: int


@dataclass(frozen=True)
class Agreed:
    """Answer 2xx with these headers; run ``timer`` once the call is up (None: no timer)."""

    headers: list[tuple[str, str]]
    timer: SessionTimer | None


def answer_invite(headers: Headers, policy: SessionTimerPolicy, now: float) -> TooSmall | Agreed:
    """The UAS side: what to answer an incoming INVITE (or in-dialog refresh) that may ask for a timer."""
    asked = SessionExpires.parse(headers.get("Session-Expires"))
    timer_capable = supports_timer(headers)
    if asked is None and not timer_capable:
        return Agreed([], None)
    interval = asked.interval_s if asked is not None else policy.expires_s
    if interval < policy.min_se_s:
        return TooSmall(policy.min_se_s)
    # A caller that can refresh, and did not ask otherwise, refreshes: it knows best when it is there.
    refresher: Refresher = (asked.refresher if asked is not None and asked.refresher else None) or (
        "uac" if timer_capable else "uas"
    )
    agreed = SessionExpires(interval, refresher)
    answer = [("Session-Expires", str(agreed))]
    if timer_capable:
        answer.append(("Require", "timer"))
    return Agreed(answer, SessionTimer(interval, we_refresh=refresher == "uas", refreshed_at=now))


def from_answer(headers: Headers, now: float) -> SessionTimer | None:
    """The UAC side: the timer a 2xx to our INVITE agreed on (None when the peer took no part)."""
    agreed = SessionExpires.parse(headers.get("Session-Expires"))
    if agreed is None:
        return None
    return SessionTimer(agreed.interval_s, we_refresh=(agreed.refresher or "uac") == "uac", refreshed_at=now)
