"""Alembic environment: migrations always run on a connection the platform hands in."""

from __future__ import annotations

from alembic import context

from voipbin.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through voipbin (Store.migrate), which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
