"""Digest authentication: RFC 7616 known answers, nonces, staleness, replay."""

from __future__ import annotations

import itertools

import pytest

from voipbin.sip.digest import (
    NonceManager,
    Result,
    authorization_for,
    compute_ha1,
    compute_response,
    parse_auth_header,
    select_challenge,
)

SECRET = b"k" * 32
REALM = "pbx.example.com"

# RFC 7616 section 3.9.1
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_REALM = "http-auth@example.org"


def rfc_challenge(algorithm: str) -> str:
    return (
        f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_known_answers(algorithm: str, expected: str) -> None:
    response = compute_response(
        algorithm=algorithm,
        ha1=compute_ha1(algorithm, "Mufasa", RFC_REALM, "Circle of Life"),
        nonce=RFC_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == expected

    header = authorization_for(
        rfc_challenge(algorithm), "GET", "/dir/index.html", "Mufasa", "Circle of Life", RFC_CNONCE, 1
    )
    params = parse_auth_header(header)
    assert params is not None
    assert params["response"] == expected
    assert (params["qop"], params["nc"], params["opaque"]) == ("auth", "00000001", RFC_OPAQUE)
    assert params["algorithm"] == algorithm


def test_parse_auth_header() -> None:
    value = (
        'Digest username="Mufasa",realm="a \\"quoted\\" realm" , nonce=abc, uri=sip:bob@example.com,'
        " response=\"0a\", qop=auth, nc=00000001 , cnonce=\"x,y\""
    )
    assert parse_auth_header(value) == {
        "username": "Mufasa",
        "realm": 'a "quoted" realm',
        "nonce": "abc",
        "uri": "sip:bob@example.com",
        "response": "0a",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "x,y",
    }
    assert parse_auth_header("digest\tUserName=x") == {"username": "x"}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Digest ",
        "Basic dXNlcjpwYXNz",
        'Digest username="unterminated',
        "Digest username",
        "Digest username=",
        "Digest =x",
        "Digest a=1 b=2",
        "Digest a=1, a=2",
        'Digest a="x"junk',
        "Digest ,,,",
    ],
)
def test_parse_auth_header_garbage(value: str) -> None:
    assert parse_auth_header(value) is None


def test_challenge_headers() -> None:
    nm = NonceManager(SECRET)
    sha, md5 = nm.challenge(REALM, 1000.0)
    assert sha.startswith('Digest realm="pbx.example.com", nonce="')
    assert "algorithm=SHA-256" in sha and 'qop="auth"' in sha and "stale" not in sha
    assert "algorithm=MD5" in md5
    assert parse_auth_header(sha)["nonce"] == parse_auth_header(md5)["nonce"]  # type: ignore[index]
    (stale,) = nm.challenge(REALM, 1000.0, stale=True, algorithms=("MD5",))
    assert parse_auth_header(stale)["stale"] == "true"  # type: ignore[index]
    with pytest.raises(ValueError):
        nm.challenge(REALM, 0.0, algorithms=("SHA-1",))


def answer(
    challenge: str, *, password: str = "s3cret", nc: int = 1, method: str = "REGISTER"
) -> dict[str, str]:
    header = authorization_for(challenge, method, "sip:pbx.example.com", "alice", password, "cn0nce", nc)
    params = parse_auth_header(header)
    assert params is not None
    return params


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"])
def test_client_and_server_round_trip(algorithm: str) -> None:
    nm = NonceManager(SECRET)
    (challenge,) = nm.challenge(REALM, 1000.0, algorithms=(algorithm,))
    creds = answer(challenge)
    assert nm.verify(creds, "REGISTER", "s3cret", 1001.0) is Result.OK
    assert nm.verify(answer(challenge, nc=2), "REGISTER", "s3cret", 1002.0) is Result.OK
    assert nm.verify(creds, "REGISTER", "s3cret", 1002.0, realm="other") is Result.WRONG


def test_wrong_password_and_wrong_method() -> None:
    nm = NonceManager(SECRET)
    challenge = nm.challenge(REALM, 0.0)[0]
    assert nm.verify(answer(challenge, password="guess"), "REGISTER", "s3cret", 1.0) is Result.WRONG
    assert nm.verify(answer(challenge), "INVITE", "s3cret", 1.0) is Result.WRONG
    # A failed attempt does not burn the nonce count for the real client.
    assert nm.verify(answer(challenge), "REGISTER", "s3cret", 1.0) is Result.OK


def test_expired_nonce_is_stale() -> None:
    nm = NonceManager(SECRET, lifetime=30.0)
    challenge = nm.challenge(REALM, 100.0)[0]
    creds = answer(challenge)
    assert nm.verify(creds, "REGISTER", "s3cret", 131.0) is Result.STALE
    # ... but only to a client that knows the password.
    assert nm.verify(answer(challenge, password="x"), "REGISTER", "s3cret", 131.0) is Result.WRONG
    assert nm.verify(creds, "REGISTER", "s3cret", 129.0) is Result.OK


def test_nonce_from_the_future_is_refused() -> None:
    nm = NonceManager(SECRET)
    challenge = nm.challenge(REALM, 10_000.0)[0]
    assert nm.verify(answer(challenge), "REGISTER", "s3cret", 1_000.0) is Result.STALE


def test_replayed_nonce_count_is_rejected() -> None:
    nm = NonceManager(SECRET)
    challenge = nm.challenge(REALM, 0.0)[0]
    first = answer(challenge, nc=1)
    assert nm.verify(first, "REGISTER", "s3cret", 1.0) is Result.OK
    assert nm.verify(first, "REGISTER", "s3cret", 2.0) is Result.REPLAY
    assert nm.verify(answer(challenge, nc=5), "REGISTER", "s3cret", 3.0) is Result.OK
    assert nm.verify(answer(challenge, nc=3), "REGISTER", "s3cret", 4.0) is Result.REPLAY
    assert nm.verify(answer(challenge, nc=6), "REGISTER", "s3cret", 5.0) is Result.OK


def test_tampered_or_foreign_nonce_is_rejected() -> None:
    nm = NonceManager(SECRET)
    challenge = nm.challenge(REALM, 0.0)[0]
    creds = answer(challenge)
    nonce = creds["nonce"]
    tampered = nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:]
    # Copying a valid response onto a forged nonce fails the digest...
    assert nm.verify({**creds, "nonce": tampered}, "REGISTER", "s3cret", 1.0) is Result.WRONG
    # ... and a client that signs the forged nonce is sent for a fresh one.
    forged = answer(challenge.replace(nonce, tampered))
    assert nm.verify(forged, "REGISTER", "s3cret", 1.0) is Result.STALE
    # Nonces of another server (or from before a restart with a new secret) likewise.
    other = NonceManager(b"z" * 32)
    assert other.verify(creds, "REGISTER", "s3cret", 1.0) is Result.STALE
    # A nonce is bound to its realm.
    challenge_b = nm.challenge("other.example.com", 0.0)[0]
    moved = answer(challenge_b.replace("other.example.com", REALM))
    assert nm.verify(moved, "REGISTER", "s3cret", 1.0) is Result.STALE
    assert nm.verify({**creds, "nonce": "!!"}, "REGISTER", "s3cret", 1.0) is Result.WRONG


@pytest.mark.parametrize(
    "change",
    [
        {"username": None},
        {"response": None},
        {"nc": "1"},
        {"nc": "00000000"},
        {"nc": None},
        {"cnonce": None},
        {"qop": "auth-int"},
        {"algorithm": "SHA-1"},
    ],
)
def test_malformed_credentials(change: dict[str, str | None]) -> None:
    nm = NonceManager(SECRET)
    challenge = nm.challenge(REALM, 0.0)[0]
    creds: dict[str, str] = answer(challenge)
    for key, value in change.items():
        if value is None:
            creds.pop(key)
        else:
            creds[key] = value
    assert nm.verify(creds, "REGISTER", "s3cret", 1.0) is Result.MALFORMED


def test_legacy_no_qop_clients() -> None:
    nm = NonceManager(SECRET)
    (challenge,) = nm.challenge(REALM, 0.0, algorithms=("MD5",))
    legacy_challenge = challenge.replace(', qop="auth"', "")
    creds = answer(legacy_challenge)
    assert "qop" not in creds and "nc" not in creds
    assert nm.verify(creds, "REGISTER", "s3cret", 1.0) is Result.OK
    # Without a nonce count the nonce is single-use.
    assert nm.verify(creds, "REGISTER", "s3cret", 2.0) is Result.REPLAY
    strict = NonceManager(SECRET, allow_legacy=False)
    assert strict.verify(answer(legacy_challenge), "REGISTER", "s3cret", 1.0) is Result.MALFORMED


def test_tracking_table_is_bounded_and_fails_safe() -> None:
    nm = NonceManager(SECRET, max_tracked=8)
    challenges = [nm.challenge(REALM, float(i))[0] for i in range(20)]
    for i, challenge in enumerate(challenges):
        assert nm.verify(answer(challenge), "REGISTER", "s3cret", 20.0 + i) is Result.OK
    assert len(nm._seen) <= 8
    # The oldest nonces were forgotten: replaying them is refused as stale, not accepted.
    assert nm.verify(answer(challenges[0]), "REGISTER", "s3cret", 50.0) is Result.STALE
    assert nm.verify(answer(challenges[-1], nc=2), "REGISTER", "s3cret", 50.0) is Result.OK


def test_deterministic_nonces_with_injected_randomness() -> None:
    counter = itertools.count()
    nm = NonceManager(SECRET, token_bytes=lambda n: next(counter).to_bytes(n, "big"))
    assert nm.issue(REALM, 5.0) != nm.issue(REALM, 5.0)
    twin = NonceManager(SECRET, token_bytes=lambda n: bytes(n))
    assert twin.issue(REALM, 5.0) == NonceManager(SECRET, token_bytes=lambda n: bytes(n)).issue(REALM, 5.0)
    with pytest.raises(ValueError):
        NonceManager(b"short")


def test_select_challenge_prefers_sha256() -> None:
    nm = NonceManager(SECRET)
    sha, md5 = nm.challenge(REALM, 0.0)
    assert select_challenge([md5, sha]) == sha
    assert select_challenge(["Basic realm=x", md5]) == md5
    assert select_challenge(["Digest algorithm=SHA-1, nonce=x"]) is None


def test_authorization_for_rejects_unanswerable_challenges() -> None:
    for bad in ("Basic realm=x", 'Digest realm="r"', 'Digest realm="r", nonce="n", qop="auth-int"'):
        with pytest.raises(ValueError):
            authorization_for(bad, "REGISTER", "sip:x", "u", "p", "c")
