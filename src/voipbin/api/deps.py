"""Request dependencies: the platform, credentials, and permission checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from voipbin.api.errors import forbidden, unauthenticated
from voipbin.auth.permissions import ADMIN, ADMIN_OR_MANAGER, Permission
from voipbin.auth.tokens import hash_accesskey_token
from voipbin.runtime import Platform
from voipbin.store.models import Accesskey, Agent, Customer


@dataclass(frozen=True)
class Principal:
    """Who is calling: an agent (logged in with a JWT) or an access key of a customer."""

    customer_id: str
    permission: Permission
    agent_id: str = ""
    accesskey_id: str = ""
    username: str = ""

    @property
    def is_superadmin(self) -> bool:
        return bool(self.permission & Permission.PROJECT_SUPER_ADMIN)

    def require(self, needed: Permission) -> None:
        if not (self.permission & needed or self.is_superadmin):
            raise forbidden()


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]

# Declared for the OpenAPI spec (so /docs can authorize); the lookup itself is in authenticate().
_token_query = APIKeyQuery(name="token", auto_error=False, description="JWT from POST /auth/login")
_accesskey_query = APIKeyQuery(name="accesskey", auto_error=False, description="Access key token")
_bearer = HTTPBearer(auto_error=False, description="JWT from POST /auth/login")


async def authenticate(platform: Platform, token: str | None, accesskey: str | None) -> Principal:
    """Resolve a JWT (``token``) or an access key; each only where its own name says."""
    if token:
        return await _from_jwt(platform, token)
    if accesskey:
        return await _from_accesskey(platform, accesskey)
    raise unauthenticated(
        "Send a JWT as ?token= or 'Authorization: Bearer <jwt>', or an access key as ?accesskey=.",
        "AUTHENTICATION_REQUIRED",
    )


async def _from_jwt(platform: Platform, token: str) -> Principal:
    claims = platform.jwt.verify(token)
    if claims is None:
        raise unauthenticated("The token is invalid or expired; get a new one from POST /auth/login.")
    async with platform.store.session() as session:
        row = await session.execute(
            select(Agent, Customer.status)
            .join(Customer, Customer.id == Agent.customer_id)
            .where(Agent.id == claims.agent_id, Agent.tm_delete.is_(None), Customer.tm_delete.is_(None))
        )
        found = row.first()
    if found is None:
        raise unauthenticated("The account this token belongs to no longer exists.")
    agent: Agent = found[0]
    if claims.epoch != agent.session_epoch:
        raise unauthenticated("This token was issued before the password changed; log in again with POST /auth/login.")
    return Principal(
        customer_id=agent.customer_id,
        permission=Permission(agent.permission),
        agent_id=agent.id,
        username=agent.username,
    )


async def _from_accesskey(platform: Platform, token: str) -> Principal:
    async with platform.store.session() as session:
        row = await session.execute(
            select(Accesskey)
            .join(Customer, Customer.id == Accesskey.customer_id)
            .where(
                Accesskey.token_hash == hash_accesskey_token(token),
                Accesskey.tm_delete.is_(None),
                Customer.tm_delete.is_(None),
            )
        )
        key = row.scalar_one_or_none()
    if key is None:
        raise unauthenticated("Unknown access key; use ?token= for a JWT, ?accesskey= for an access key.")
    if key.tm_expire <= platform.clock.read():
        raise unauthenticated("This access key expired; create a new one with POST /v1.0/accesskeys.")
    # An access key acts with the rights of its customer's administrator.
    return Principal(customer_id=key.customer_id, permission=Permission.CUSTOMER_ADMIN, accesskey_id=key.id)


async def current_principal(
    request: Request,
    platform: PlatformDep,
    token: Annotated[str | None, Depends(_token_query)] = None,
    accesskey: Annotated[str | None, Depends(_accesskey_query)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    jwt_token = token or (bearer.credentials if bearer else None)
    if not (jwt_token or accesskey):
        # Cookies (set by login, used by the console) only when the request names no credential.
        jwt_token, accesskey = request.cookies.get("token"), request.cookies.get("accesskey")
    principal = await authenticate(platform, jwt_token, accesskey)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def optional_principal(
    request: Request,
    platform: PlatformDep,
    token: Annotated[str | None, Depends(_token_query)] = None,
    accesskey: Annotated[str | None, Depends(_accesskey_query)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal | None:
    """The caller when it names a credential (which must then be valid); None when it names none."""
    if not (token or accesskey or bearer or request.cookies.get("token") or request.cookies.get("accesskey")):
        return None
    return await current_principal(request, platform, token, accesskey, bearer)


OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


def _requiring(needed: Permission):  # type: ignore[no-untyped-def]
    async def dependency(principal: PrincipalDep) -> Principal:
        principal.require(needed)
        return principal

    return dependency


AdminDep = Annotated[Principal, Depends(_requiring(ADMIN))]
StaffDep = Annotated[Principal, Depends(_requiring(ADMIN_OR_MANAGER))]


async def _superadmin(principal: PrincipalDep) -> Principal:
    if not principal.is_superadmin:
        raise forbidden("Only the platform operator (superadmin) may do this.")
    return principal


SuperadminDep = Annotated[Principal, Depends(_superadmin)]


class Paging:
    def __init__(
        self,
        page_size: Annotated[int, Query(description="Rows per page, 1 to 100 (default 100).")] = 100,
        page_token: Annotated[str, Query(max_length=64, description="next_page_token of the previous page.")] = "",
    ) -> None:
        self.page_size = page_size if 0 < page_size <= 100 else 100
        self.page_token = page_token


PagingDep = Annotated[Paging, Depends()]

