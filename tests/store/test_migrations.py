"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tests.backends import BACKENDS, backend_changes
from tests.conftest import make_settings
from voipbin.core.clock import Clock
from voipbin.events.bus import InProcessBus
from voipbin.runtime import Platform
from voipbin.store.db import Store, alembic_config
from voipbin.store.models import Base, Extension


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


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_platform_upgrades_an_older_schema_and_keeps_its_data(tmp_path: Path, backend: str) -> None:
    async with backend_changes(backend) as changes:
        settings = make_settings(tmp_path / "data", **changes)
        settings.data_dir.mkdir()
        old = Store(settings.db_url, InProcessBus(), Clock())
        async with old.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0002"))
            await conn.execute(text(
                "INSERT INTO extensions (id, customer_id, name, detail, extension, password, direct_hash, tm_create) "
                "VALUES ('00000000-0000-4000-8000-000000000001', 'c', 'old', '', '100', 'secret', '', CURRENT_TIMESTAMP)"
            ))
        await old.close()

        platform = Platform(settings)
        await platform.start()
        try:
            async with platform.store.session() as session:
                kept = await session.get(Extension, "00000000-0000-4000-8000-000000000001")
            async with platform.store.engine.connect() as conn:
                diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        finally:
            await platform.stop()

    assert kept is not None and kept.name == "old"
    assert diff == []
