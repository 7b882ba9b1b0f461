"""SQLAlchemy models: one table per resource, every customer-owned row carries ``customer_id``.

Rows are soft-deleted (``tm_delete`` set), as VoIPBIN does: lists and reads skip them, and a
DELETE answers with the deleted resource. The Alembic migrations in ``migrations/`` create exactly
these tables; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, TypeDecorator, text
from sqlalchemy import inspect as sa_inspect
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
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}

    def __init__(self, **values: Any) -> None:
        # Column defaults apply at flush; apply them now so a new row reads complete
        # (its public view is built before the transaction flushes).
        for attribute in sa_inspect(type(self)).column_attrs:
            default = attribute.columns[0].default
            if attribute.key in values or default is None:
                continue
            if default.is_scalar:
                values[attribute.key] = default.arg
            elif default.is_callable:  # list, dict: SQLAlchemy wraps them to take a context
                values[attribute.key] = default.arg(None)
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
    # Carried in every JWT issued to the agent; raised when its password changes, which makes the
    # tokens issued before worthless.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)

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
    # SHA-256 of the emailed verification link's token: the link works instead of the code.
    link_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    tm_expire: Mapped[datetime]
    tm_create: Mapped[datetime]


class PlatformSecret(Base):
    """A secret every node of an install shares (JWT signing, SIP nonces), made by the first."""

    __tablename__ = "platform_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    tm_create: Mapped[datetime]


class Node(Base):
    """A running process of this install; a node whose heartbeat stops is dead, and its calls end."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(8), default="all")
    sip_address: Mapped[str] = mapped_column(String(255), default="")
    api_url: Mapped[str] = mapped_column(String(255), default="")
    live_calls: Mapped[int] = mapped_column(Integer, default=0)
    tm_start: Mapped[datetime]
    tm_heartbeat: Mapped[datetime] = mapped_column(index=True)


class PasswordReset(Base):
    """An emailed link that sets an agent's password: welcome mail and "forgot password" alike."""

    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(36), index=True)
    tm_expire: Mapped[datetime]
    tm_create: Mapped[datetime]


class EmailChange(Base):
    """A customer's new email address, waiting for its owner to open the link mailed to it."""

    __tablename__ = "email_changes"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    email: Mapped[str] = mapped_column(String(320))
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


class Flow(Timestamps, Base):
    __tablename__ = "flows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(16), default="flow")
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    direct_hash: Mapped[str] = mapped_column(String(32), default="")
    on_complete_flow_id: Mapped[str] = mapped_column(String(36), default="")


class Call(Timestamps, Base):
    """One call leg, VoIPBIN's Call: its addresses, status lifecycle and how it ended."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    owner_type: Mapped[str] = mapped_column(String(16), default="")
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    flow_id: Mapped[str] = mapped_column(String(36), default="")
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    type: Mapped[str] = mapped_column(String(16), default="flow")
    master_call_id: Mapped[str] = mapped_column(String(36), default="")
    chained_call_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recording_id: Mapped[str] = mapped_column(String(36), default="")
    recording_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    groupcall_id: Mapped[str] = mapped_column(String(36), default="")
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    destination: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="dialing", index=True)
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    direction: Mapped[str] = mapped_column(String(16), default="outgoing")
    mute_direction: Mapped[str] = mapped_column(String(8), default="")
    hangup_by: Mapped[str] = mapped_column(String(8), default="")
    hangup_reason: Mapped[str] = mapped_column(String(16), default="")
    call_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    tm_ringing: Mapped[datetime | None] = mapped_column(default=None)
    tm_progressing: Mapped[datetime | None] = mapped_column(default=None)
    tm_hangup: Mapped[datetime | None] = mapped_column(default=None)
    # The node running the call; when it dies, another node ends the call (calls.nodes).
    node_id: Mapped[str] = mapped_column(String(32), default="", index=True)


class Groupcall(Timestamps, Base):
    """Several calls rung together for one destination (an extension's phones); first answer wins."""

    __tablename__ = "groupcalls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    owner_type: Mapped[str] = mapped_column(String(16), default="")
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    status: Mapped[str] = mapped_column(String(16), default="progressing")
    flow_id: Mapped[str] = mapped_column(String(36), default="")
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    destinations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    master_call_id: Mapped[str] = mapped_column(String(36), default="")
    master_groupcall_id: Mapped[str] = mapped_column(String(36), default="")
    ring_method: Mapped[str] = mapped_column(String(16), default="ring_all")
    answer_method: Mapped[str] = mapped_column(String(16), default="hangup_others")
    answer_call_id: Mapped[str] = mapped_column(String(36), default="")
    call_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    answer_groupcall_id: Mapped[str] = mapped_column(String(36), default="")
    groupcall_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    call_count: Mapped[int] = mapped_column(Integer, default=0)
    groupcall_count: Mapped[int] = mapped_column(Integer, default=0)
    dial_index: Mapped[int] = mapped_column(Integer, default=0)
    node_id: Mapped[str] = mapped_column(String(32), default="", index=True)


class Activeflow(Timestamps, Base):
    __tablename__ = "activeflows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    flow_id: Mapped[str] = mapped_column(String(36), default="")
    status: Mapped[str] = mapped_column(String(16), default="running")
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="")
    current_action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    executed_actions: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Recording(Timestamps, Base):
    """A call recorded to one stereo WAV (left: what the far end sent, right: what it heard)."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    owner_type: Mapped[str] = mapped_column(String(16), default="")
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="initiating")
    format: Mapped[str] = mapped_column(String(8), default="wav")
    recording_name: Mapped[str] = mapped_column(String(255), default="")
    filenames: Mapped[list[Any]] = mapped_column(JSON, default=list)
    on_end_flow_id: Mapped[str] = mapped_column(String(36), default="")
    tm_start: Mapped[datetime | None] = mapped_column(default=None)
    tm_end: Mapped[datetime | None] = mapped_column(default=None)


class Transcribe(Timestamps, Base):
    __tablename__ = "transcribes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    on_end_flow_id: Mapped[str] = mapped_column(String(36), default="")
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="progressing")
    language: Mapped[str] = mapped_column(String(16), default="en-US")
    direction: Mapped[str] = mapped_column(String(8), default="both")
    provider: Mapped[str] = mapped_column(String(16), default="")


class Transcript(Base):
    __tablename__ = "transcripts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    transcribe_id: Mapped[str] = mapped_column(String(36), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    # Ours: in a conference's transcription, the participant who said it.
    conferencecall_id: Mapped[str] = mapped_column(String(36), default="")
    message: Mapped[str] = mapped_column(Text)
    tm_transcript: Mapped[datetime | None] = mapped_column(default=None)
    tm_create: Mapped[datetime] = mapped_column(index=True)


class Speaking(Timestamps, Base):
    __tablename__ = "speakings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    language: Mapped[str] = mapped_column(String(16), default="")
    provider: Mapped[str] = mapped_column(String(32), default="")
    voice_id: Mapped[str] = mapped_column(String(64), default="")
    direction: Mapped[str] = mapped_column(String(8), default="")
    status: Mapped[str] = mapped_column(String(16), default="initiating")
    pod_id: Mapped[str] = mapped_column(String(64), default="")


class Provider(Timestamps, Base):
    """A SIP trunk to a carrier, for ``tel`` destinations (the operator's, or a customer's own)."""

    __tablename__ = "providers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(16), default="sip")
    hostname: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=5060)
    transport: Mapped[str] = mapped_column(String(8), default="udp")
    username: Mapped[str] = mapped_column(String(255), default="")
    password: Mapped[str] = mapped_column(String(255), default="")
    tech_prefix: Mapped[str] = mapped_column(String(32), default="")
    tech_postfix: Mapped[str] = mapped_column(String(32), default="")
    tech_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class Ai(Timestamps, Base):
    """An AI voice agent's configuration (VoIPBIN's AI): which model thinks, how it hears and speaks."""

    __tablename__ = "ais"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    engine_model: Mapped[str] = mapped_column(String(160))
    # Write-only in the API (never in a view, an event or a log); the customer's own provider key.
    engine_key: Mapped[str] = mapped_column(Text, default="")
    parameter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    init_prompt: Mapped[str] = mapped_column(Text, default="")
    tts_type: Mapped[str] = mapped_column(String(32), default="")
    tts_voice_id: Mapped[str] = mapped_column(String(255), default="")
    stt_type: Mapped[str] = mapped_column(String(32), default="")
    stt_language: Mapped[str] = mapped_column(String(35), default="")
    vad_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tool_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The customer's own tools: name, description, url, parameters (voipbin.ai.http_tools).
    http_tools: Mapped[list[Any]] = mapped_column(JSON, default=list)
    direct_hash: Mapped[str] = mapped_column(String(32), default="")


class AiCall(Timestamps, Base):
    """One AI session on a call or a conversation (VoIPBIN's AIcall), with the AI's settings as they
    were when it started: a later change of the AI does not reach a session already running."""

    __tablename__ = "aicalls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    assistance_type: Mapped[str] = mapped_column(String(16), default="ai")
    assistance_id: Mapped[str] = mapped_column(String(36), default="")
    ai_engine_model: Mapped[str] = mapped_column(String(160), default="")
    ai_tts_type: Mapped[str] = mapped_column(String(32), default="")
    ai_tts_voice_id: Mapped[str] = mapped_column(String(255), default="")
    ai_stt_type: Mapped[str] = mapped_column(String(32), default="")
    ai_vad_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parameter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    confbridge_id: Mapped[str] = mapped_column(String(36), default="")
    current_member_id: Mapped[str] = mapped_column(String(36), default="")
    status: Mapped[str] = mapped_column(String(16), default="initiating")
    stt_language: Mapped[str] = mapped_column(String(35), default="")
    call_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    tm_end: Mapped[datetime | None] = mapped_column(default=None)


class AiMessage(Timestamps, Base):
    """One turn of an aicall's conversation (VoIPBIN's AIMessage): said, answered, or a tool's round."""

    __tablename__ = "aimessages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    aicall_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    active_ai_id: Mapped[str] = mapped_column(String(36), default="")
    role: Mapped[str] = mapped_column(String(16), default="")
    content: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[str] = mapped_column(String(8), default="")
    # [{id, type, function: {name, arguments}}], arguments a JSON string (the LLM's own shape).
    tool_calls: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tool_call_id: Mapped[str] = mapped_column(String(255), default="")


class AiSummary(Timestamps, Base):
    """A summary of a call's (or a transcribe's) transcript by a model (VoIPBIN's AI summary)."""

    __tablename__ = "ai_summaries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    on_end_flow_id: Mapped[str] = mapped_column(String(36), default="")
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="progressing", index=True)
    language: Mapped[str] = mapped_column(String(35), default="en-US")
    content: Mapped[str] = mapped_column(Text, default="")
    # Internal: the transcription summarised, and until when a node has it in hand (another node,
    # or this one after a restart, takes it up once that has passed).
    transcribe_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)



class Conference(Timestamps, Base):
    """Several calls that hear each other (VoIPBIN's conference), mixed on the node in ``node_id``."""

    __tablename__ = "conferences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(16), default="conference")
    status: Mapped[str] = mapped_column(String(16), default="progressing", index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout: Mapped[int] = mapped_column(Integer, default=0)
    pre_flow_id: Mapped[str] = mapped_column(String(36), default="")
    post_flow_id: Mapped[str] = mapped_column(String(36), default="")
    conferencecall_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recording_id: Mapped[str] = mapped_column(String(36), default="")
    recording_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    transcribe_id: Mapped[str] = mapped_column(String(36), default="")
    transcribe_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tm_end: Mapped[datetime | None] = mapped_column(default=None)
    node_id: Mapped[str] = mapped_column(String(32), default="")


class Conferencecall(Timestamps, Base):
    """One call in a conference (VoIPBIN's conferencecall), with its controls (ours)."""

    __tablename__ = "conferencecalls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    activeflow_id: Mapped[str] = mapped_column(String(36), default="")
    conference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    reference_type: Mapped[str] = mapped_column(String(16), default="call")
    reference_id: Mapped[str] = mapped_column(String(36), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="joining")
    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    deaf: Mapped[bool] = mapped_column(Boolean, default=False)
    hold: Mapped[bool] = mapped_column(Boolean, default=False)
    talking: Mapped[bool] = mapped_column(Boolean, default=False)


class StorageFile(Timestamps, Base):
    """A file a customer uploaded (``POST /v1.0/storage_files``); its bytes are kept in the data dir."""

    __tablename__ = "storage_files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    owner_type: Mapped[str] = mapped_column(String(16), default="")
    owner_id: Mapped[str] = mapped_column(String(36), default="")
    reference_type: Mapped[str] = mapped_column(String(16), default="")
    reference_id: Mapped[str] = mapped_column(String(36), default="")
    type: Mapped[str] = mapped_column(String(16), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    filesize: Mapped[int] = mapped_column(Integer, default=0)
    uri_download: Mapped[str] = mapped_column(Text, default="")
    tm_download_expire: Mapped[datetime | None] = mapped_column(default=None)
