"""What live calls, their flows and their sessions work with, built once by the running platform.

Everything a call needs is named here and handed in, so no object under ``calls/`` reaches the
rest of the platform through another (a call through its manager, a session through its call):
what a call may touch is what this context holds, and a test can give it other parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from voipbin.calls.links import LinkSigner
from voipbin.config import Settings
from voipbin.core.clock import Clock
from voipbin.core.egress import EgressPolicy
from voipbin.media.endpoint import RtpEndpoint
from voipbin.sip.location import Binding
from voipbin.sip.ua import UserAgent
from voipbin.speech.service import LiveTranscriber
from voipbin.speech.tts import TtsService
from voipbin.store.db import Store
from voipbin.store.files import Files


@dataclass(frozen=True)
class AiTalkRequest:
    """An ``ai_talk`` a call's flow reached: the call's media, which AI, for how long."""

    call_id: str
    customer_id: str
    activeflow_id: str
    endpoint: RtpEndpoint
    ai_id: str
    duration_s: float  # 0: until the AI or the call ends
    variables: Mapping[str, str]  # the flow's, for the AI's get_variables tool


@dataclass(frozen=True)
class AiTalkResult:
    """How the AI's part ended: variables it set, and whether the flow stops or transfers the call."""

    variables: Mapping[str, str] = field(default_factory=dict)
    stop_flow: bool = False
    connect: tuple[Mapping[str, Any], ...] = ()


class AiTalkRefused(Exception):
    """The AI cannot take the call (no such AI of the customer's, no key for its model...)."""


# Runs an AI voice agent on a call until its part is over; raises AiTalkRefused before it starts.
AiTalker = Callable[[AiTalkRequest], Awaitable[AiTalkResult]]


async def no_ai_talk(request: AiTalkRequest) -> AiTalkResult:
    raise AiTalkRefused("AI voice agents are not available on this node")


@dataclass(frozen=True)
class SummaryRequest:
    """An AI summary to make (``ai_summary`` in a flow, or ``POST /v1.0/aisummaries``)."""

    customer_id: str
    reference_type: str  # call or transcribe
    reference_id: str
    language: str
    on_end_flow_id: str = ""
    activeflow_id: str = ""


class SummaryRefused(Exception):
    """The summary cannot be made (no such call, nothing to transcribe...); the message says why."""

    def __init__(self, message: str, reason: str = "INVALID_REQUEST_PARAMETER") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


# Starts an AI summary; returns once it is recorded (it completes later). Raises SummaryRefused.
AiSummarizer = Callable[[SummaryRequest], Awaitable[Any]]


async def no_ai_summary(request: SummaryRequest) -> None:
    raise SummaryRefused("AI summaries are not available on this node", "NOT_SUPPORTED")


@dataclass(frozen=True)
class ConferenceJoinRequest:
    """A ``conference_join`` a call's flow reached (or a phone that dialled ``conference:<id>``)."""

    call_id: str
    customer_id: str
    activeflow_id: str
    endpoint: RtpEndpoint
    conference_id: str
    options: Mapping[str, Any] = field(default_factory=dict)  # the action's: muted, moderator...


class ConferenceRefused(Exception):
    """The call cannot join (no such conference of the customer's, it has ended, it is full...)."""


class ConferenceSeat(Protocol):
    """A call's place in a conference, held before it joins: the flows to run around its stay."""

    @property
    def pre_flow_id(self) -> str: ...

    @property
    def post_flow_id(self) -> str: ...

    async def attend(self) -> None:
        """Join, and return once the call has left (kicked, the conference ended, the call hung up)."""
        ...


# Takes a seat for the call in a conference; raises ConferenceRefused.
ConferenceJoiner = Callable[[ConferenceJoinRequest], Awaitable[ConferenceSeat]]


async def no_conferences(request: ConferenceJoinRequest) -> ConferenceSeat:
    raise ConferenceRefused("conferences are not available on this node")


async def no_other_nodes(node_id: str) -> str | None:
    return None


@dataclass(frozen=True)
class CallContext:
    settings: Settings
    store: Store
    clock: Clock
    egress: EgressPolicy
    ua: UserAgent
    # The phones registered for (customer_id, extension) now.
    registrations: Callable[[str, str], list[Binding]]
    tts: TtsService
    # A recogniser for one direction of a call (options as ``speech.service.SpeechService.transcriber``'s).
    transcriber: Callable[..., LiveTranscriber]
    files: Files
    # Runs work that must outlive whoever asked for it (a hangup a flow asked for) until the platform stops.
    spawn: Callable[[Awaitable[Any]], None]
    node_id: str
    ai_talk: AiTalker = no_ai_talk
    ai_summary: AiSummarizer = no_ai_summary
    conference_join: ConferenceJoiner = no_conferences
    # The SIP address ("host:port") of another live node of the install; None when it is gone.
    node_sip_address: Callable[[str], Awaitable[str | None]] = no_other_nodes
    # Signs and checks the links that take a call into a conference on another node (calls.links).
    links: LinkSigner = field(default_factory=LinkSigner)
