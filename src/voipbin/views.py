"""Public shapes of resources, as VoIPBIN's seed-era spec and the quickstart show them.

The same dict goes out in REST responses, WebSocket frames and webhook bodies: ``announce`` is
the one place a change of a resource becomes an event, so every layer (the API's routes, live
calls) publishes the shape a client reads back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, model_validator

from voipbin.core.clock import format_timestamp
from voipbin.events.topics import customer_topic
from voipbin.store import models
from voipbin.store.db import Tx

Timestamp = Annotated[datetime | None, PlainSerializer(format_timestamp, return_type=str)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
LongText = Annotated[str, StringConstraints(max_length=4096)]
WebhookMethod = Literal["", "POST", "GET", "PUT", "DELETE"]


class Resource(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Owned(Resource):
    id: str
    customer_id: str
    tm_create: Timestamp
    tm_update: Timestamp = None
    tm_delete: Timestamp = None


class CustomerOut(Resource):
    id: str
    name: str
    detail: str
    email: str
    phone_number: str
    address: str
    webhook_method: str
    webhook_uri: str
    status: str
    email_verified: bool
    tm_create: Timestamp
    tm_update: Timestamp = None
    tm_delete: Timestamp = None


class CustomerSelf(CustomerOut):
    """What a customer sees of itself: also the secret its webhooks are signed with."""

    webhook_secret: str


class AgentOut(Owned):
    username: str
    name: str
    detail: str
    ring_method: str
    status: str
    permission: int


class AccesskeyOut(Owned):
    name: str
    detail: str
    token_prefix: str
    tm_expire: Timestamp


class AccesskeyCreated(AccesskeyOut):
    token: str = Field("", description="The secret itself: shown in this response only, store it now.")


class ContactOut(BaseModel):
    """One phone registered to an extension."""

    uri: str
    source: str = Field(description="transport:host:port the registration came from")
    expires: int = Field(description="Seconds until the registration lapses.")
    user_agent: str


class ExtensionOut(Owned):
    name: str
    detail: str
    extension: str
    username: str
    password: str
    domain_name: str
    direct_hash: str
    registered: bool = False
    contacts: list[ContactOut] = []


class NumberOut(Owned):
    number: str
    type: str
    call_flow_id: str
    message_flow_id: str
    name: str
    detail: str
    status: str
    t38_enabled: bool
    emergency_enabled: bool
    tm_purchase: Timestamp = None
    tm_renew: Timestamp = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    result: list[T]
    next_page_token: str = ""


class Strict(BaseModel):
    """Base of request bodies: unknown fields are ignored, as VoIPBIN's server does."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL: refuse it here, for every field at any depth.
        if _holds_nul(data):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


class AddressModel(BaseModel):
    """VoIPBIN's CommonAddress: ``tel`` (E.164), ``extension``, ``sip``, ``agent``..."""

    model_config = ConfigDict(extra="ignore")

    type: Annotated[str, StringConstraints(max_length=32)] = ""
    target: Annotated[str, StringConstraints(max_length=255)] = ""
    target_name: Annotated[str, StringConstraints(max_length=255)] = ""
    name: Annotated[str, StringConstraints(max_length=255)] = ""
    detail: Annotated[str, StringConstraints(max_length=1024)] = ""


class FlowOut(Owned):
    type: str
    name: str
    detail: str
    actions: list[dict[str, Any]]
    direct_hash: str
    on_complete_flow_id: str


class CallOut(Owned):
    owner_type: str
    owner_id: str
    flow_id: str
    activeflow_id: str
    type: str
    master_call_id: str
    chained_call_ids: list[str]
    recording_id: str
    recording_ids: list[str]
    groupcall_id: str
    source: dict[str, Any]
    destination: dict[str, Any]
    status: str
    action: dict[str, Any]
    direction: str
    mute_direction: str
    hangup_by: str
    hangup_reason: str
    metadata: dict[str, Any] = Field(validation_alias="call_metadata")
    tm_ringing: Timestamp = None
    tm_progressing: Timestamp = None
    tm_hangup: Timestamp = None


class GroupcallOut(Owned):
    owner_type: str
    owner_id: str
    status: str
    flow_id: str
    source: dict[str, Any]
    destinations: list[dict[str, Any]]
    master_call_id: str
    master_groupcall_id: str
    ring_method: str
    answer_method: str
    answer_call_id: str
    call_ids: list[str]
    answer_groupcall_id: str
    groupcall_ids: list[str]
    call_count: int
    groupcall_count: int
    dial_index: int


class ActiveflowOut(Owned):
    flow_id: str
    status: str
    reference_type: str
    reference_id: str
    current_action: dict[str, Any]
    executed_actions: list[dict[str, Any]]


class RecordingOut(Owned):
    owner_type: str
    owner_id: str
    activeflow_id: str
    reference_type: str
    reference_id: str
    status: str
    format: str
    recording_name: str
    filenames: list[str]
    on_end_flow_id: str
    tm_start: Timestamp = None
    tm_end: Timestamp = None


class StorageFileOut(Owned):
    """VoIPBIN's StorageManagerFile."""

    owner_type: str
    owner_id: str
    reference_type: str
    reference_id: str
    type: str
    name: str
    detail: str
    filename: str = Field(description="The uploaded file's name.")
    filesize: int = Field(description="Its size in bytes.")
    uri_download: str = Field(description="GET it (with your credential) for the file's bytes: /v1.0/storage_files/{id}/file.")
    tm_download_expire: Timestamp = None


class TranscribeOut(Owned):
    activeflow_id: str
    on_end_flow_id: str
    reference_type: str
    reference_id: str
    status: str
    language: str
    direction: str
    provider: str


class TranscriptOut(Resource):
    id: str
    customer_id: str
    transcribe_id: str
    direction: str
    conferencecall_id: str = Field("", description="Ours: in a conference's transcription, the participant who spoke.")
    message: str
    tm_transcript: Timestamp = None
    tm_create: Timestamp


class SpeakingOut(Owned):
    reference_type: str
    reference_id: str
    language: str
    provider: str
    voice_id: str
    direction: str
    status: str
    pod_id: str


class ProviderOut(Owned):
    type: str
    hostname: str
    port: int
    transport: str
    username: str
    tech_prefix: str
    tech_postfix: str
    tech_headers: dict[str, Any]
    name: str
    detail: str


class AiOut(Owned):
    """VoIPBIN's AI; ``engine_key`` is write-only and never shown."""

    name: str
    detail: str
    type: str = "normal"
    engine_model: str
    parameter: dict[str, Any]
    init_prompt: str
    tts_type: str
    tts_voice_id: str
    stt_type: str
    stt_language: str
    vad_config: dict[str, Any]
    smart_turn_enabled: bool = False
    tool_names: list[str]
    http_tools: list[dict[str, Any]]
    direct_hash: str



class AiCallOut(Owned):
    """VoIPBIN's AIcall: the AI's settings as the session started with them, and its status."""

    assistance_type: str
    assistance_id: str
    ai_engine_model: str
    ai_tts_type: str
    ai_tts_voice_id: str
    ai_stt_type: str
    ai_vad_config: dict[str, Any]
    ai_smart_turn_enabled: bool = False
    parameter: dict[str, Any]
    activeflow_id: str
    reference_type: str
    reference_id: str
    confbridge_id: str
    current_member_id: str
    status: str
    stt_language: str
    metadata: dict[str, Any] = Field(validation_alias="call_metadata")
    tm_end: Timestamp = None


class AiMessageOut(Owned):
    """VoIPBIN's AIMessage."""

    aicall_id: str
    activeflow_id: str
    active_ai_id: str
    role: str
    content: str
    direction: str
    tool_calls: list[dict[str, Any]] = Field(
        description="[{id, type: function, function: {name, arguments}}], arguments a JSON string."
    )
    tool_call_id: str

class AiSummaryOut(Owned):
    """VoIPBIN's AI summary: ``progressing`` while the transcript grows, ``done`` with ``content``."""

    activeflow_id: str
    on_end_flow_id: str
    reference_type: str
    reference_id: str
    status: str
    language: str
    content: str


class ConferenceOut(Owned):
    """VoIPBIN's conference."""

    type: str
    status: str
    name: str
    detail: str
    data: dict[str, Any]
    timeout: int
    pre_flow_id: str
    post_flow_id: str
    conferencecall_ids: list[str]
    recording_id: str
    recording_ids: list[str]
    transcribe_id: str
    transcribe_ids: list[str]
    direct_hash: str = ""
    tm_end: Timestamp = None


class ConferencecallOut(Owned):
    """VoIPBIN's conferencecall, with the participant's controls and whether it is talking (ours)."""

    activeflow_id: str
    conference_id: str
    reference_type: str
    reference_id: str
    status: str
    muted: bool
    deaf: bool
    hold: bool
    talking: bool


# Each stored resource's name in topics and event types, and its public view.
RESOURCES: dict[type[Any], tuple[str, type[Resource]]] = {
    models.Customer: ("customer", CustomerOut),
    models.Agent: ("agent", AgentOut),
    models.Accesskey: ("accesskey", AccesskeyOut),
    models.Extension: ("extension", ExtensionOut),
    models.Number: ("number", NumberOut),
    models.Flow: ("flow", FlowOut),
    models.Provider: ("provider", ProviderOut),
    models.Ai: ("ai", AiOut),
    models.AiCall: ("aicall", AiCallOut),
    models.AiMessage: ("aimessage", AiMessageOut),
    models.AiSummary: ("summary", AiSummaryOut),
    models.Conference: ("conference", ConferenceOut),
    models.Conferencecall: ("conferencecall", ConferencecallOut),
    models.StorageFile: ("storage_file", StorageFileOut),
    models.Call: ("call", CallOut),
    models.Groupcall: ("groupcall", GroupcallOut),
    models.Activeflow: ("activeflow", ActiveflowOut),
    models.Transcribe: ("transcribe", TranscribeOut),
    models.Transcript: ("transcript", TranscriptOut),
    models.Speaking: ("speaking", SpeakingOut),
    models.Recording: ("recording", RecordingOut),
}

V = TypeVar("V", bound=Resource)


@overload
def announce(tx: Tx, row: Any, event_type: str) -> Resource: ...
@overload
def announce(tx: Tx, row: Any, event_type: str, view: V | type[V]) -> V: ...
def announce(tx: Tx, row: Any, event_type: str, view: Resource | type[Resource] | None = None) -> Resource:
    """Publish ``event_type`` with the row's public view, in the transaction that changes it.

    ``view`` is a view class, or a view computed with more than the row (an extension's domain).
    The topic is the row's own; a transcript is also published under its transcribe, which is
    what the quickstart subscribes to (``customer_id:<id>:transcribe:*``), and an AI message under
    its aicall, VoIPBIN's one topic for them (``customer_id:<id>:aicall:<aicall_id>``).
    """
    resource, default_view = RESOURCES[type(row)]
    if isinstance(view, Resource):
        public = view
    else:
        public = (view or default_view).model_validate(row)
    owner = row.id if isinstance(row, models.Customer) else row.customer_id
    topics = [customer_topic(owner, resource, row.id)]
    if isinstance(row, models.Transcript):
        topics.append(customer_topic(owner, "transcribe", row.transcribe_id))
    elif isinstance(row, models.AiMessage):
        topics.append(customer_topic(owner, "aicall", row.aicall_id))
    tx.emit(owner, event_type, public.public(), topics)
    return public
