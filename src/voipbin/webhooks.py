"""Customer webhooks: every event of a customer, signed, delivered at least once.

Deliveries are rows written in the transaction that produced the event, so a crash or restart
loses none. The dispatcher claims due rows, POSTs them (or the configured method), and on a
timeout, connection error or 5xx retries with exponential backoff; a 4xx is final, and so is a
target the egress policy refuses (core.egress). The delivery id header stays the same across
retries so receivers can drop duplicates.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.core.aio import wait_event
from voipbin.core.clock import Clock, format_timestamp
from voipbin.core.egress import EgressBlocked, EgressPolicy, describe_failure, egress_client
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
STOP_SETTLE_S = 5.0


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


@dataclass(eq=False)
class _Lane:
    """One customer's claimed deliveries, sent in order by one task of their own."""

    customer_id: str
    rows: list[WebhookDelivery]
    task: asyncio.Task[None] | None = None
    # Rows whose outcome is written (or which were postponed): nothing more to do for them.
    settled: set[str] = field(default_factory=set)
    # Sent, but the outcome could not be written (the database went away): written on settling.
    outcomes: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def unsettled(self) -> set[str]:
        """Rows still 'sending' with nothing known of them: to be sent again (at least once)."""
        return {row.id for row in self.rows} - self.settled - self.outcomes.keys()


class WebhookDispatcher:
    """Claims due deliveries and sends them, each customer in a lane of its own.

    A customer's deliveries go out one at a time, in order; different customers' go out at once
    (up to ``MAX_LANES``), so a receiver that is slow or away delays only its own customer's.
    """

    LANE_BATCH = 20  # a lane's rows per claim
    MAX_LANES = 32  # customers delivered to at once
    ERROR_PAUSE_S = 1.0  # after a failed round (the database away): try again this soon
    RELEASE_EVERY_S = 5.0  # how often claims whose lease ran out go back to the queue

    def __init__(self, store: Store, clock: Clock, egress: EgressPolicy, policy: RetryPolicy) -> None:
        self._store = store
        self._clock = clock
        self._egress = egress
        self._policy = policy
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._lanes: dict[str, _Lane] = {}
        # Lanes that failed (the database went away) or were stopped with rows still 'sending':
        # the outcomes of those sent are recorded, and the others go back in the queue.
        self._unsettled: list[_Lane] = []
        # A claim runs apart from the dispatch loop: a stop that cancels the loop while a claim commits
        # (the commit goes on in the database) must still learn which rows it took, to give them back.
        self._claim: asyncio.Future[dict[str, list[WebhookDelivery]]] | None = None

    async def start(self) -> None:
        self._client = egress_client(self._egress, timeout=self._policy.timeout_s)
        await self._release_stale_claims()
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        lanes = list(self._lanes.values())
        tasks = [t for t in (self._task, *(lane.task for lane in lanes)) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # What the stopped lanes held goes back to the queue now, not when its lease runs out.
        self._unsettled.extend(lane for lane in lanes if lane.unsettled or lane.outcomes)
        self._unsettled.extend(_Lane(customer_id, rows) for customer_id, rows in (await self._orphaned_claim()).items())
        try:
            await asyncio.wait_for(self._settle(), STOP_SETTLE_S)
        except Exception:  # noqa: BLE001 - the database away: the leases bring them back later
            log.warning("webhook deliveries in flight at stop are left to their leases")
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
                await self._settle()
                self._wakeup.clear()  # before looking: what happens from here on wakes the sleep below
                if not await self._open_lanes():
                    await self._sleep_until_due()
            except Exception:  # the database may be away for a while; go on once it is back
                log.exception("webhook dispatch round failed")
                await asyncio.sleep(self.ERROR_PAUSE_S)

    async def _sleep_until_due(self) -> None:
        """Until a delivery of an idle customer is due, a lane ends, or an event arrives."""
        timeout = 60.0
        if len(self._lanes) < self.MAX_LANES:
            async with self._store.session() as session:
                next_at = await session.scalar(
                    select(WebhookDelivery.next_attempt_at)
                    .where(WebhookDelivery.status == PENDING, WebhookDelivery.customer_id.not_in(list(self._lanes)))
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(1)
                )
            if next_at is not None:
                timeout = max(0.0, min(timeout, (next_at - self._clock.read()).total_seconds()))
        await wait_event(self._wakeup, timeout)

    async def _open_lanes(self) -> bool:
        """Start a lane for each customer with due deliveries and none running; True when any started."""
        room = self.MAX_LANES - len(self._lanes)
        if room <= 0:
            return False
        self._claim = asyncio.ensure_future(self._claim_due(room))
        claimed = await asyncio.shield(self._claim)
        self._claim = None
        for customer_id, rows in claimed.items():
            lane = self._lanes[customer_id] = _Lane(customer_id, rows)
            lane.task = asyncio.create_task(self._run_lane(lane), name=f"webhooks-{customer_id}")
            lane.task.add_done_callback(functools.partial(self._lane_ended_with, customer_id))
        return bool(claimed)

    def _lane_ended_with(self, customer_id: str, _task: asyncio.Task[None]) -> None:
        self._lane_ended(customer_id)

    def _lane_ended(self, customer_id: str) -> None:
        self._lanes.pop(customer_id, None)
        self._wakeup.set()

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            await self._deliver_in_order(lane)
        except Exception:
            log.exception("webhook deliveries of customer %s stopped", lane.customer_id)
            self._unsettled.append(lane)

    async def _settle(self) -> None:
        """What failed lanes left: outcomes known but not recorded, and rows not tried yet."""
        while self._unsettled:
            lane = self._unsettled[0]
            async with self._store.transaction() as tx:
                for row_id, values in lane.outcomes.items():
                    await tx.session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row_id).values(**values))
                if unsettled := lane.unsettled:
                    await tx.session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.id.in_(list(unsettled)), WebhookDelivery.status == SENDING)
                        .values(status=PENDING, next_attempt_at=self._clock.read())
                    )
            self._unsettled.pop(0)

    async def _orphaned_claim(self) -> dict[str, list[WebhookDelivery]]:
        """Rows of a claim that the stopped loop did not live to hand to a lane."""
        claim, self._claim = self._claim, None
        if claim is None:
            return {}
        try:
            return await asyncio.wait_for(claim, STOP_SETTLE_S)
        except Exception:  # noqa: BLE001 - it failed or took too long: nothing was claimed, or the leases bring it back
            return {}

    async def _claim_due(self, customers: int) -> dict[str, list[WebhookDelivery]]:
        """Due rows of up to ``customers`` customers without a lane, oldest first, ``LANE_BATCH`` each."""
        now = self._clock.read()
        # Long enough for a whole lane to go out at the timeout; a lease that ran out means its node died.
        lease = now + timedelta(seconds=self._policy.timeout_s * self.LANE_BATCH * 1.5 + 30)
        claimed: dict[str, list[WebhookDelivery]] = defaultdict(list)
        due = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.customer_id.not_in(list(self._lanes)),
            )
            .order_by(WebhookDelivery.tm_create)
            .limit(self.LANE_BATCH * customers)
        )
        # Every commit with events wakes the dispatcher; most find nothing due, and must not
        # take the (SQLite) write lock to learn it.
        async with self._store.session() as session:
            if (await session.scalar(due.with_only_columns(WebhookDelivery.id).limit(1))) is None:
                return {}
        async with self._store.transaction() as tx:
            session = tx.session
            rows = (await session.scalars(due)).all()
            for row in rows:
                lane = claimed.get(row.customer_id)
                if (lane is None and len(claimed) >= customers) or (lane is not None and len(lane) >= self.LANE_BATCH):
                    continue
                # Conditional update: only one dispatcher (of several nodes) wins each row.
                result = await session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == row.id, WebhookDelivery.status == PENDING)
                    .values(status=SENDING, next_attempt_at=lease)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed[row.customer_id].append(row)
        return dict(claimed)

    async def _release_stale_claims(self) -> None:
        """Rows left 'sending' by a process that died go back to the queue once their lease ends."""
        async with self._store.transaction() as tx:
            await tx.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.status == SENDING, WebhookDelivery.next_attempt_at <= self._clock.read())
                .values(status=PENDING)
            )

    async def _deliver_in_order(self, lane: _Lane) -> None:
        for index, row in enumerate(lane.rows):
            if not await self._attempt(lane, row):
                # The target is failing: postpone the rest untried, keeping their order.
                await self._postpone(lane, lane.rows[index + 1 :])
                return

    async def _attempt(self, lane: _Lane, row: WebhookDelivery) -> bool:
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
        status_code, error, final = 0, "", False
        try:
            response = await self._client.request(row.method, row.uri, content=body, headers=headers)
            status_code = response.status_code
        except (httpx.HTTPError, EgressBlocked, ValueError) as exc:  # ValueError: a URL stored before validation
            error, final = describe_failure(exc), isinstance(exc, EgressBlocked)
        return await self._record(lane, row, status_code, error, final)

    async def _record(self, lane: _Lane, row: WebhookDelivery, status_code: int, error: str, final: bool) -> bool:
        now = self._clock.now()
        attempts = row.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error,
            "tm_update": now,
        }
        delivered = 200 <= status_code < 400
        rejected = final or 400 <= status_code < 500
        if delivered:
            values["status"] = DELIVERED
        elif rejected:
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
            lane.outcomes[row.id] = values  # recorded once the database is back, not sent again
            raise
        lane.settled.add(row.id)
        if not delivered:
            log.info("webhook %s of customer %s: %s", row.id, row.customer_id, error or f"HTTP {status_code}")
        return delivered or rejected  # a 4xx (or a refused target) is final, not a failing target

    async def _postpone(self, lane: _Lane, rows: list[WebhookDelivery]) -> None:
        if not rows:
            return
        retry_at: datetime = self._clock.read() + self._policy.delay(1)
        async with self._store.transaction() as tx:
            await tx.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([r.id for r in rows]))
                .values(status=PENDING, next_attempt_at=retry_at)
            )
        lane.settled.update(r.id for r in rows)
