"""A conference link vouches for one call, once, for a short while, and only under the install's secret."""

from __future__ import annotations

import jwt

from voipbin.calls.links import LIFETIME_S, ConferenceLink, LinkSigner

SECRET = b"s" * 32
LINK = ConferenceLink("customer-1", "conference-1", "call-1", "flow-1", {"muted": True})


def test_a_signed_link_verifies_once_with_its_options() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(LINK)

    verified = signer.verify(token)

    assert verified is not None and verified.customer_id == "customer-1" and verified.call_id == "call-1"
    assert verified.options == {"muted": True, "moderator": False, "wait_for_moderator": False,
                                "end_conference_on_exit": False}
    assert signer.verify(token) is None  # a replay of an INVITE seen on the wire


def test_another_secret_a_changed_claim_or_an_old_token_is_refused() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(LINK)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert LinkSigner(b"o" * 32).verify(token) is None
    assert signer.verify(jwt.encode({**claims, "customer_id": "customer-2"}, b"o" * 32, algorithm="HS256")) is None
    assert signer.verify(jwt.encode({**claims, "aud": "other"}, SECRET, algorithm="HS256")) is None
    assert signer.verify("not a token") is None
    old = {**claims, "jti": "old", "iat": claims["iat"] - LIFETIME_S - 5, "exp": claims["exp"] - LIFETIME_S - 5}
    assert signer.verify(jwt.encode(old, SECRET, algorithm="HS256")) is None
    assert signer.verify(token) is not None  # none of the refusals used it up


def test_only_the_join_options_travel() -> None:
    signer = LinkSigner(SECRET)
    link = ConferenceLink("c", "f", "call", "flow", {"moderator": True, "admin": True})  # type: ignore[dict-item]

    verified = signer.verify(signer.sign(link))

    assert verified is not None and verified.options["moderator"] is True and "admin" not in verified.options
