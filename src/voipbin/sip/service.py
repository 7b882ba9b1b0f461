"""The SIP service of a platform: stack, registrar and user agent wired to the customer's data."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import select

from voipbin.auth.tokens import load_or_create_secret
from voipbin.config import Settings
from voipbin.media.endpoint import MediaEngine
from voipbin.sip.digest import NonceManager
from voipbin.sip.errors import ParseError
from voipbin.sip.location import Binding, LocationService
from voipbin.sip.message import Address
from voipbin.sip.registrar import Account, Addressed, FailureThrottle, Registrar
from voipbin.sip.stack import Incoming, SipStack
from voipbin.sip.ua import ALLOW, SipCall, UserAgent
from voipbin.store.db import Store
from voipbin.store.models import Extension

log = logging.getLogger(__name__)

EXPIRY_SWEEP_S = 15.0
# Called when an extension's registrations change (customer_id, extension).
RegistrationListener = Callable[[str, str], None]


class SipService:
    def __init__(self, settings: Settings, store: Store, wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.now = wall_clock
        self.location = LocationService()
        secret = load_or_create_secret(settings.data_dir / "sip.key")
        self.registrar = Registrar(
            NonceManager(secret, lifetime=settings.sip_nonce_lifetime_s),
            self.location,
            settings.domain,
            FailureThrottle(settings.sip_auth_failure_limit, 60.0, 60.0),
            tuple(a.strip() for a in settings.sip_digest.split(",") if a.strip()),
        )
        self.stack = SipStack(settings.host, settings.sip_port, settings.advertised_address)
        self.media = MediaEngine(settings.host, settings.rtp_port_first, settings.rtp_port_last)
        self.ua = UserAgent(self.stack, self.media, settings.advertised_address)
        self.stack.on_request = self._on_request
        self.registration_listeners: list[RegistrationListener] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.media.start()
        await self.stack.start()
        self._sweeper = asyncio.create_task(self._sweep_expired())
        log.info("SIP on udp/tcp %s:%d", self.settings.host, self.stack.port)

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        await self.ua.close()
        await self.stack.stop()
        await self.media.stop()

    async def call_extension(self, customer_id: str, extension: str, caller: Address) -> SipCall:
        """Ring every phone registered to the extension (ring-all)."""
        bindings = self.location.lookup(customer_id, extension, self.now())
        callee = f"sip:{extension}@{self.settings.registrar_domain(customer_id)}"
        return await self.ua.call(bindings, caller, callee)

    def registrations(self, customer_id: str, extension: str) -> list[Binding]:
        return self.location.lookup(customer_id, extension, self.now())

    async def _on_request(self, incoming: Incoming) -> None:
        if incoming.request.method == "REGISTER":
            await self._register(incoming)
        elif not await self.ua.handle(incoming):
            reply = incoming.reply(405)
            reply.headers.add("Allow", ALLOW + ", REGISTER")

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

    async def _account(self, addressed: Addressed) -> Account | None:
        query = select(Extension).where(Extension.extension == addressed.user, Extension.tm_delete.is_(None))
        if addressed.customer_id:
            query = query.where(Extension.customer_id == addressed.customer_id)
        async with self.store.session() as session:
            found = (await session.scalars(query.limit(2))).all()
        if len(found) != 1:
            return None  # unknown, or the same extension in several customers with no domain to tell
        return Account(found[0].customer_id, found[0].extension, found[0].password)

    def _notify(self, customer_id: str, extension: str) -> None:
        for listener in self.registration_listeners:
            listener(customer_id, extension)

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            for binding in self.location.expire(self.now()):
                self._notify(binding.customer_id, binding.extension)
