"""Links between nodes: a call on one node joins a conference mixed on another.

A conference is mixed on one node. A call on another node that joins it keeps running there (its
flow, its phone's dialog); that node dials the mixing node over SIP with :data:`LINK_HEADER`, a
token signed with the install's shared secret that names the customer, the conference, the call
and its join options, and bridges the call to that leg. The mixing node admits the leg as that
call's participant: no flow runs for it there, and it ends when the participant leaves (kicked,
the conference ended) or the calling node hangs up.

A token is good for ``LIFETIME_S`` and once: an INVITE seen on the wire cannot be replayed to listen in.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import jwt

LINK_HEADER: Final = "X-Voipbin-Conference-Link"
LIFETIME_S: Final = 30
AUDIENCE: Final = "voipbin:conference-link"
JOIN_OPTIONS: Final = ("muted", "moderator", "wait_for_moderator", "end_conference_on_exit")


@dataclass(frozen=True)
class ConferenceLink:
    """What the calling node vouches for: its customer's call joins that customer's conference."""

    customer_id: str
    conference_id: str
    call_id: str
    activeflow_id: str
    options: Mapping[str, bool] = field(default_factory=dict)


class LinkSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._used: dict[str, float] = {}  # token id -> when it expires

    def rekey(self, secret: bytes) -> None:
        """Sign and verify with the install's shared secret from now on."""
        self._secret = secret

    def sign(self, link: ConferenceLink) -> str:
        now = int(time.time())
        claims = {
            "aud": AUDIENCE, "iat": now, "exp": now + LIFETIME_S, "jti": secrets.token_hex(12),
            "customer_id": link.customer_id, "conference_id": link.conference_id, "call_id": link.call_id,
            "activeflow_id": link.activeflow_id, "options": {k: bool(link.options.get(k)) for k in JOIN_OPTIONS},
        }  # fmt: skip
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> ConferenceLink | None:
        """The link a token vouches for; None when it is forged, expired or used before."""
        now = time.time()  # as PyJWT reads the expiry
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE,
                                options={"require": ["exp", "jti"]}, leeway=2)  # fmt: skip
            link = ConferenceLink(
                str(claims["customer_id"]), str(claims["conference_id"]), str(claims["call_id"]),
                str(claims["activeflow_id"]), {k: bool(claims["options"].get(k)) for k in JOIN_OPTIONS},
            )  # fmt: skip
            token_id = str(claims["jti"])
        except (jwt.PyJWTError, KeyError, TypeError, AttributeError):
            return None
        self._used = {used: until for used, until in self._used.items() if until > now}
        if token_id in self._used:
            return None
        self._used[token_id] = now + LIFETIME_S + 2
        return link
