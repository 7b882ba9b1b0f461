"""The running platform: every long-lived service of one instance, started and stopped together."""

from __future__ import annotations

import logging
from datetime import timedelta

from voipbin.auth.tokens import JwtSigner, load_or_create_secret
from voipbin.calls.manager import CallManager
from voipbin.config import Settings
from voipbin.core.clock import Clock
from voipbin.events.bus import EventBus, InProcessBus
from voipbin.events.webhooks import RetryPolicy, WebhookDispatcher, queue_deliveries
from voipbin.mail.outbox import Mailer, make_mailer
from voipbin.sip.service import SipService
from voipbin.speech.service import SpeechService
from voipbin.store.db import Store

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: Settings, clock: Clock | None = None, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self.bus: EventBus = bus or InProcessBus()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_url, self.bus, self.clock)
        self.mailer: Mailer = make_mailer(settings.smtp_url, settings.mail_dir)
        self.jwt = JwtSigner(
            load_or_create_secret(settings.data_dir / "jwt.key"), timedelta(seconds=settings.jwt_lifetime_s)
        )
        self.webhooks = WebhookDispatcher(
            self.store,
            self.clock,
            RetryPolicy(
                timeout_s=settings.webhook_timeout_s,
                base_s=settings.webhook_retry_base_s,
                max_s=settings.webhook_retry_max_s,
                max_age_s=settings.webhook_max_age_s,
            ),
        )
        self.sip = SipService(settings, self.store)
        self.speech = SpeechService(cache_dir=settings.data_dir / "tts-cache", stt_engine=settings.stt_engine)
        self.calls = CallManager(self)
        self.sip.ua.on_incoming = self.calls.incoming
        self.store.before_commit.append(queue_deliveries)
        self.store.after_commit.append(self.webhooks.wake)
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        from voipbin.accounts.bootstrap import ensure_sandbox_admin

        await self.store.migrate()
        await ensure_sandbox_admin(self)
        await self.webhooks.start()
        await self.sip.start()
        await self.calls.recover()
        self.started = True
        log.info("platform started (database %s)", self.store.engine.url.render_as_string(hide_password=True))

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.calls.stop()
        await self.sip.stop()
        await self.speech.stop()
        await self.webhooks.stop()
        await self.bus.close()
        await self.store.close()
