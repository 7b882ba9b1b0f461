"""A customer's own HTTP tools: stored only with a URL the egress policy allows, called with the
model's arguments (signed), the answer bounded and handed back; a name that resolves to a private
address is refused when the tool runs (the SSRF the policy is there for)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx
import pytest

from tests.ai.test_session import FakeModel, Rig, said
from tests.conftest import Tenant
from voipbin.ai import http_tools
from voipbin.ai.llm import LlmText, LlmToolCall
from voipbin.core.egress import EgressPolicy, egress_client
from voipbin.runtime import Platform
from voipbin.webhooks import SIGNATURE_HEADER, verify

ORDER_TOOL = {
    "name": "check_order",
    "description": "Look up an order when the caller gives its order number.",
    "parameters": {"order_number": "The order's number, digits only."},
}


class ToolServer:
    """A customer's tool on loopback: records each request and answers with ``answer``."""

    def __init__(self, answer: bytes = b'{"status": "shipped", "eta": "Friday"}') -> None:
        self.answer = answer
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(server.answer)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/tools/orders"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def rig(platform: Platform) -> Callable[..., Rig]:
    return lambda model, **ai: Rig(platform, model, **ai)


@pytest.fixture
def tool_server() -> Iterator[ToolServer]:
    with ToolServer() as server:
        yield server


async def test_the_model_calls_the_customer_s_tool_and_hears_its_answer(
    rig: Callable[..., Rig], tool_server: ToolServer
) -> None:
    model = FakeModel(
        [LlmText("Hello.")],
        [LlmToolCall("t1", "check_order", '{"order_number": "4711"}')],
        [LlmText("It ships Friday.")],
    )
    r = rig(model, http_tools=[{**ORDER_TOOL, "url": tool_server.url()}])
    r.start()
    await r.spoken(1)
    r.say(said("Where is my order 4711?"))
    await r.spoken(2)
    await r.session.terminate()
    await r.result()

    headers, body = tool_server.requests[0]
    sent = json.loads(body)
    assert sent == {"tool": "check_order", "arguments": {"order_number": "4711"}, "aicall_id": r.session.id,
                    "call_id": r.session.request.call_id}
    assert headers["X-VoIPBIN-Tool"] == "check_order"
    offered = {t["function"]["name"]: t["function"] for t in model.asked_tools[0]}
    assert offered["check_order"]["parameters"]["required"] == ["order_number"]
    tool_message = model.asked[2][-1]
    assert tool_message["role"] == "tool" and json.loads(tool_message["content"]) == {
        "result": "success", "response": {"status": "shipped", "eta": "Friday"}
    }


async def test_a_tool_name_that_resolves_to_a_private_address_is_refused_when_it_runs(
    rig: Callable[..., Rig], tool_server: ToolServer
) -> None:
    """Stored as a name (names are checked when connecting); the public-only policy refuses loopback."""
    model = FakeModel([LlmText("Hello.")], [LlmToolCall("t1", "check_order", '{"order_number": "1"}')], [LlmText("Sorry.")])
    r = rig(model, egress=EgressPolicy(), http_tools=[{**ORDER_TOOL, "url": tool_server.url("localhost")}])
    r.start()
    await r.spoken(1)
    r.say(said("Where is my order?"))
    await r.spoken(2)
    await r.session.terminate()
    await r.result()
    assert tool_server.requests == []
    result = json.loads(model.asked[2][-1]["content"])
    assert result["result"] == "failed" and "not a public address" in result["message"]


async def test_a_signed_request_and_a_bounded_answer() -> None:
    with ToolServer(answer=b"x" * 1_000_000) as server:
        tool = http_tools.HttpTool.from_stored({**ORDER_TOOL, "url": server.url()})
        async with egress_client(EgressPolicy.from_setting("127.0.0.0/8"), timeout=5) as client:
            result = await http_tools.call(client, tool, {"order_number": "9"}, {"aicall_id": "a"}, "whsec-1")
    headers, body = server.requests[0]
    assert verify(body, "whsec-1", headers[SIGNATURE_HEADER])
    assert result == {"result": "success", "response": "x" * http_tools.MAX_RESULT_CHARS}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"url": "http://10.0.0.7/orders"}, "not a public address"),
        ({"url": "http://user:pw@shop.example.com/orders"}, "user name or password"),
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"name": "connect_call"}, "built-in"),
        ({"name": "1bad name"}, "must be a letter"),
        ({"description": ""}, "needs a description"),
        ({"parameters": {"bad key": "x"}}, "parameter"),
    ],
)
async def test_a_tool_the_policy_refuses_is_not_stored(
    client: httpx.AsyncClient, alice: Tenant, change: dict[str, object], words: str
) -> None:
    tool = {**ORDER_TOOL, "url": "https://shop.example.com/voipbin/orders", **change}
    ai = {"engine_model": "ollama.llama3.2", "http_tools": [tool]}
    response = await client.post("/v1.0/ais", params=alice.auth, json=ai)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]


async def test_a_stored_tool_is_shown_and_can_be_replaced(client: httpx.AsyncClient, alice: Tenant) -> None:
    tool = {**ORDER_TOOL, "url": "https://shop.example.com/voipbin/orders"}
    created = await client.post("/v1.0/ais", params=alice.auth, json={"engine_model": "ollama.llama3.2", "http_tools": [tool]})
    assert created.status_code == 200, created.text
    assert created.json()["http_tools"] == [tool]
    updated = await client.put(f"/v1.0/ais/{created.json()['id']}", params=alice.auth, json={"http_tools": []})
    assert updated.json()["http_tools"] == []
