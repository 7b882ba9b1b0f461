"""Customer webhooks: every event of a customer, signed, delivered at least once.

Deliveries are rows written in the transaction that produced the event, so a crash or restart
loses none. The dispatcher claims due rows, POSTs them (or the configured method), and on a
timeout, connection error or 5xx retries with exponential backoff; a 4xx is final. The delivery
id header stays the same across retries so receivers can drop duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.core.clock import Clock, format_timestamp
from voipbin.core.ids import new_id
from voipbin.events.model import Event
from voipbin.store.db import Store
from voipbin.store.models import Customer, WebhookDelivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-VoIPBIN-Signature"
DELIVERY_HEADER = "X-VoIPBIN-Delivery-Id"
EVENT_HEADER = "X-VoIPBIN-Event"
TIMESTAMP_HEADER = "X-VoIPBIN-Timestamp"

PENDING, SENDING, DELIVERED, REJECTED, ABANDONED = "pending", "sending", "delivered", "rejected", "abandoned"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    return hmac.compare_digest(sign(body, secret), signature)


async def queue_deliveries(session: AsyncSession, events: Sequence[Event]) -> None:
    """Before-commit hook: one delivery row per event of a customer with a webhook."""
    customer_ids = {e.customer_id for e in events}
    rows = await session.execute(
        select(Customer).where(Customer.id.in_(customer_ids), Customer.webhook_uri != "")
    )
    targets = {c.id: c for c in rows.scalars()}
    for event in events:
        customer = targets.get(event.customer_id)
        if customer is None:
            continue
        session.add(
            WebhookDelivery(
                id=new_id(),
                customer_id=customer.id,
                event_id=event.id,
                event_type=event.event_type,
                method=customer.webhook_method or "POST",
                uri=customer.webhook_uri,
                body=json.dumps(event.frame(), separators=(",", ":")),
                status=PENDING,
                next_attempt_at=event.timestamp,
                tm_create=event.timestamp,
            )
        )


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float
    base_s: float
    max_s: float
    max_age_s: float

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_s, self.base_s * 2 ** max(0, attempts - 1)))


class WebhookDispatcher:
    BATCH = 100
    ERROR_PAUSE_S = 1.0  # after a failed round (the database away): try again this soon
    RELEASE_EVERY_S = 5.0  # how often claims whose lease ran out go back to the queue

    def __init__(self, store: Store, clock: Clock, policy: RetryPolicy) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        # A round that failed (the database went away) leaves rows it claimed 'sending': the next
        # round records the outcomes of those already sent, and puts the others back in the queue.
        self._held: set[str] = set()
        self._outcomes: dict[str, dict[str, object]] = {}

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._policy.timeout_s, follow_redirects=False)
        await self._release_stale_claims()
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client:
            await self._client.aclose()

    async def wake(self, _events: Sequence[Event] = ()) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        released = asyncio.get_running_loop().time()
        while True:
            try:
                if asyncio.get_running_loop().time() - released > self.RELEASE_EVERY_S:
                    # Claims of a node that died mid-send come back even while every node runs on.
                    await self._release_stale_claims()
                    released = asyncio.get_running_loop().time()
                if not await self.deliver_due():
                    await self._sleep_until_due()
            except Exception:  # the database may be away for a while; go on once it is back
                log.exception("webhook dispatch round failed")
                await asyncio.sleep(self.ERROR_PAUSE_S)

    async def _sleep_until_due(self) -> None:
        async with self._store.session() as session:
            next_at = await session.scalar(
                select(WebhookDelivery.next_attempt_at)
                .where(WebhookDelivery.status == PENDING)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(1)
            )
        timeout = 60.0
        if next_at is not None:
            timeout = max(0.0, min(timeout, (next_at - self._clock.read()).total_seconds()))
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

    async def deliver_due(self) -> bool:
        """Deliver one batch of due rows; True when a batch was found (more may wait)."""
        if self._held:
            await self._settle()
        claimed = await self._claim_due()
        if not claimed:
            return False
        self._held.update(row.id for row in claimed)
        by_customer: dict[str, list[WebhookDelivery]] = defaultdict(list)
        for delivery in claimed:
            by_customer[delivery.customer_id].append(delivery)
        # Every customer's run ends before a failure is raised: none may still be sending when
        # the next round releases what this one held.
        results = await asyncio.gather(*(self._deliver_in_order(rows) for rows in by_customer.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return True

    async def _settle(self) -> None:
        """What a failed round left: outcomes known but not recorded, and rows not tried yet."""
        untried = self._held - self._outcomes.keys()
        async with self._store.transaction() as tx:
            for row_id, values in self._outcomes.items():
                await tx.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row_id).values(**values))
            if untried:
                await tx.session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(list(untried)), WebhookDelivery.status == SENDING)
                    .values(status=PENDING, next_attempt_at=self._clock.read())
                )
        self._held.clear()
        self._outcomes.clear()

    async def _claim_due(self) -> list[WebhookDelivery]:
        now = self._clock.read()
        lease = now + timedelta(seconds=self._policy.timeout_s * 4 + 30)
        async with self._store.transaction() as tx:
            session = tx.session
            rows = (
                await session.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
                    .order_by(WebhookDelivery.tm_create)
                    .limit(self.BATCH)
                )
            ).all()
            claimed = []
            for row in rows:
                # Conditional update: only one dispatcher (of several nodes) wins each row.
                result = await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.status == PENDING)
                    .values(status=SENDING, next_attempt_at=lease)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(row)
        return claimed

    async def _release_stale_claims(self) -> None:
        """Rows left 'sending' by a process that died go back to the queue once their lease ends."""
        async with self._store.transaction() as tx:
            await tx.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.status == SENDING, WebhookDelivery.next_attempt_at <= self._clock.read())
                .values(status=PENDING)
            )

    async def _deliver_in_order(self, rows: list[WebhookDelivery]) -> None:
        for index, row in enumerate(rows):
            if not await self._attempt(row):
                # The target is failing: postpone the rest untried, keeping their order.
                await self._postpone(rows[index + 1 :])
                return

    async def _attempt(self, row: WebhookDelivery) -> bool:
        assert self._client is not None
        body = row.body.encode()
        async with self._store.session() as session:
            secret = await session.scalar(select(Customer.webhook_secret).where(Customer.id == row.customer_id))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "voipbin-webhook/1.0",
            DELIVERY_HEADER: row.id,
            EVENT_HEADER: row.event_type,
            TIMESTAMP_HEADER: format_timestamp(row.tm_create),
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        status_code, error = 0, ""
        try:
            response = await self._client.request(row.method, row.uri, content=body, headers=headers)
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except ValueError as exc:  # an unusable URL stored before validation caught it
            error = str(exc)[:500]
        return await self._record(row, status_code, error)

    async def _record(self, row: WebhookDelivery, status_code: int, error: str) -> bool:
        now = self._clock.now()
        attempts = row.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error,
            "tm_update": now,
        }
        delivered = 200 <= status_code < 400
        if delivered:
            values["status"] = DELIVERED
        elif 400 <= status_code < 500:
            values["status"] = REJECTED
        elif (now - row.tm_create).total_seconds() > self._policy.max_age_s:
            values["status"] = ABANDONED
        else:
            values["status"] = PENDING
            values["next_attempt_at"] = now + self._policy.delay(attempts)
        try:
            async with self._store.transaction() as tx:
                await tx.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(**values))
        except Exception:
            self._outcomes[row.id] = values  # recorded once the database is back, not sent again
            raise
        self._held.discard(row.id)
        if not delivered:
            log.info("webhook %s to %s: %s", row.id, row.uri, error or f"HTTP {status_code}")
        return delivered or 400 <= status_code < 500  # a 4xx is final, not a failing target

    async def _postpone(self, rows: list[WebhookDelivery]) -> None:
        if not rows:
            return
        retry_at: datetime = self._clock.read() + self._policy.delay(1)
        async with self._store.transaction() as tx:
            await tx.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([r.id for r in rows]))
                .values(status=PENDING, next_attempt_at=retry_at)
            )
        self._held.difference_update(r.id for r in rows)
