"""``/v1.0/ais``: AI voice agent configurations (VoIPBIN's AI resource)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field, field_validator

from voipbin.ai.config import AiConfigError, checked_engine_model, checked_speech_types, checked_tool_names
from voipbin.ai.http_tools import MAX_TOOLS, checked_http_tools
from voipbin.api.crud import get_owned, list_view, soft_delete
from voipbin.api.deps import PagingDep, PlatformDep, StaffDep
from voipbin.api.errors import bad_request
from voipbin.core.ids import new_id, token_hex
from voipbin.runtime import Platform
from voipbin.speech.stt import SttError
from voipbin.store.models import Ai
from voipbin.views import AiOut, LongText, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0", tags=["ais"])

MAX_PARAMETER_CHARS = 16_384
Prompt = Annotated[str, Field(max_length=65_536)]
EngineModelText = Annotated[str, Field(max_length=160)]
EngineKey = Annotated[str, Field(max_length=1024)]
Language = Annotated[str, Field(max_length=35)]
ToolNames = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)]


class HttpToolIn(Strict):
    """A tool of the customer's own: the model calls it, the platform POSTs the arguments to ``url``."""

    name: Annotated[str, Field(max_length=64)]
    description: Annotated[str, Field(max_length=1024)]
    url: Annotated[str, Field(max_length=2048)]
    parameters: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict
    )


HttpTools = Annotated[list[HttpToolIn], Field(max_length=MAX_TOOLS)]


class VadConfig(Strict):
    """Voice activity detection settings; omitted ones take the defaults."""

    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    start_secs: Annotated[float, Field(ge=0, le=30)] | None = None
    stop_secs: Annotated[float, Field(ge=0, le=30)] | None = None
    min_volume: Annotated[float, Field(ge=0, le=1)] | None = None


def _bounded_parameter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value)) > MAX_PARAMETER_CHARS:
        raise ValueError(f"parameter must be at most {MAX_PARAMETER_CHARS} characters of JSON")
    return value


class AiIn(Strict):
    name: ShortText = ""
    detail: LongText = ""
    engine_model: EngineModelText
    engine_key: EngineKey = ""
    parameter: dict[str, Any] = Field(default_factory=dict)
    init_prompt: Prompt = ""
    tts_type: ShortText = ""
    tts_voice_id: ShortText = ""
    stt_type: ShortText = ""
    stt_language: Language = ""
    vad_config: VadConfig = Field(default_factory=VadConfig)
    tool_names: ToolNames = Field(default_factory=list)
    http_tools: HttpTools = Field(default_factory=list)

    _parameter = field_validator("parameter")(_bounded_parameter)


class AiUpdate(Strict):
    """Fields left out keep their values; an empty ``engine_key`` clears the key."""

    name: ShortText | None = None
    detail: LongText | None = None
    engine_model: EngineModelText | None = None
    engine_key: EngineKey | None = None
    parameter: dict[str, Any] | None = None
    init_prompt: Prompt | None = None
    tts_type: ShortText | None = None
    tts_voice_id: ShortText | None = None
    stt_type: ShortText | None = None
    stt_language: Language | None = None
    vad_config: VadConfig | None = None
    tool_names: ToolNames | None = None
    http_tools: HttpTools | None = None

    _parameter = field_validator("parameter")(_bounded_parameter)


def _stored(fields: dict[str, Any], platform: Platform) -> dict[str, Any]:
    """The fields as stored, after the checks a person gets a 400 for."""
    try:
        if "engine_model" in fields:
            fields["engine_model"] = checked_engine_model(fields["engine_model"])
        if "tool_names" in fields:
            fields["tool_names"] = checked_tool_names(fields["tool_names"])
        if "http_tools" in fields:
            fields["http_tools"] = checked_http_tools(fields["http_tools"], platform.egress)
        checked_speech_types(fields.get("tts_type", ""), fields.get("stt_type", ""))
    except AiConfigError as error:
        raise bad_request(str(error)) from None
    if "vad_config" in fields:
        fields["vad_config"] = {k: v for k, v in fields["vad_config"].items() if v is not None}
    return fields


def _check_runs_here(row: Ai, platform: Platform) -> None:
    """A recogniser knows its language, and its model is reachable (a local one exists, a cloud one has a key)."""
    try:
        platform.speech.check_transcription(row.stt_language or "en-US", row.stt_type)
    except SttError as error:
        raise bad_request(str(error), "UNSUPPORTED_LANGUAGE") from None
    try:
        platform.ai.check_engine(row.engine_model, row.engine_key)
    except AiConfigError as error:
        raise bad_request(str(error), "ENGINE_UNAVAILABLE") from None


@router.post("/ais", response_model=AiOut)
async def create(body: AiIn, platform: PlatformDep, who: StaffDep) -> AiOut:
    fields = _stored(body.model_dump(), platform)
    async with platform.store.transaction() as tx:
        ai = Ai(id=new_id(), customer_id=who.customer_id, direct_hash=token_hex(6), tm_create=tx.clock.now(), **fields)
        _check_runs_here(ai, platform)
        tx.session.add(ai)
        return announce(tx, ai, "ai_created", AiOut)


@router.get("/ais", response_model=Page[AiOut])
async def list_ais(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[AiOut]:
    return await list_view(platform, Ai, AiOut, who.customer_id, paging)


@router.get("/ais/{ai_id}", response_model=AiOut)
async def get_ai(ai_id: str, platform: PlatformDep, who: StaffDep) -> AiOut:
    async with platform.store.session() as session:
        return AiOut.model_validate(await get_owned(session, Ai, ai_id, who.customer_id, "ai"))


@router.put("/ais/{ai_id}", response_model=AiOut)
async def update(ai_id: str, body: AiUpdate, platform: PlatformDep, who: StaffDep) -> AiOut:
    changes = _stored(body.model_dump(exclude_none=True), platform)
    async with platform.store.transaction() as tx:
        ai = await get_owned(tx.session, Ai, ai_id, who.customer_id, "ai")
        for name, value in changes.items():
            setattr(ai, name, value)
        ai.tm_update = tx.clock.now()
        _check_runs_here(ai, platform)
        return announce(tx, ai, "ai_updated", AiOut)


@router.delete("/ais/{ai_id}", response_model=AiOut)
async def delete(ai_id: str, platform: PlatformDep, who: StaffDep) -> AiOut:
    async with platform.store.transaction() as tx:
        ai = await get_owned(tx.session, Ai, ai_id, who.customer_id, "ai")
        soft_delete(ai, tx)
        return announce(tx, ai, "ai_deleted", AiOut)
