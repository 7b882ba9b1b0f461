"""The registrar (RFC 3261 section 10.3), sans-IO: REGISTER in, response and binding changes out.

Phones register ``<extension>@<customer-id>.registrar.<domain>``; the realm of the digest
challenge is that domain, so a credential is bound to its customer. The sandbox also accepts the
bare customer id or an IP address / ``localhost`` as the domain, finding the customer from the
extension when that is unambiguous. Unknown users are challenged exactly like known ones, with a
realm taken from the request alone, so the answers do not reveal which extensions exist.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate

from voipbin.core.ids import is_uuid
from voipbin.sip.digest import NonceManager, Result, parse_auth_header
from voipbin.sip.errors import ParseError
from voipbin.sip.location import Binding, LocationService, Peer
from voipbin.sip.message import Request, Response, make_response
from voipbin.sip.uri import SipUri

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 7200


@dataclass(frozen=True)
class Account:
    """An extension's SIP credentials, as the registrar needs them."""

    customer_id: str
    extension: str
    password: str


@dataclass(frozen=True)
class Addressed:
    """Whom a REGISTER is for: the user part, and the customer when the domain names one."""

    user: str
    customer_id: str | None


@dataclass
class Outcome:
    response: Response
    saved: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)
    account: Account | None = None
    auth_failed: bool = False


def failure_key(source: Peer, user: str) -> str:
    """What wrong passwords count against: one user from one address. Keyed by the address alone,
    a few guesses would lock out every phone behind it; by the user alone, anyone anywhere could
    lock out its owner."""
    return f"{source[1]} {user}"


@dataclass
class FailureThrottle:
    """Refuses a key (a user at a source address) after ``limit`` failures within ``window`` seconds."""

    limit: int = 10
    window: float = 60.0
    block: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def blocked(self, key: str, now: float) -> bool:
        until = self._blocked_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._blocked_until[key]
            return False
        return True

    def failed(self, key: str, now: float) -> None:
        recent = self._failures.setdefault(key, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.limit:
            self._blocked_until[key] = now + self.block
            del self._failures[key]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class Registrar:
    def __init__(
        self,
        nonces: NonceManager,
        location: LocationService,
        domain: str,
        throttle: FailureThrottle | None = None,
        algorithms: tuple[str, ...] = ("MD5",),
    ) -> None:
        self.nonces = nonces
        self.location = location
        self.domain = domain
        self.throttle = throttle or FailureThrottle()
        # Challenges offered, in order. RFC 8760 would list SHA-256 first, but common softphones
        # (baresip/libre 1.x) abandon a REGISTER when any challenge names an algorithm they lack,
        # so SHA-256 is opt-in (``--sip-digest MD5,SHA-256``); answers in either are verified.
        self.algorithms = algorithms

    def realm_for(self, customer_id: str | None) -> str:
        return f"{customer_id}.registrar.{self.domain}" if customer_id else f"registrar.{self.domain}"

    def addressed(self, request: Request) -> Addressed:
        """The AOR of a REGISTER (its To URI); ParseError when it has none we can serve."""
        uri = request.to_addr.sip_uri
        if not uri.user:
            raise ParseError("REGISTER To URI has no user part", 400)
        return Addressed(uri.user, self.customer_of(uri))

    def customer_of(self, uri: SipUri) -> str | None:
        """The customer a URI's domain names (``<id>.registrar.<domain>`` or the bare id), if any."""
        host = uri.host.lower().strip("[]")
        suffix = f".registrar.{self.domain}"
        if host.endswith(suffix) and is_uuid(host[: -len(suffix)]):
            return host[: -len(suffix)]
        if is_uuid(host):
            return host
        return None

    def handle(self, request: Request, source: Peer, account: Account | None, now: float) -> Outcome:
        """Answer a REGISTER; ``account`` is the extension it addresses, if one exists."""
        addressed = self.addressed(request)
        throttle_key = failure_key(source, addressed.user)
        if self.throttle.blocked(throttle_key, now):
            return Outcome(make_response(request, 403, "Too Many Failed Attempts", to_tag=_tag(request)))
        # From the request's own domain, never from the account found: a realm naming the
        # customer of whatever extension matched would tell a scanner which extensions exist.
        realm = self.realm_for(addressed.customer_id)
        credentials = _credentials(request)
        if credentials is None:
            return Outcome(self._challenge(request, realm, now))
        if account is None or credentials.get("username") != account.extension:
            self.throttle.failed(throttle_key, now)
            return Outcome(make_response(request, 403, "Forbidden", to_tag=_tag(request)), auth_failed=True)
        result = self.nonces.verify(credentials, "REGISTER", account.password, now, realm=realm)
        if result is Result.OK:
            self.throttle.succeeded(throttle_key)
            return self._update_bindings(request, source, account, now)
        if result in (Result.STALE, Result.REPLAY):
            return Outcome(self._challenge(request, realm, now, stale=True))
        if result is Result.MALFORMED:
            return Outcome(make_response(request, 400, "Malformed Authorization", to_tag=_tag(request)))
        self.throttle.failed(throttle_key, now)
        return Outcome(make_response(request, 403, "Forbidden", to_tag=_tag(request)), auth_failed=True)

    def _challenge(self, request: Request, realm: str, now: float, stale: bool = False) -> Response:
        response = make_response(request, 401, to_tag=_tag(request))
        for value in self.nonces.challenge(realm, now, stale=stale, algorithms=self.algorithms):
            response.headers.add("WWW-Authenticate", value)
        return response

    def _update_bindings(self, request: Request, source: Peer, account: Account, now: float) -> Outcome:
        default = _expires_header(request)
        outcome = Outcome(make_response(request, 200, to_tag=_tag(request)), account=account)
        if request.contact_wildcard:
            if default != 0 or request.contacts:
                outcome.response = make_response(request, 400, "Wildcard Contact Needs Expires 0", to_tag=_tag(request))
                return outcome
            outcome.removed = self.location.remove(account.customer_id, account.extension)
            return self._list_bindings(outcome, account, now)
        for contact in request.contacts:
            expires = _contact_expires(contact.params.get("expires"), default)
            uri = contact.uri
            if expires == 0:
                outcome.removed += self.location.remove(account.customer_id, account.extension, uri)
                continue
            if expires < MIN_EXPIRES:
                outcome.response = make_response(request, 423, to_tag=_tag(request))
                outcome.response.headers.add("Min-Expires", str(MIN_EXPIRES))
                return outcome
            binding = Binding(
                customer_id=account.customer_id,
                extension=account.extension,
                contact=uri,
                source=source,
                expires_at=now + min(expires, MAX_EXPIRES),
                call_id=request.call_id,
                cseq=request.cseq.number,
                user_agent=request.headers.get("User-Agent", "") or "",
                registered_at=now,
            )
            self.location.save(binding)
            outcome.saved.append(binding)
        return self._list_bindings(outcome, account, now)

    def _list_bindings(self, outcome: Outcome, account: Account, now: float) -> Outcome:
        headers = outcome.response.headers
        for binding in self.location.lookup(account.customer_id, account.extension, now):
            headers.add("Contact", f"<{binding.contact}>;expires={binding.remaining(now)}")
        headers.add("Date", formatdate(usegmt=True))
        return outcome


def _credentials(request: Request) -> dict[str, str] | None:
    value = request.headers.get("Authorization")
    return parse_auth_header(value) if value else None


def _expires_header(request: Request) -> int:
    return _contact_expires(request.headers.get("Expires"), DEFAULT_EXPIRES)


def _contact_expires(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    raw = raw.strip()
    return min(int(raw), 2**31) if raw.isascii() and raw.isdigit() else default


def _tag(request: Request) -> str:
    # Stable per request, so a retransmitted REGISTER gets the same To tag.
    return format(abs(hash((request.call_id, request.cseq.number))) % 16**10, "x")

