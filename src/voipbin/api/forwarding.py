"""Requests about a live call go to the node that runs it; new calls, on an API-only node, to the
least busy media node.

The receiving node forwards the request as it came (method, path, query, body, credentials) to
the other node's HTTP API and relays the answer; the other node authenticates it again (the
install shares its JWT secret). A forwarded request carries ``X-VoIPBIN-Forwarded`` and is never
forwarded again, so two nodes with different views of who runs a call cannot bounce it forever.
"""

from __future__ import annotations

import httpx
from fastapi import Request, Response
from sqlalchemy import select

from voipbin.api.errors import ApiError
from voipbin.core.ids import is_uuid
from voipbin.runtime import Platform
from voipbin.store.models import Call, Conference, Groupcall

FORWARDED = "x-voipbin-forwarded"
TIMEOUT_S = 15.0
# Headers that describe this hop's connection, not the request.
HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade"}


async def to_call_node(request: Request, platform: Platform, customer_id: str, call_id: str) -> Response | None:
    """The answer of the node running this customer's call ``call_id`` when that is another node;
    None to handle the request here (this node runs it, it has ended, or there is no such call)."""
    if FORWARDED in request.headers or not platform.settings.redis_url or not is_uuid(call_id):
        return None  # one node (no Redis) runs every call itself
    async with platform.store.session() as session:
        call = await session.scalar(select(Call).where(Call.id == call_id, Call.customer_id == customer_id))
    return await to_node(request, platform, call)


async def to_node(request: Request, platform: Platform, row: Call | Groupcall | None) -> Response | None:
    """The answer of the node running this call or groupcall, when it is live on another node."""
    if row is None or row.status == "hangup" or FORWARDED in request.headers:
        return None
    url = await platform.nodes.url_of(row.node_id)
    return await forward(request, platform, url) if url else None


async def to_conference_node(request: Request, platform: Platform, conference: Conference) -> Response | None:
    """The answer of the node mixing this conference, when that is another node."""
    node_id = conference.node_id
    if FORWARDED in request.headers or not platform.settings.redis_url or not node_id or node_id == platform.nodes.id:
        return None
    if not conference.conferencecall_ids:
        return None  # nobody in it: no node holds it
    url = await platform.nodes.url_of(node_id)
    return await forward(request, platform, url) if url else None


async def to_media_node(request: Request, platform: Platform) -> Response | None:
    """On a node that takes no calls: the answer of the least busy node that does."""
    if platform.settings.takes_calls or FORWARDED in request.headers:
        return None
    node = await platform.nodes.least_busy_media_node()
    if node is None:
        raise ApiError(503, "NO_MEDIA_NODE", "No media node is running to take the call; start one with --role media.",
                       {"Retry-After": "5"})
    return await forward(request, platform, node.api_url)


async def forward(request: Request, platform: Platform, base_url: str) -> Response:
    headers = {name: value for name, value in request.headers.items() if name not in HOP_BY_HOP}
    headers[FORWARDED] = platform.nodes.id
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
            answer = await client.request(request.method, request.url.path, params=request.query_params,
                                          content=await request.body(), headers=headers)
    except httpx.HTTPError as error:
        raise ApiError(503, "NODE_UNREACHABLE", f"The node running this call does not answer ({type(error).__name__}); "
                       "retry shortly: if it has stopped, its calls end within seconds.", {"Retry-After": "2"}) from None
    kept = {name: value for name, value in answer.headers.items() if name not in HOP_BY_HOP | {"content-encoding"}}
    return Response(answer.content, answer.status_code, kept)
