"""The registrar's answers, with explicit time: challenge, bindings, expiry, refusals, throttling."""

from __future__ import annotations

import pytest

from voipbin.sip.digest import NonceManager, authorization_for
from voipbin.sip.location import LocationService
from voipbin.sip.message import Headers, Request
from voipbin.sip.registrar import Account, FailureThrottle, Registrar

CUSTOMER = "550e8400-e29b-41d4-a716-446655440000"
DOMAIN = f"{CUSTOMER}.registrar.voipbin.test"
ACCOUNT = Account(CUSTOMER, "quickstart1", "your-secure-password-here")
PHONE = ("udp", "127.0.0.1", 5070)


def register(
    contact: str | None = "<sip:quickstart1@10.0.0.5:5070>",
    expires: int | None = None,
    authorization: str | None = None,
    cseq: int = 1,
    host: str = DOMAIN,
) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}x;rport"),
            ("From", f"<sip:quickstart1@{host}>;tag=abc"),
            ("To", f"<sip:quickstart1@{host}>"),
            ("Call-ID", "reg-1@phone"),
            ("CSeq", f"{cseq} REGISTER"),
            ("Max-Forwards", "70"),
        ]
    )
    if contact:
        headers.add("Contact", contact)
    if expires is not None:
        headers.add("Expires", str(expires))
    if authorization:
        headers.add("Authorization", authorization)
    return Request("REGISTER", f"sip:{host}", headers)


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(
        NonceManager(b"k" * 32, lifetime=30),
        LocationService(),
        "voipbin.test",
        FailureThrottle(limit=3),
        algorithms=("MD5", "SHA-256"),
    )


def answer(registrar: Registrar, request: Request, password: str, now: float, cseq: int, **kw: object) -> Request:
    challenge = registrar.handle(request, PHONE, ACCOUNT, now).response
    assert challenge.status_code == 401
    value = challenge.headers.get_all("WWW-Authenticate")[0]
    auth = authorization_for(value, "REGISTER", request.uri, "quickstart1", password, cnonce="c1")
    return register(authorization=auth, cseq=cseq, **kw)  # type: ignore[arg-type]


def test_challenge_names_the_customers_realm_and_offers_both_algorithms(registrar: Registrar) -> None:
    response = registrar.handle(register(), PHONE, ACCOUNT, now=0).response
    challenges = response.headers.get_all("WWW-Authenticate")
    assert response.status_code == 401
    assert all(f'realm="{DOMAIN}"' in c for c in challenges)
    assert ["MD5" in challenges[0], "SHA-256" in challenges[1]] == [True, True]


def test_sha256_answers_are_accepted(registrar: Registrar) -> None:
    challenge = registrar.handle(register(), PHONE, ACCOUNT, now=0).response.headers.get_all("WWW-Authenticate")[1]
    auth = authorization_for(challenge, "REGISTER", register().uri, "quickstart1", ACCOUNT.password, cnonce="c9")
    assert "SHA-256" in auth
    assert registrar.handle(register(authorization=auth, cseq=2), PHONE, ACCOUNT, now=1).response.status_code == 200


def test_register_binds_and_lists_contacts(registrar: Registrar) -> None:
    outcome = registrar.handle(answer(registrar, register(), ACCOUNT.password, 0, 2), PHONE, ACCOUNT, now=1)
    assert outcome.response.status_code == 200
    assert outcome.response.headers.get_all("Contact") == ["<sip:quickstart1@10.0.0.5:5070>;expires=3600"]
    [binding] = registrar.location.lookup(CUSTOMER, "quickstart1", now=2)
    assert binding.source == PHONE and binding.contact == "sip:quickstart1@10.0.0.5:5070"


def test_several_contacts_expiry_and_unregister(registrar: Registrar) -> None:
    for cseq, contact in ((2, "<sip:a@10.0.0.5:5070>;expires=120"), (4, "<sip:b@10.0.0.6:5070>")):
        request = answer(registrar, register(contact), ACCOUNT.password, 0, cseq, contact=contact)
        assert registrar.handle(request, PHONE, ACCOUNT, now=0).response.status_code == 200
    assert len(registrar.location.lookup(CUSTOMER, "quickstart1", now=100)) == 2
    assert [b.contact for b in registrar.location.lookup(CUSTOMER, "quickstart1", now=121)] == ["sip:b@10.0.0.6:5070"]

    remove_all = answer(registrar, register("*", expires=0), ACCOUNT.password, 200, 6, contact="*", expires=0)
    outcome = registrar.handle(remove_all, PHONE, ACCOUNT, now=200)
    assert outcome.response.status_code == 200 and outcome.removed
    assert registrar.location.lookup(CUSTOMER, "quickstart1", now=200) == []


def test_wrong_password_is_403_and_repeated_failures_are_throttled(registrar: Registrar) -> None:
    good = answer(registrar, register(), ACCOUNT.password, 0, 20)
    for attempt in range(3):
        bad = answer(registrar, register(), "guess", 0, 10 + attempt)
        assert registrar.handle(bad, PHONE, ACCOUNT, now=0).response.status_code == 403
    blocked = registrar.handle(good, PHONE, ACCOUNT, now=1).response
    assert blocked.status_code == 403 and blocked.reason == "Too Many Failed Attempts"
    later = answer(registrar, register(), ACCOUNT.password, 100, 22)
    assert registrar.handle(later, PHONE, ACCOUNT, now=100).response.status_code == 200


def test_expired_nonce_is_stale_not_forbidden(registrar: Registrar) -> None:
    late = answer(registrar, register(), ACCOUNT.password, 0, 2)
    response = registrar.handle(late, PHONE, ACCOUNT, now=31).response
    assert response.status_code == 401
    assert all("stale=true" in v for v in response.headers.get_all("WWW-Authenticate"))


def test_unknown_user_is_challenged_like_a_known_one(registrar: Registrar) -> None:
    known = registrar.handle(register(), PHONE, ACCOUNT, now=0).response
    unknown = registrar.handle(register(), PHONE, None, now=0).response
    assert (known.status_code, unknown.status_code) == (401, 401)
    assert [v.split("nonce=")[0] for v in known.headers.get_all("WWW-Authenticate")] == [
        v.split("nonce=")[0] for v in unknown.headers.get_all("WWW-Authenticate")
    ]


def test_too_brief_interval_is_423(registrar: Registrar) -> None:
    request = answer(registrar, register(), ACCOUNT.password, 0, 2, contact="<sip:x@1.2.3.4>;expires=10")
    response = registrar.handle(request, PHONE, ACCOUNT, now=0).response
    assert response.status_code == 423 and response.headers.get("Min-Expires") == "60"


@pytest.mark.parametrize(
    ("host", "customer"),
    [(DOMAIN, CUSTOMER), (CUSTOMER, CUSTOMER), ("127.0.0.1", None), ("example.org", None)],
)
def test_the_domain_names_the_customer(registrar: Registrar, host: str, customer: str | None) -> None:
    assert registrar.addressed(register(host=host)).customer_id == customer
