"""SQLAlchemy models: one table per resource, every customer-owned row carries ``customer_id``.

Rows are soft-deleted (``tm_delete`` set), as VoIPBIN does: lists and reads skip them, and a
DELETE answers with the deleted resource. The Alembic migrations in ``migrations/`` create exactly
these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}

    def __init__(self, **values: Any) -> None:
        # Column defaults apply at flush; apply scalar ones now so a new row reads complete
        # (its public view is built before the transaction flushes).
        for column in self.__table__.columns:
            default = column.default
            if column.key not in values and default is not None and default.is_scalar:
                values[column.key] = default.arg  # type: ignore[attr-defined]
        cls = type(self)
        for key, value in values.items():
            if not hasattr(cls, key):
                raise TypeError(f"{key!r} is not an attribute of {cls.__name__}")
            setattr(self, key, value)


def _live(table: str, *columns: str, unique: bool = False) -> Index:
    """An index over rows that are not soft-deleted (partial index on both backends)."""
    where = text("tm_delete IS NULL")
    return Index(
        f"ix_{table}_{'_'.join(columns)}_live",
        *columns,
        unique=unique,
        sqlite_where=where,
        postgresql_where=where,
    )


class Timestamps:
    tm_create: Mapped[datetime] = mapped_column(index=True)
    tm_update: Mapped[datetime | None] = mapped_column(default=None)
    tm_delete: Mapped[datetime | None] = mapped_column(default=None)


class Customer(Timestamps, Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    phone_number: Mapped[str] = mapped_column(String(32), default="")
    address: Mapped[str] = mapped_column(Text, default="")
    webhook_method: Mapped[str] = mapped_column(String(8), default="")
    webhook_uri: Mapped[str] = mapped_column(Text, default="")
    webhook_secret: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (_live("customers", "email"),)


class Agent(Timestamps, Base):
    """A person who logs in for a customer; ``permission`` uses VoIPBIN's bit flags."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    username: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    ring_method: Mapped[str] = mapped_column(String(16), default="ringall")
    status: Mapped[str] = mapped_column(String(16), default="offline")
    permission: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (_live("agents", "username", unique=True),)


class Accesskey(Timestamps, Base):
    __tablename__ = "accesskeys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16), default="")
    tm_expire: Mapped[datetime]


class Signup(Base):
    """A headless signup waiting for its emailed code (``temp_token`` is what the client holds)."""

    __tablename__ = "signups"

    temp_token: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_hash: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    tm_expire: Mapped[datetime]
    tm_create: Mapped[datetime]


class Extension(Timestamps, Base):
    __tablename__ = "extensions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")
    extension: Mapped[str] = mapped_column(String(64))
    # Kept readable: SIP digest needs it (MD5 and SHA-256 over realms), and VoIPBIN returns it.
    password: Mapped[str] = mapped_column(String(255))
    direct_hash: Mapped[str] = mapped_column(String(32), default="")

    __table_args__ = (_live("extensions", "customer_id", "extension", unique=True),)

    @property
    def username(self) -> str:
        """The SIP username; VoIPBIN mirrors ``extension`` here."""
        return self.extension

    @property
    def domain_name(self) -> str:
        return self.customer_id


class Number(Timestamps, Base):
    __tablename__ = "numbers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    number: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(16), default="normal")
    call_flow_id: Mapped[str] = mapped_column(String(36), default="")
    message_flow_id: Mapped[str] = mapped_column(String(36), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    t38_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    emergency_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    tm_purchase: Mapped[datetime | None] = mapped_column(default=None)
    tm_renew: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (_live("numbers", "number", unique=True),)


class EventRecord(Base):
    """Every published event, written in the transaction that caused it (the durable log)."""

    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    topics: Mapped[dict[str, Any]] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column()
    tm_create: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(Base):
    """One event on its way to a customer's webhook; survives restarts until delivered or given up."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    uri: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    last_status_code: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    tm_create: Mapped[datetime]
    tm_update: Mapped[datetime | None] = mapped_column(default=None)
