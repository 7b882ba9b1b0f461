"""The front door of AI voice agents: ``ai_talk`` on a call, and the live aicalls the API reaches.

A session is registered while it runs (``add`` when it starts, ``remove`` when it has ended), so
an aicall with no session here is not running on this node.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final, Protocol

from sqlalchemy import select

from voipbin.ai.config import AiConfigError
from voipbin.ai.llm import ChatModel, LlmEndpoint, OpenAiChat, endpoint_for
from voipbin.ai.local import PACKAGED_MODEL, LocalModelError
from voipbin.ai.session import AiContext, AiTalkSession
from voipbin.calls.service import AiTalkRefused, AiTalkRequest, AiTalkResult
from voipbin.store.models import Ai, AiMessage

log = logging.getLogger(__name__)

SUMMARY_MODEL_SETTING: Final = "VOIPBIN_SUMMARY_ENGINE_MODEL"
DEFAULT_SUMMARY_MODEL: Final = f"local.{PACKAGED_MODEL}"
# A summary is read, not heard: it may take its time, but not run on.
SUMMARY_PARAMETER: Final = {"max_tokens": 300, "temperature": 0.2}
SUMMARY_TIMEOUT_S: Final = 120.0


class LocalModels(Protocol):
    def check(self, name: str) -> None:
        """Raise AiConfigError unless ``name`` (of ``local.<name>``) is a local model here."""
        ...

    async def endpoint(self, name: str, pool: str = ...) -> str:
        """The base URL of the model's server for this pool of work, started if need be."""
        ...


class LiveAiCall(Protocol):
    async def terminate(self) -> None:
        """End the session now; returns once the aicall is terminated."""
        ...

    async def inject(self, role: str, content: str) -> AiMessage:
        """Put a message into the live conversation; the message as stored (and announced)."""
        ...


class AiService:
    def __init__(self, ctx: AiContext, environ: Mapping[str, str], local: LocalModels) -> None:
        self.ctx = ctx
        self._environ = environ
        self._local = local
        self._live: dict[str, LiveAiCall] = {}

    def live(self, aicall_id: str) -> LiveAiCall | None:
        """The aicall running on this node, if it is."""
        return self._live.get(aicall_id)

    def add(self, aicall_id: str, session: LiveAiCall) -> None:
        self._live[aicall_id] = session

    def remove(self, aicall_id: str) -> None:
        self._live.pop(aicall_id, None)

    async def talk(self, request: AiTalkRequest) -> AiTalkResult:
        """Run the AI on the call until its part is over (the flow's ``ai_talk``)."""
        ai = await self._ai(request.customer_id, request.ai_id)
        try:
            model = await self._model(ai)
        except AiConfigError as error:
            raise AiTalkRefused(str(error)) from None
        except LocalModelError:  # its message holds server paths and logs: for the operator only
            log.exception("the local model of AI %s did not start", ai.id)
            raise AiTalkRefused(f"the local model {ai.engine_model} could not start; the operator's log says why") from None
        session = AiTalkSession(self.ctx, ai, request, model)
        self.add(session.id, session)
        try:
            return await session.run()
        finally:
            self.remove(session.id)

    def check_engine(self, engine_model: str, engine_key: str) -> None:
        """Raise AiConfigError if calls could not reach the model: an unknown local model, a cloud
        one with no key (the message names the setting), so an AI is refused when it is stored."""
        target, _, name = engine_model.partition(".")
        if target == "local":
            self._local.check(name)
        else:
            endpoint_for(engine_model, engine_key, self._environ)

    async def summary_model(self) -> ChatModel:
        """The model summaries are made with: the operator's ``VOIPBIN_SUMMARY_ENGINE_MODEL``
        (``<target>.<model>``, its key from ``VOIPBIN_LLM_<TARGET>_KEY``), else the shipped local one,
        on a server of its own so that summaries never queue in front of a live call's turn."""
        engine_model = self._environ.get(SUMMARY_MODEL_SETTING, "").strip() or DEFAULT_SUMMARY_MODEL
        target, _, name = engine_model.partition(".")
        if target == "local":
            endpoint = LlmEndpoint(await self._local.endpoint(name, "batch"), name)
        else:
            endpoint = endpoint_for(engine_model, "", self._environ)
        return OpenAiChat(endpoint, parameter=SUMMARY_PARAMETER, timeout_s=SUMMARY_TIMEOUT_S)

    async def _ai(self, customer_id: str, ai_id: str) -> Ai:
        async with self.ctx.store.session() as session:
            ai = await session.scalar(
                select(Ai).where(Ai.id == ai_id.lower(), Ai.customer_id == customer_id, Ai.tm_delete.is_(None))
            )
        if ai is None:  # another customer's AI is as absent as a missing one
            raise AiTalkRefused(f"AI {ai_id} does not exist in this call's account")
        return ai

    async def _model(self, ai: Ai) -> ChatModel:
        target, _, name = ai.engine_model.partition(".")
        if target == "local":
            return OpenAiChat(LlmEndpoint(await self._local.endpoint(name), name), parameter=ai.parameter)
        return OpenAiChat(endpoint_for(ai.engine_model, ai.engine_key, self._environ), parameter=ai.parameter)
