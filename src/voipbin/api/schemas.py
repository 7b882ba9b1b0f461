"""Public shapes of resources, as VoIPBIN's seed-era spec and the quickstart show them.

The same dict goes out in REST responses, WebSocket frames and webhook bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints

from voipbin.core.clock import format_timestamp

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
