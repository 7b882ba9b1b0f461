"""Database access: engine, migrations and transactions that carry the events they cause."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from voipbin.core.clock import Clock
from voipbin.core.ids import new_id
from voipbin.events.bus import EventBus
from voipbin.events.model import Event
from voipbin.store.models import EventRecord

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

# Called inside the transaction with the events it emitted (e.g. to queue webhook deliveries).
BeforeCommit = Callable[[AsyncSession, Sequence[Event]], Awaitable[None]]
# Called after a successful commit with the same events.
AfterCommit = Callable[[Sequence[Event]], Awaitable[None]]


class Tx:
    """One unit of work. ``emit`` records an event in the same transaction as the change."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.events: list[Event] = []

    def emit(
        self,
        customer_id: str,
        event_type: str,
        data: dict[str, Any],
        topics: Sequence[str],
    ) -> Event:
        event = Event(
            id=new_id(),
            customer_id=customer_id,
            event_type=event_type,
            topics=tuple(topics),
            data=data,
            timestamp=self.clock.now(),
        )
        self.session.add(
            EventRecord(
                id=event.id,
                customer_id=customer_id,
                event_type=event_type,
                topics={"topics": list(event.topics)},
                data=data,
                tm_create=event.timestamp,
            )
        )
        self.events.append(event)
        return event


MIGRATION_LOCK = 0x766F6970  # any constant the install's nodes agree on ("voip")


class Store:
    def __init__(self, url: str, bus: EventBus, clock: Clock) -> None:
        self.url = url
        self.bus = bus
        self.clock = clock
        self.engine: AsyncEngine = _make_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time and makes others poll for the lock (with sleeps that
        # show up as long tail latency); queueing writers here instead keeps them fair and fast.
        self._write_lock = asyncio.Lock() if url.startswith("sqlite") else None
        self.before_commit: list[BeforeCommit] = []
        self.after_commit: list[AfterCommit] = []

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (also from an older one)."""
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Nodes starting together take turns; the later ones find the schema current.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; writes go through :meth:`transaction`."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A unit of work that commits on success; the only way code here writes."""
        async with self._write_lock or contextlib.nullcontext(), self._sessions() as session:
            tx = Tx(session, self.clock)
            yield tx
            if tx.events:
                for hook in self.before_commit:
                    await hook(session, tx.events)
            await session.commit()
        for event in tx.events:
            await self.bus.publish(event)
        if tx.events:
            for after in self.after_commit:
                await after(tx.events)

    async def close(self) -> None:
        await self.engine.dispose()


def _make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sa_event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer commits; NORMAL sync is safe under WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
