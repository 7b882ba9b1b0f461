"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from voipbin.core.clock import Clock
from voipbin.events.bus import InProcessBus
from voipbin.store.db import Store
from voipbin.store.models import Base


async def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", InProcessBus(), Clock())
    await store.migrate()
    async with store.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await store.close()

    assert diff == []
    assert set(Base.metadata.tables) <= tables


async def test_migrating_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    for _ in range(2):
        store = Store(url, InProcessBus(), Clock())
        await store.migrate()
        await store.close()
