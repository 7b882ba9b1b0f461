"""The running platform: every long-lived service of one instance, started and stopped together."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta

from voipbin.accounts.bootstrap import ensure_sandbox_admin, refuse_exposure_with_default_password
from voipbin.accounts.context import AccountsContext
from voipbin.ai.local import LocalModels
from voipbin.ai.service import AiService
from voipbin.ai.session import AiContext
from voipbin.ai.summaries import SummaryContext, SummaryService
from voipbin.auth.throttle import Throttle, make_throttle
from voipbin.auth.tokens import JwtSigner
from voipbin.calls.context import CallContext
from voipbin.calls.links import LinkSigner
from voipbin.calls.nodes import NodeRegistry
from voipbin.calls.service import CallService
from voipbin.conferences.service import ConferenceContext, ConferenceService
from voipbin.config import Settings
from voipbin.core import logs
from voipbin.core.aio import Background
from voipbin.core.clock import Clock
from voipbin.core.egress import EgressPolicy
from voipbin.events.bus import EventBus, InProcessBus
from voipbin.mail.outbox import Mailer, make_mailer
from voipbin.sip.service import SipService
from voipbin.speech.service import SpeechService
from voipbin.store.db import Store
from voipbin.store.files import Files
from voipbin.store.secrets import shared_secret
from voipbin.webhooks import RetryPolicy, WebhookDispatcher, queue_deliveries

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: Settings, clock: Clock | None = None, bus: EventBus | None = None) -> None:
        _check_role(settings)
        logs.install()  # before anything can log a credential
        self.settings = settings
        self.clock = clock or Clock()
        self.egress = EgressPolicy.from_setting(settings.egress_allow)
        self.bus: EventBus = bus or _make_bus(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.db_url, self.bus, self.clock)
        self.mailer: Mailer = make_mailer(settings.smtp_url, settings.mail_dir)
        self.throttle: Throttle = make_throttle(settings.redis_url, settings.redis_namespace)
        self.accounts = AccountsContext(settings, self.store, self.clock, self.mailer, self.throttle)
        # Rekeyed with the install's shared secret in ``start``; nothing is signed before that.
        self.jwt = JwtSigner(secrets.token_bytes(32), timedelta(seconds=settings.jwt_lifetime_s))
        self.webhooks = WebhookDispatcher(
            self.store,
            self.clock,
            self.egress,
            RetryPolicy(
                timeout_s=settings.webhook_timeout_s,
                base_s=settings.webhook_retry_base_s,
                max_s=settings.webhook_retry_max_s,
                max_age_s=settings.webhook_max_age_s,
            ),
        )
        self.sip = SipService(settings, self.store)
        self.speech = SpeechService(
            cache_dir=settings.data_dir / "tts-cache",
            stt_engine=settings.stt_engine,
            stt_processes=settings.stt_workers or None,
        )
        self.nodes = NodeRegistry(self.store, self.clock, self._end_calls_of, lambda: len(self.calls.live),
                                  role=settings.role, api_url=settings.node_url)
        self.files = Files(settings.data_dir)
        self.background = Background("voipbin.calls")
        self.local_llm = LocalModels(settings.data_dir, os.environ)
        self.ai = AiService(
            AiContext(self.store, self.clock, self.speech.tts, self.speech.transcriber, self.egress), os.environ, self.local_llm
        )
        # Summaries reach calls (to transcribe one, to run a flow) only through the calls' front door.
        self.summaries = SummaryService(SummaryContext(
            self.store, self.clock, self.bus, self.ai.summary_model,
            transcribe_call=lambda customer_id, call_id, language: self.calls.ensure_transcribe(customer_id, call_id, language),
            transcribe_conference=lambda customer_id, conference_id, language: self.conferences.ensure_transcription(
                customer_id, conference_id, language
            ),
            start_flow=lambda customer_id, flow_id, variables, reference: self.calls.start_flow(
                customer_id, flow_id, variables, reference
            ),
        ))
        self.conferences = ConferenceService(
            ConferenceContext(self.store, self.clock, self.sip.media, self.files, self.nodes.id, self.background.spawn,
                              self.speech.transcriber, self.speech.check_transcription,
                              join_elsewhere=lambda request, node_id: self.calls.join_conference_on(request, node_id))
        )
        # Rekeyed with the install's shared secret in ``start``, as the JWT signer is.
        self.links = LinkSigner()
        self.calls = CallService(CallContext(
            settings=settings,
            store=self.store,
            clock=self.clock,
            egress=self.egress,
            ua=self.sip.ua,
            registrations=self.sip.registrations,
            tts=self.speech.tts,
            transcriber=self.speech.transcriber,
            files=self.files,
            spawn=self.background.spawn,
            node_id=self.nodes.id,
            ai_talk=self.ai.talk,
            ai_summary=self.summaries.create,
            conference_join=self.conferences.seat,
            node_sip_address=self.nodes.sip_address_of,
            links=self.links,
        ))
        self.sip.ua.on_incoming = self.calls.incoming
        self.store.before_commit.append(queue_deliveries)
        self.store.after_commit.append(self.webhooks.wake)
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        await self.bus.start()
        await self.store.migrate()
        self.jwt.rekey(await shared_secret(self.store, "jwt", self.settings.data_dir / "jwt.key"))
        self.links.rekey(await shared_secret(self.store, "conference_link", self.settings.data_dir / "conference_link.key"))
        await ensure_sandbox_admin(self.accounts)
        try:
            await refuse_exposure_with_default_password(self.accounts)
        except Exception:
            await self.bus.close()
            await self.store.close()
            raise
        await self.webhooks.start()
        await self.summaries.start()
        await self.conferences.start()
        if self.settings.takes_calls:
            await self.sip.start()
            self.nodes.sip_address = f"{self.settings.advertised_address}:{self.sip.stack.port}"
        else:
            await self.sip.start_replica()
        # SQLite is one node's database: any other node recorded in it is a previous run of this one.
        await self.nodes.start(alone=self.store.url.startswith("sqlite"))
        self.started = True
        log.info("platform started (database %s)", self.store.engine.url.render_as_string(hide_password=True))

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.summaries.stop()
        await self.conferences.stop()
        await self.calls.stop()
        await self.background.close()
        await self.nodes.stop()
        await self.sip.stop()
        await self.speech.stop()
        await self.local_llm.close()
        await self.webhooks.stop()
        await self.bus.close()
        await self.throttle.close()
        await self.store.close()

    async def _end_calls_of(self, node_ids: list[str]) -> None:
        await self.calls.end_calls_of(node_ids)
        await self.conferences.forget_nodes(node_ids)


def _check_role(settings: Settings) -> None:
    if settings.role not in ("all", "api", "media"):
        raise ValueError(f"--role must be all, api or media, not {settings.role!r}")
    if settings.role != "all" and not (settings.redis_url and not settings.db_url.startswith("sqlite")):
        raise ValueError(f"--role {settings.role} is for several nodes: give them --database-url (PostgreSQL) and --redis-url")


def _make_bus(settings: Settings) -> EventBus:
    if settings.redis_url:
        from voipbin.events.redis_bus import RedisBus

        return RedisBus(settings.redis_url, settings.redis_namespace)
    return InProcessBus()
