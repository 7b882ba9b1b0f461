"""``/v1.0/agents``: the people of a customer who log in, with their permission bits."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import Field
from sqlalchemy import func, select

from voipbin.accounts import recovery
from voipbin.accounts.signup import end_pending_signups, normalize_email
from voipbin.api.crud import apply_update, get_owned, list_view, soft_delete
from voipbin.api.deps import AdminDep, PagingDep, PlatformDep, Principal, StaffDep
from voipbin.api.errors import bad_request, conflict, forbidden
from voipbin.auth.passwords import hash_secret
from voipbin.auth.permissions import Permission
from voipbin.core.ids import new_id
from voipbin.store.models import Agent
from voipbin.views import AgentOut, LongText, Page, ShortText, Strict, announce

router = APIRouter(prefix="/v1.0/agents", tags=["agents"])

Password = Annotated[str, Field(min_length=8, max_length=1024, description="At least 8 characters.")]
PermissionBits = Annotated[int, Field(ge=0, le=int(Permission.ALL))]
RingMethod = Literal["ringall", "linear"]


class AgentIn(Strict):
    username: Annotated[str, Field(min_length=3, max_length=320, description="An email address; used to log in.")]
    password: Password
    name: ShortText = ""
    detail: LongText = ""
    ring_method: RingMethod = "ringall"
    permission: PermissionBits = int(Permission.CUSTOMER_AGENT)


class AgentUpdate(Strict):
    name: ShortText | None = None
    detail: LongText | None = None
    ring_method: RingMethod | None = None


class PermissionIn(Strict):
    permission: PermissionBits


class PasswordIn(Strict):
    password: Password


def _check_grant(who: Principal, permission: int) -> None:
    """Platform bits are the operator's to give; a customer admin grants customer bits only."""
    if permission & int(Permission.PROJECT_ALL) and not who.is_superadmin:
        raise forbidden("Only the platform operator may grant platform permissions (bits 1-15).")


@router.post("", response_model=AgentOut, status_code=201)
async def create(body: AgentIn, platform: PlatformDep, who: AdminDep) -> AgentOut:
    _check_grant(who, body.permission)
    username = normalize_email(body.username)
    if username is None:
        raise bad_request("'username' must be an email address.")
    if problem := recovery.password_problem(body.password, username):
        raise bad_request(problem, "WEAK_PASSWORD")
    password_hash = await hash_secret(body.password)
    async with platform.store.transaction() as tx:
        taken = await tx.session.scalar(
            select(Agent.id).where(func.lower(Agent.username) == username, Agent.tm_delete.is_(None))
        )
        if taken:
            raise conflict(f"The username {username} is taken.")
        agent = Agent(
            id=new_id(),
            customer_id=who.customer_id,
            username=username,
            password_hash=password_hash,
            name=body.name,
            detail=body.detail,
            ring_method=body.ring_method,
            status="offline",
            permission=body.permission,
            tm_create=tx.clock.now(),
        )
        tx.session.add(agent)
        await end_pending_signups(tx, username)
        return announce(tx, agent, "agent_created", AgentOut)


@router.get("", response_model=Page[AgentOut])
async def list_(platform: PlatformDep, who: StaffDep, paging: PagingDep) -> Page[AgentOut]:
    return await list_view(platform, Agent, AgentOut, who.customer_id, paging)


@router.get("/{agent_id}", response_model=AgentOut)
async def get(agent_id: str, platform: PlatformDep, who: StaffDep) -> AgentOut:
    async with platform.store.session() as session:
        return AgentOut.model_validate(await get_owned(session, Agent, agent_id, who.customer_id, "agent"))


@router.put("/{agent_id}", response_model=AgentOut)
async def update(agent_id: str, body: AgentUpdate, platform: PlatformDep, who: AdminDep) -> AgentOut:
    async with platform.store.transaction() as tx:
        agent = await get_owned(tx.session, Agent, agent_id, who.customer_id, "agent")
        apply_update(agent, body, tx)
        return announce(tx, agent, "agent_updated", AgentOut)


@router.put("/{agent_id}/permission", response_model=AgentOut)
async def set_permission(agent_id: str, body: PermissionIn, platform: PlatformDep, who: AdminDep) -> AgentOut:
    _check_grant(who, body.permission)
    async with platform.store.transaction() as tx:
        agent = await get_owned(tx.session, Agent, agent_id, who.customer_id, "agent")
        agent.permission = body.permission
        agent.tm_update = tx.clock.now()
        return announce(tx, agent, "agent_updated", AgentOut)


@router.put("/{agent_id}/password", response_model=AgentOut)
async def set_password(agent_id: str, body: PasswordIn, platform: PlatformDep, who: AdminDep) -> AgentOut:
    async with platform.store.session() as session:
        username = (await get_owned(session, Agent, agent_id, who.customer_id, "agent")).username
    if problem := recovery.password_problem(body.password, username):
        raise bad_request(problem, "WEAK_PASSWORD")
    password_hash = await hash_secret(body.password)
    async with platform.store.transaction() as tx:
        agent = await get_owned(tx.session, Agent, agent_id, who.customer_id, "agent")
        recovery.set_password(tx, agent, password_hash)
        return announce(tx, agent, "agent_updated", AgentOut)


@router.delete("/{agent_id}", response_model=AgentOut)
async def delete(agent_id: str, platform: PlatformDep, who: AdminDep) -> AgentOut:
    if agent_id == who.agent_id:
        raise bad_request("You cannot delete the agent you are logged in as.")
    async with platform.store.transaction() as tx:
        agent = await get_owned(tx.session, Agent, agent_id, who.customer_id, "agent")
        soft_delete(agent, tx)
        return announce(tx, agent, "agent_deleted", AgentOut)
