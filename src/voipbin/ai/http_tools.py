"""Tools a customer defines for its AI: the model calls one, the platform POSTs its arguments to
the customer's URL and gives the model what came back.

The URL is a customer's, so it goes through the platform's egress policy like a webhook: a
literal private address is refused when the AI is stored, and every connection (redirects are
not followed) is checked against the policy when the tool runs, so a name that resolves to a
private address later is refused then. The request is signed with the customer's webhook secret,
so the receiver can tell it came from this platform. What goes back to the model is bounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from voipbin.ai.config import TOOLS, AiConfigError
from voipbin.core.egress import EgressBlocked, EgressPolicy, describe_failure
from voipbin.webhooks import SIGNATURE_HEADER, sign

MAX_TOOLS: Final = 8
MAX_PARAMETERS: Final = 10
MAX_URL_CHARS: Final = 2048
MAX_DESCRIPTION_CHARS: Final = 1024
MAX_RESULT_CHARS: Final = 4000
"""Of the receiver's answer, what the model is shown: enough for a fact, not a page."""
TIMEOUT_S: Final = 5.0
"""The caller is waiting on the line while the tool runs."""
TOOL_HEADER: Final = "X-VoIPBIN-Tool"

_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class HttpTool:
    name: str
    description: str
    url: str
    # Argument name → what the model should pass; all strings, flat, as small models manage best.
    parameters: Mapping[str, str]

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any]) -> HttpTool:
        return cls(str(raw["name"]), str(raw["description"]), str(raw["url"]), dict(raw.get("parameters") or {}))

    def definition(self) -> dict[str, Any]:
        """The OpenAI-style function definition the model sees."""
        properties = {name: {"type": "string", "description": text} for name, text in self.parameters.items()}
        parameters = {"type": "object", "properties": properties, "required": list(self.parameters)}
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": parameters}}


def checked_http_tools(raw: Iterable[Mapping[str, Any]], egress: EgressPolicy) -> list[dict[str, Any]]:
    """The tools as stored; AiConfigError names the first thing wrong."""
    tools: list[dict[str, Any]] = []
    for item in raw:
        tool = _checked(item, egress)
        if tool["name"] in {t["name"] for t in tools}:
            raise AiConfigError(f"http_tools: two tools are named {tool['name']!r}")
        tools.append(tool)
    if len(tools) > MAX_TOOLS:
        raise AiConfigError(f"http_tools: at most {MAX_TOOLS} tools")
    return tools


def _checked(item: Mapping[str, Any], egress: EgressPolicy) -> dict[str, Any]:
    name = str(item.get("name", ""))
    if not _NAME.fullmatch(name):
        raise AiConfigError(f"http_tools: name {name[:64]!r} must be a letter then letters, digits or _ (64 at most)")
    if name in TOOLS or name == "all":
        raise AiConfigError(f"http_tools: {name!r} is a built-in tool's name; give yours another")
    description = str(item.get("description", "")).strip()
    if not 0 < len(description) <= MAX_DESCRIPTION_CHARS:
        raise AiConfigError(
            f"http_tools: {name} needs a description (at most {MAX_DESCRIPTION_CHARS} characters) saying when to call it"
        )
    url = str(item.get("url", ""))
    parts = urlsplit(url)
    if len(url) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
        raise AiConfigError(f"http_tools: {name}'s url must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters")
    if parts.username or parts.password:
        raise AiConfigError(f"http_tools: {name}'s url must not hold a user name or password; check the signature header instead")
    if problem := egress.literal_problem(parts.hostname):
        raise AiConfigError(f"http_tools: {name}'s url: {problem}")
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, Mapping) or len(parameters) > MAX_PARAMETERS:
        raise AiConfigError(f"http_tools: {name}'s parameters must be an object of at most {MAX_PARAMETERS} names and descriptions")
    for key, text in parameters.items():
        if not _NAME.fullmatch(str(key)) or not isinstance(text, str) or len(text) > MAX_DESCRIPTION_CHARS:
            raise AiConfigError(
                f"http_tools: {name}'s parameter {str(key)[:64]!r} must be a name (letters, digits, _) "
                f"with a description of at most {MAX_DESCRIPTION_CHARS} characters"
            )
    return {"name": name, "description": description, "url": url, "parameters": dict(parameters)}


async def call(
    client: httpx.AsyncClient, tool: HttpTool, arguments: Mapping[str, Any], about: Mapping[str, str], secret: str
) -> dict[str, Any]:
    """POST the model's arguments (with ``about``: which aicall and call) to the tool's URL; the
    result for the model, a failure described in words that reveal nothing of the network."""
    body = json.dumps({"tool": tool.name, "arguments": {k: str(v) for k, v in arguments.items()}, **about}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "voipbin-ai-tool/1.0", TOOL_HEADER: tool.name}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        async with client.stream("POST", tool.url, content=body, headers=headers, timeout=TIMEOUT_S) as response:
            if not response.is_success:
                return {"result": "failed", "message": f"the tool answered HTTP {response.status_code}"}
            text = await _bounded_text(response)
    except (httpx.HTTPError, EgressBlocked) as error:
        return {"result": "failed", "message": f"the tool could not be reached: {describe_failure(error)}"}
    try:
        answer: Any = json.loads(text)
    except ValueError:
        answer = text
    return {"result": "success", "response": answer}


async def _bounded_text(response: httpx.Response) -> str:
    """The answer's first ``MAX_RESULT_CHARS`` bytes, read no further (a receiver may send gigabytes)."""
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= MAX_RESULT_CHARS:
            break
    return bytes(received[:MAX_RESULT_CHARS]).decode(errors="replace")
