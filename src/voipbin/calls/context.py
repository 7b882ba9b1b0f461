"""What live calls, their flows and their sessions work with, built once by the running platform.

Everything a call needs is named here and handed in, so no object under ``calls/`` reaches the
rest of the platform through another (a call through its manager, a session through its call):
what a call may touch is what this context holds, and a test can give it other parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voipbin.config import Settings
from voipbin.core.clock import Clock
from voipbin.core.egress import EgressPolicy
from voipbin.sip.location import Binding
from voipbin.sip.ua import UserAgent
from voipbin.speech.stt import Transcriber
from voipbin.speech.tts import TtsService
from voipbin.store.db import Store
from voipbin.store.files import Files


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
    # A recogniser for one direction of a call (options as ``speech.stt.Transcriber``'s).
    transcriber: Callable[..., Transcriber]
    files: Files
    # Runs work that must outlive whoever asked for it (a hangup a flow asked for) until the platform stops.
    spawn: Callable[[Awaitable[Any]], None]
    node_id: str
