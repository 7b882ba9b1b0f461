"""HTTP Digest authentication as SIP uses it (RFC 3261 22, RFC 7616, RFC 8760).

Server side: :class:`NonceManager` issues nonces that carry their issue
time and an HMAC over it (so nothing is stored per challenge), answers
``stale`` for authentic-but-expired nonces, and refuses replays by
tracking the highest nonce-count (nc) seen per nonce.

Client side: :func:`authorization_for` answers a challenge, for outbound
registration to trunks (and for tests).

Algorithms: MD5 and SHA-256, with their ``-sess`` variants; qop ``auth``,
plus the RFC 2069 no-qop form that old phones still send.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from ._grammar import parse_quoted, quote
from .errors import ParseError

__all__ = [
    "ALGORITHMS",
    "NonceManager",
    "Result",
    "authorization_for",
    "compute_ha1",
    "compute_response",
    "parse_auth_header",
    "select_challenge",
]

ALGORITHMS = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")
_CANONICAL_ALG = {a.upper(): a for a in ALGORITHMS}
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_AUTH_SCHEME_RE = re.compile(r"[ \t]*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:[ \t]+(.*))?", re.DOTALL)
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_FUTURE_SKEW = 60.0


def _bytes(text: str) -> bytes:
    # Header text is decoded with surrogateescape; give the client's raw octets back.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _hash(algorithm: str, data: str) -> str:
    if algorithm.upper().startswith("SHA-256"):
        return hashlib.sha256(_bytes(data)).hexdigest()
    return hashlib.md5(_bytes(data), usedforsecurity=False).hexdigest()


def _canonical_algorithm(name: str) -> str | None:
    return _CANONICAL_ALG.get(name.strip().upper())


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) -- the per-user secret a server may store."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The ``response`` value for qop ``auth`` (or none, the RFC 2069 form)."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def parse_auth_header(value: str) -> dict[str, str] | None:
    """Parse ``Digest k=v, k="v", ...`` into a dict with lower-cased keys.

    Returns None for anything that is not a well-formed Digest credential or
    challenge; never raises.  Unquoted values are taken up to the next comma
    or blank, which tolerates clients that forget to quote ``uri``.
    """
    m = _AUTH_SCHEME_RE.fullmatch(value)
    if m is None or m.group(1).lower() != "digest" or m.group(2) is None:
        return None
    rest = m.group(2)
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        name_m = _PARAM_NAME_RE.match(rest, i)
        if name_m is None:
            return None
        i = name_m.end()
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n or rest[i] != "=":
            return None
        i += 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            try:
                val, i = parse_quoted(rest, i)
            except ParseError:
                return None
        else:
            j = i
            while i < n and rest[i] not in " \t,":
                i += 1
            val = rest[j:i]
            if not val:
                return None
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] != ",":
            return None
        key = name_m.group().lower()
        if key in params:
            return None
        params[key] = val
    return params or None


class Result(enum.Enum):
    """Outcome of :meth:`NonceManager.verify` and what to answer.

    OK: authenticated.  STALE: right password, but the nonce is expired or
    not ours (e.g. issued before a restart) -- challenge again with
    ``stale=true`` so the client retries silently.  REPLAY: an nc already
    seen for this nonce -- challenge again.  WRONG: bad credentials --
    challenge again (and count it against the source).  MALFORMED: not a
    usable Digest answer -- 400, or challenge again.
    """

    OK = "ok"
    STALE = "stale"
    REPLAY = "replay"
    WRONG = "wrong"
    MALFORMED = "malformed"


class NonceManager:
    """Issues and checks nonces, challenges, and verifies Digest answers.

    A nonce is ``base64url(issued_ms | random | HMAC(secret, issued_ms |
    random | realm))``: authenticity and age are checked from the nonce
    itself.  Only the nc high-water mark of nonces in use is kept, bounded
    by ``max_tracked``; when that table must forget a live nonce, nonces
    issued up to the forgotten one are answered STALE instead of risking a
    replay.  All time comes from the caller's ``now`` (seconds).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        lifetime: float = 300.0,
        max_tracked: int = 65536,
        allow_legacy: bool = True,
        token_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime
        self.max_tracked = max_tracked
        self.allow_legacy = allow_legacy
        self._token_bytes = token_bytes
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # nonce -> (issued, last nc)
        self._forgotten_upto = float("-inf")

    def rekey(self, secret: bytes) -> None:
        """Issue and verify with ``secret`` from now on (the install's shared one, once loaded)."""
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: bytes, realm: str) -> bytes:
        return hmac.new(self._secret, payload + _bytes(realm), hashlib.sha256).digest()[:16]

    def issue(self, realm: str, now: float) -> str:
        payload = struct.pack(">Q", max(0, int(now * 1000))) + self._token_bytes(8)
        raw = payload + self._mac(payload, realm)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def nonce_status(self, nonce: str, realm: str, now: float) -> tuple[Result, float]:
        """(OK | STALE | WRONG, issue time) for a nonce presented with ``realm``."""
        if not _NONCE_RE.fullmatch(nonce):
            return Result.WRONG, 0.0
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return Result.WRONG, 0.0
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != nonce.encode():
            return Result.WRONG, 0.0  # non-canonical spelling of some other nonce
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload, realm)):
            return Result.WRONG, 0.0
        issued = struct.unpack(">Q", payload[:8])[0] / 1000
        if issued - now > _MAX_FUTURE_SKEW:
            return Result.WRONG, issued
        if now - issued > self.lifetime:
            return Result.STALE, issued
        return Result.OK, issued

    def challenge(
        self,
        realm: str,
        now: float,
        stale: bool = False,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
    ) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm.

        List the strongest first: RFC 8760 clients pick the first they support.
        """
        nonce = self.issue(realm, now)
        out = []
        for name in algorithms:
            algorithm = _canonical_algorithm(name)
            if algorithm is None:
                raise ValueError(f"unsupported digest algorithm {name!r}")
            value = f'Digest realm={quote(realm)}, nonce="{nonce}", algorithm={algorithm}, qop="auth"'
            out.append(value + (", stale=true" if stale else ""))
        return out

    def verify(
        self,
        authorization: Mapping[str, str],
        method: str,
        password: str,
        now: float,
        *,
        realm: str | None = None,
    ) -> Result:
        """Check a parsed Authorization against ``password``.

        ``realm``, when given, must match the credential's.  The response is
        checked before the nonce so that STALE is only ever said to a client
        that knows the password (RFC 7616 3.3).
        """
        try:
            username, arealm, nonce, uri, response = (
                authorization[k] for k in ("username", "realm", "nonce", "uri", "response")
            )
        except KeyError:
            return Result.MALFORMED
        algorithm = _canonical_algorithm(authorization.get("algorithm", "MD5"))
        if algorithm is None:
            return Result.MALFORMED
        if realm is not None and arealm != realm:
            return Result.WRONG

        qop = authorization.get("qop")
        nc_text = authorization.get("nc")
        cnonce = authorization.get("cnonce")
        if qop is None:
            if not self.allow_legacy or algorithm.endswith("-sess"):
                return Result.MALFORMED
            nc = 0
        else:
            if qop.lower() != "auth" or cnonce is None or nc_text is None:
                return Result.MALFORMED
            if not _NC_RE.fullmatch(nc_text) or int(nc_text, 16) == 0:
                return Result.MALFORMED
            nc = int(nc_text, 16)

        expected = compute_response(
            algorithm=algorithm,
            ha1=compute_ha1(algorithm, username, arealm, password),
            nonce=nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc_text,
            cnonce=cnonce,
        )
        if not response.isascii() or not hmac.compare_digest(
            expected.encode(), response.lower().encode()
        ):
            return Result.WRONG

        status, issued = self.nonce_status(nonce, arealm, now)
        if status is not Result.OK:
            return Result.STALE
        return self._record_nc(nonce, issued, nc, now)

    def _record_nc(self, nonce: str, issued: float, nc: int, now: float) -> Result:
        seen = self._seen.get(nonce)
        if seen is None:
            if issued <= self._forgotten_upto:
                return Result.STALE
        elif nc == 0 or nc <= seen[1]:
            # No-qop answers carry no nc, so their nonce is single-use.
            return Result.REPLAY
        self._seen[nonce] = (issued, nc)
        self._seen.move_to_end(nonce)
        if len(self._seen) > self.max_tracked:
            self._evict(now)
        return Result.OK

    def _evict(self, now: float) -> None:
        horizon = now - self.lifetime
        for key in [k for k, (issued, _) in self._seen.items() if issued < horizon]:
            del self._seen[key]  # expired: rejected by age already
        while len(self._seen) > self.max_tracked * 3 // 4:
            _, (issued, _) = self._seen.popitem(last=False)
            self._forgotten_upto = max(self._forgotten_upto, issued)


def select_challenge(values: Iterable[str]) -> str | None:
    """Pick the challenge to answer among several: the first SHA-256 one, else MD5."""
    best: tuple[int, str] | None = None
    for value in values:
        params = parse_auth_header(value)
        if params is None or "nonce" not in params:
            continue
        algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
        if algorithm is None:
            continue
        rank = 0 if algorithm.startswith("SHA-256") else 1
        if best is None or rank < best[0]:
            best = (rank, value)
    return best[1] if best else None


def authorization_for(
    challenge: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int | str = 1,
) -> str:
    """An Authorization / Proxy-Authorization value answering ``challenge``.

    Uses qop ``auth`` when offered, the RFC 2069 form when no qop is offered.
    Raises ValueError for challenges it cannot answer.
    """
    params = parse_auth_header(challenge)
    if params is None or "nonce" not in params or "realm" not in params:
        raise ValueError("not a Digest challenge")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    if algorithm is None:
        raise ValueError(f"unsupported digest algorithm {params.get('algorithm')!r}")
    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if offered and "auth" not in offered:
        raise ValueError(f"unsupported qop {params['qop']!r}")
    qop = "auth" if offered else None
    nc_text = nc if isinstance(nc, str) else f"{nc:08x}"
    if not _NC_RE.fullmatch(nc_text):
        raise ValueError(f"bad nonce count {nc!r}")

    realm, nonce = params["realm"], params["nonce"]
    response = compute_response(
        algorithm=algorithm,
        ha1=compute_ha1(algorithm, username, realm, password),
        nonce=nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f"username={quote(username)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop or algorithm.endswith("-sess"):
        parts.append(f"cnonce={quote(cnonce)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    if "opaque" in params:
        parts.append(f"opaque={quote(params['opaque'])}")
    return "Digest " + ", ".join(parts)
