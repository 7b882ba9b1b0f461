"""The SIP service of a platform: stack, registrar and user agent wired to the customer's data."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Literal

from sqlalchemy import select

from voipbin.config import Settings
from voipbin.media.endpoint import MediaEngine
from voipbin.sip.digest import NonceManager, Result, parse_auth_header
from voipbin.sip.errors import ParseError
from voipbin.sip.flood import FloodLimiter
from voipbin.sip.location import Binding, LocationService, Peer
from voipbin.sip.message import Address, Request, make_response
from voipbin.sip.registrar import Account, Addressed, FailureThrottle, Registrar, failure_key
from voipbin.sip.session_timer import SessionTimerPolicy
from voipbin.sip.shared_location import SharedLocation
from voipbin.sip.stack import Incoming, SipStack
from voipbin.sip.ua import ALLOW, Liveness, SipCall, UserAgent
from voipbin.store.db import Store
from voipbin.store.models import Extension
from voipbin.store.secrets import shared_secret

log = logging.getLogger(__name__)

EXPIRY_SWEEP_S = 15.0
KEEPALIVE_ANSWER_S = 5.0
# Credentials change rarely and every change is an extension_* event; the TTL only bounds how
# long a cache could be wrong if an event were ever missed.
ACCOUNT_CACHE_S = 60.0
# Called when an extension's registrations change (customer_id, extension).
RegistrationListener = Callable[[str, str], None]


class SipService:
    def __init__(self, settings: Settings, store: Store, wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.now = wall_clock
        self.location = _make_location(settings)
        # Rekeyed with the install's shared secret in ``start``; nothing is issued before that.
        self.nonces = NonceManager(secrets.token_bytes(32), lifetime=settings.sip_nonce_lifetime_s)
        self.registrar = Registrar(
            self.nonces,
            self.location,
            settings.domain,
            FailureThrottle(settings.sip_auth_failure_limit, 60.0, 60.0),
            tuple(a.strip() for a in settings.sip_digest.split(",") if a.strip()),
        )
        self.stack = SipStack(settings.host, settings.sip_port, settings.advertised_address)
        self.media = MediaEngine(settings.host, settings.rtp_port_first, settings.rtp_port_last)
        liveness = Liveness(settings.media_timeout_s, SessionTimerPolicy(settings.session_expires_s, settings.session_min_se_s))
        self.ua = UserAgent(self.stack, self.media, settings.advertised_address, liveness)
        self.stack.on_request = self._on_request
        self.stack.admit = self._admit
        self.stack.on_flow_closed = self._flow_closed
        self.invite_flood = FloodLimiter(settings.sip_invite_rate, burst=max(1.0, 2 * settings.sip_invite_rate))
        self.register_flood = FloodLimiter(settings.sip_register_rate, burst=max(1.0, 2 * settings.sip_register_rate))
        self.registration_listeners: list[RegistrationListener] = []
        self._accounts: dict[tuple[str | None, str], tuple[float, Account | None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.nonces.rekey(await shared_secret(self.store, "sip_nonce", self.settings.data_dir / "sip.key"))
        if isinstance(self.location, SharedLocation):
            await self.location.start()
        await self.media.start()
        await self.stack.start()
        self.ua.start()
        self._sweeper = asyncio.create_task(self._sweep_expired())
        self._watcher = asyncio.create_task(self._forget_changed_accounts())
        if self.settings.tcp_keepalive_s > 0:
            self._keepalive = asyncio.create_task(self._keep_tcp_flows_alive())
        log.info("SIP on udp/tcp %s:%d", self.settings.host, self.stack.port)

    async def start_replica(self) -> None:
        """On a node that takes no calls: only follow the install's registrations (for the API)."""
        if isinstance(self.location, SharedLocation):
            await self.location.start()

    async def stop(self) -> None:
        for task in (self._sweeper, self._watcher, self._keepalive):
            if task:
                task.cancel()
        await self.ua.close()
        await self.stack.stop()
        await self.media.stop()
        if isinstance(self.location, SharedLocation):
            await self.location.stop()

    async def call_extension(self, customer_id: str, extension: str, caller: Address) -> SipCall:
        """Ring every phone registered to the extension (ring-all)."""
        bindings = self.location.lookup(customer_id, extension, self.now())
        callee = f"sip:{extension}@{self.settings.registrar_domain(customer_id)}"
        return await self.ua.call(bindings, caller, callee)

    def registrations(self, customer_id: str, extension: str) -> list[Binding]:
        return self.location.lookup(customer_id, extension, self.now())

    def _admit(self, request: Request, source: Peer) -> bool:
        """Scanners flood with new calls and registrations; each source gets a fair rate."""
        if request.method == "INVITE" and not request.to_addr.tag:
            return self.invite_flood.allow(source[1], time.monotonic())
        if request.method == "REGISTER":
            return self.register_flood.allow(source[1], time.monotonic())
        return True

    async def _on_request(self, incoming: Incoming) -> None:
        if incoming.request.method == "REGISTER":
            await self._register(incoming)
        elif incoming.request.method == "INVITE" and not incoming.request.to_addr.tag:
            identity = await self._caller_identity(incoming)
            if identity is not False:
                await self.ua.handle(incoming, identity)
        elif not await self.ua.handle(incoming):
            refusal = make_response(incoming.request, 405)
            refusal.headers.add("Allow", ALLOW + ", REGISTER")
            incoming.respond(refusal)

    async def _register(self, incoming: Incoming) -> None:
        try:
            addressed = self.registrar.addressed(incoming.request)
        except ParseError as error:
            incoming.reply(error.status_code, error.reason[:100])
            return
        account = await self._account(addressed)
        outcome = self.registrar.handle(incoming.request, incoming.source, account, self.now())
        incoming.respond(outcome.response)
        if account and (outcome.saved or outcome.removed):
            self._notify(account.customer_id, account.extension)

    async def _caller_identity(self, incoming: Incoming) -> tuple[str, str] | None | Literal[False]:
        """Who an INVITE claims to be. From one of our phones (its From names a customer's
        domain) it must prove it with digest: (customer_id, extension) when it did, False when
        it was challenged or refused. None for callers from outside (trunks), who may only
        reach numbers."""
        request = incoming.request
        try:
            caller = request.from_addr.sip_uri
        except ParseError:
            return None
        customer_id = self.registrar.customer_of(caller)
        if customer_id is None or not caller.user:
            return None
        account = await self._account(Addressed(caller.user, customer_id))
        realm = self.registrar.realm_for(customer_id)
        value = request.headers.get("Proxy-Authorization") or request.headers.get("Authorization")
        credentials = parse_auth_header(value) if value else None
        now, source = self.now(), failure_key(incoming.source, caller.user)
        if self.registrar.throttle.blocked(source, now):
            incoming.reply(403, "Too Many Failed Attempts")
            return False
        result = None
        if credentials is not None and account is not None and credentials.get("username") == account.extension:
            result = self.registrar.nonces.verify(credentials, "INVITE", account.password, now, realm=realm)
        if result is Result.OK and account is not None:
            return (account.customer_id, account.extension)
        if credentials is None or result in (Result.STALE, Result.REPLAY):
            challenge = make_response(request, 407)
            for header in self.registrar.nonces.challenge(
                realm, now, stale=result is not None, algorithms=self.registrar.algorithms
            ):
                challenge.headers.add("Proxy-Authenticate", header)
            incoming.respond(challenge)
            return False
        self.registrar.throttle.failed(source, now)
        incoming.reply(403)
        return False

    async def _account(self, addressed: Addressed) -> Account | None:
        """The extension a REGISTER addresses; cached, since every REGISTER (and its challenge) asks."""
        key = (addressed.customer_id, addressed.user)
        cached = self._accounts.get(key)
        if cached is not None and cached[0] > self.now():
            return cached[1]
        account = await self._load_account(addressed)
        if len(self._accounts) >= 10_000:  # scanners try endless names; keep the cache bounded
            self._accounts.clear()
        self._accounts[key] = (self.now() + ACCOUNT_CACHE_S, account)
        return account

    async def _forget_changed_accounts(self) -> None:
        async for event in self.store.bus.subscribe():
            if event.event_type.startswith("extension_"):
                self._accounts.clear()

    async def _load_account(self, addressed: Addressed) -> Account | None:
        query = select(Extension).where(Extension.extension == addressed.user, Extension.tm_delete.is_(None))
        if addressed.customer_id:
            query = query.where(Extension.customer_id == addressed.customer_id)
        async with self.store.session() as session:
            found = (await session.scalars(query.limit(2))).all()
        if len(found) != 1:
            return None  # unknown, or the same extension in several customers with no domain to tell
        return Account(found[0].customer_id, found[0].extension, found[0].password)

    def _flow_closed(self, peer: Peer) -> None:
        """A phone's TCP connection ended: the calls it carried are over. Its registrations stay
        (the phone may connect again, or be reached at its Contact) until they expire."""
        self.ua.flow_closed(peer)

    def _drop_flow(self, peer: Peer) -> None:
        """A flow proved dead: the registrations through it can reach nobody, and it closes."""
        for binding in [b for b in self.location.all() if b.source == peer]:
            self.location.remove(binding.customer_id, binding.extension, binding.contact)
            self._notify(binding.customer_id, binding.extension)
        self.stack.close_flow(peer)

    async def _keep_tcp_flows_alive(self) -> None:
        """An OPTIONS on every phone's TCP connection; one that goes unanswered is closed (RFC 5626's
        idea of a flow that died without a FIN, as behind a NAT or a cut cable)."""
        while True:
            await asyncio.sleep(self.settings.tcp_keepalive_s)
            flows = {b.source: b for b in self.location.all() if b.source[0] == "tcp"}
            for peer, binding in flows.items():
                self.ua.spawn(self._ping(peer, binding))

    async def _ping(self, peer: Peer, binding: Binding) -> None:
        options = self.ua.options_request(binding.contact, peer)
        try:
            await asyncio.wait_for(self.stack.request(options, peer).final(), KEEPALIVE_ANSWER_S)
        except TimeoutError:
            log.info("TCP flow %s:%s of %s answers no OPTIONS; closing it", peer[1], peer[2], binding.extension)
            self._drop_flow(peer)

    def _notify(self, customer_id: str, extension: str) -> None:
        for listener in self.registration_listeners:
            listener(customer_id, extension)

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            for binding in self.location.expire(self.now()):
                self._notify(binding.customer_id, binding.extension)


def _make_location(settings: Settings) -> LocationService:
    if settings.redis_url:
        return SharedLocation(settings.redis_url, settings.redis_namespace)
    return LocationService()
