"""``/auth``: signup (an emailed code for scripts, an emailed link for the console), password
login for a JWT, and password set/reset links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from voipbin.accounts import email_change, recovery, signup
from voipbin.accounts.customers import Profile
from voipbin.accounts.errors import AccountError
from voipbin.api.accesskeys import created_view
from voipbin.api.customers import announce_customer, check_webhook_target
from voipbin.api.deps import PlatformDep
from voipbin.api.errors import ApiError, unauthenticated
from voipbin.auth.passwords import verify_secret
from voipbin.store.db import Tx
from voipbin.store.models import Agent, Customer
from voipbin.views import AccesskeyCreated, AgentOut, CustomerOut, LongText, ShortText, Strict, WebhookMethod, announce

router = APIRouter(prefix="/auth", tags=["auth"])


class SignupIn(Strict):
    # The contract names these required (VoIPBIN's spec, and the console asks for both); the server
    # still answers 200 to a body without them, as it does to any, so that no answer tells emails apart.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["email", "accepted_tos"]})

    email: Annotated[str, Field(max_length=320)] = ""
    name: ShortText = ""
    detail: LongText = ""
    phone_number: Annotated[str, Field(max_length=32)] = ""
    address: LongText = ""
    webhook_method: WebhookMethod = ""
    webhook_uri: Annotated[str, Field(max_length=2048)] = ""
    accepted_tos: bool | None = None


class SignupOut(BaseModel):
    temp_token: str = Field(description="Empty when the email is invalid or already registered.")


class CompleteSignupIn(Strict):
    temp_token: Annotated[str, Field(min_length=1, max_length=64)]
    code: Annotated[str, Field(min_length=1, max_length=16)]


class CompleteSignupOut(BaseModel):
    customer_id: str
    accesskey: AccesskeyCreated
    next_steps: str = Field(description="What the new account can do before it has a password (it has none yet).")


def _next_steps(email: str) -> str:
    # A headless signup's account has no password, so /auth/login (and with it every ?token= example)
    # cannot work for it yet: say so in the answer the signup reads, and what works instead.
    return (f"This account has no password yet, so POST /auth/login does not work for it. Use accesskey.token now: "
            f"?accesskey=<accesskey.token> wherever the quickstart writes ?token=<your-token>. To log in, set a "
            f"password with the link in the welcome mail sent to {email}; then POST /auth/login gives a token.")


LinkToken = Annotated[str, Field(min_length=64, max_length=64, pattern="^[0-9a-fA-F]{64}$")]


class EmailVerifyIn(Strict):
    token: LinkToken


class EmailVerifyOut(BaseModel):
    customer: CustomerOut
    accesskey: AccesskeyCreated


class PasswordForgotIn(Strict):
    username: Annotated[str, Field(min_length=1, max_length=320)]


class PasswordResetIn(Strict):
    token: LinkToken
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginIn(Strict):
    username: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginOut(BaseModel):
    username: str
    token: str


@router.post(
    "/signup",
    response_model=SignupOut,
    summary="Start a headless signup (200 for any email, known or not)",
    responses={429: {"description": "Too many signups from this client address"}},
)
async def post_signup(body: SignupIn, platform: PlatformDep, request: Request) -> SignupOut:
    check_webhook_target(platform, body.webhook_uri)
    profile = Profile(
        email=body.email.strip(),
        name=body.name,
        detail=body.detail,
        phone_number=body.phone_number,
        address=body.address,
        webhook_method=body.webhook_method,
        webhook_uri=body.webhook_uri,
    )
    try:
        return SignupOut(temp_token=await signup.start(platform.accounts, profile, _client(request)))
    except AccountError as exc:
        raise _api_error(exc, {"Retry-After": "3600"}) from None


@router.post(
    "/complete-signup",
    response_model=CompleteSignupOut,
    summary="Finish a signup with the 6-digit code",
    responses={400: {"description": "Unknown temp_token, wrong or expired code"}, 429: {"description": "Too many attempts"}},
)
async def post_complete_signup(body: CompleteSignupIn, platform: PlatformDep) -> CompleteSignupOut:
    try:
        done = await signup.complete(platform.accounts, body.temp_token, body.code.strip())
    except AccountError as exc:
        raise _api_error(exc) from None
    return CompleteSignupOut(customer_id=done.customer.id, accesskey=created_view(done.accesskey, done.token),
                             next_steps=_next_steps(done.customer.email))


@router.post("/logout", summary="Forget the login cookie (a JWT stays valid until it expires)")
async def post_logout(response: Response) -> dict[str, str]:
    response.delete_cookie("token", httponly=True, secure=True, samesite="strict")
    return {}


@router.get("/email-verify", summary="The emailed verification link: opens the console, which confirms it")
async def get_email_verify(token: Annotated[str, Query(max_length=64)] = "") -> RedirectResponse:
    return RedirectResponse(f"/console/#/verify?token={_hex_only(token)}", status_code=302)


@router.post(
    "/email-verify",
    response_model=EmailVerifyOut,
    summary="Confirm a signup with its emailed link token",
    responses={400: {"description": "Invalid, expired or used token"}},
)
async def post_email_verify(body: EmailVerifyIn, platform: PlatformDep) -> EmailVerifyOut:
    try:
        done = await signup.verify_link(platform.accounts, body.token)
    except AccountError as exc:
        raise _api_error(exc) from None
    return EmailVerifyOut(
        customer=CustomerOut.model_validate(done.customer), accesskey=created_view(done.accesskey, done.token)
    )


@router.get("/email-change", summary="The emailed link confirming a customer's new email: opens the console")
async def get_email_change(token: Annotated[str, Query(max_length=64)] = "") -> RedirectResponse:
    return RedirectResponse(f"/console/#/email-change?token={_hex_only(token)}", status_code=302)


@router.post(
    "/email-change",
    response_model=CustomerOut,
    summary="Confirm a customer's new email with its emailed link token",
    responses={400: {"description": "Invalid, expired or used token"}},
)
async def post_email_change(body: EmailVerifyIn, platform: PlatformDep) -> CustomerOut:
    try:
        customer = await email_change.confirm(platform.accounts, body.token, announce_customer)
    except AccountError as exc:
        raise _api_error(exc) from None
    return CustomerOut.model_validate(customer)


@router.post("/password-forgot", summary="Mail a password reset link (always 200)")
async def post_password_forgot(body: PasswordForgotIn, platform: PlatformDep) -> dict[str, str]:
    await recovery.forgot(platform.accounts, body.username)
    return {}


@router.get("/password-reset", summary="The emailed set-password link: opens the console's form")
async def get_password_reset(token: Annotated[str, Query(max_length=64)] = "") -> RedirectResponse:
    return RedirectResponse(f"/console/#/password-reset?token={_hex_only(token)}", status_code=302)


@router.post(
    "/password-reset",
    summary="Set a password with an emailed link token",
    responses={400: {"description": "Invalid, expired or used token, or a weak password"}},
)
async def post_password_reset(body: PasswordResetIn, platform: PlatformDep) -> dict[str, str]:
    try:
        await recovery.reset(platform.accounts, body.token, body.password, _announce_agent)
    except AccountError as exc:
        raise _api_error(exc) from None
    return {}


def _api_error(exc: AccountError, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(exc.status_code, exc.reason, exc.message, headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _announce_agent(tx: Tx, agent: Agent) -> None:
    announce(tx, agent, "agent_updated", AgentOut)


def _hex_only(token: str) -> str:
    """Keep the redirect a plain console URL whatever the query held."""
    return "".join(ch for ch in token if ch in "0123456789abcdefABCDEF")


@router.post(
    "/login",
    response_model=LoginOut,
    summary="Log in with username and password for a 7-day JWT",
    responses={401: {"description": "Wrong username or password"}, 429: {"description": "Too many failed logins"}},
)
async def post_login(body: LoginIn, platform: PlatformDep, request: Request, response: Response) -> LoginOut:
    settings = platform.settings
    username, source = body.username.strip().lower(), _client(request)
    # Failures count against the pair (this name from this address) and the address, never the
    # name alone: a guesser elsewhere cannot lock the owner out. The same limits hold for every
    # name, known or not, so a 429 reveals no account either.
    counters = [(f"login:{username}:{source}", settings.login_failure_limit),
                (f"login-from:{source}", settings.login_failure_limit_per_address)]
    for key, limit in counters:
        if await platform.throttle.failures(key) >= limit:
            minutes = max(1, settings.login_failure_window_s // 60)
            raise ApiError(429, "TOO_MANY_ATTEMPTS", f"Too many failed logins; wait {minutes} minutes, "
                           "or set a new password with POST /auth/password-forgot.", {"Retry-After": str(settings.login_failure_window_s)})
    async with platform.store.session() as session:
        agent = await session.scalar(
            select(Agent)
            .join(Customer, Customer.id == Agent.customer_id)
            .where(func.lower(Agent.username) == body.username.strip().lower())
            .where(Agent.tm_delete.is_(None), Customer.tm_delete.is_(None))
        )
    # Verified even for an unknown user, so timing does not reveal which usernames exist.
    if not await verify_secret(agent.password_hash if agent else "", body.password) or agent is None:
        for key, _limit in counters:
            await platform.throttle.fail(key, settings.login_failure_window_s)
        raise unauthenticated("Wrong username or password.")
    await platform.throttle.clear(counters[0][0])
    token = platform.jwt.issue(
        agent.id, agent.customer_id, agent.username, agent.permission, platform.clock.read(), agent.session_epoch
    )
    response.set_cookie(
        "token", token, max_age=platform.settings.jwt_lifetime_s, httponly=True, secure=True, samesite="strict"
    )
    return LoginOut(username=agent.username, token=token)
