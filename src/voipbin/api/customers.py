"""``/v1.0/customer`` (the caller's own account) and ``/v1.0/customers`` (the operator's view)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from voipbin.accounts import email_change, recovery
from voipbin.accounts.customers import Profile, assign_virtual_number, create_customer
from voipbin.accounts.signup import end_pending_signups, normalize_email
from voipbin.api.crud import page
from voipbin.api.deps import AdminDep, PagingDep, PlatformDep, StaffDep, SuperadminDep
from voipbin.api.errors import bad_request, conflict, not_found
from voipbin.auth.passwords import hash_secret
from voipbin.auth.permissions import Permission
from voipbin.core.ids import is_uuid
from voipbin.mail.outbox import send_later
from voipbin.runtime import Platform
from voipbin.store.db import Tx
from voipbin.store.models import Agent, Customer
from voipbin.views import CustomerOut, CustomerSelf, LongText, Page, ShortText, Strict, WebhookMethod, announce

router = APIRouter(prefix="/v1.0", tags=["customer"])

Url = Annotated[str, Field(max_length=2048)]


class CustomerUpdate(Strict):
    name: ShortText | None = None
    detail: LongText | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    phone_number: Annotated[str, Field(max_length=32)] | None = None
    address: LongText | None = None
    webhook_method: WebhookMethod | None = None
    webhook_uri: Url | None = None

    @field_validator("webhook_uri")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL, or empty to stop webhooks")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and normalize_email(value) is None:
            raise ValueError("is not a valid email address")
        return value


class CustomerCreate(CustomerUpdate):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: Annotated[str, Field(min_length=8, max_length=1024)] = ""


def check_webhook_target(platform: Platform, uri: str | None) -> None:
    """400 for a webhook URI naming an address the platform will not connect to (names are checked per delivery)."""
    if not uri:
        return
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("webhook_uri must be an http:// or https:// URL, or empty to stop webhooks.")
    if problem := platform.egress.literal_problem(parts.hostname):
        raise bad_request(f"webhook_uri: {problem}.", "WEBHOOK_TARGET_REFUSED")


def _emit(tx: Tx, customer: Customer, action: str) -> None:
    announce(tx, customer, f"customer_{action}")


def _apply(customer: Customer, body: CustomerUpdate, tx: Tx) -> None:
    changes = body.model_dump(exclude_none=True, exclude={"password"})
    if changes.get("webhook_uri") and not (changes.get("webhook_method") or customer.webhook_method):
        changes["webhook_method"] = "POST"
    for field, value in changes.items():
        setattr(customer, field, value)
    customer.tm_update = tx.clock.now()


async def _live_customer(session: AsyncSession, customer_id: str) -> Customer:
    customer = None
    if is_uuid(customer_id):
        customer = await session.scalar(select(Customer).where(Customer.id == customer_id, Customer.tm_delete.is_(None)))
    if customer is None:
        raise not_found("customer")
    return customer


@router.get("/customer", response_model=CustomerSelf | CustomerOut, summary="Your customer account")
async def get_own(platform: PlatformDep, who: StaffDep) -> CustomerOut:
    async with platform.store.session() as session:
        customer = await _live_customer(session, who.customer_id)
    # The webhook secret is an administrator's business.
    view = CustomerSelf if who.permission & Permission.CUSTOMER_ADMIN or who.is_superadmin else CustomerOut
    return view.model_validate(customer)


@router.put(
    "/customer",
    response_model=CustomerSelf,
    summary="Update your account, e.g. its webhook",
    description="A new `email` takes effect once its owner opens the confirmation link mailed to it.",
)
async def update_own(body: CustomerUpdate, platform: PlatformDep, who: AdminDep) -> CustomerSelf:
    check_webhook_target(platform, body.webhook_uri)
    confirmation = None
    async with platform.store.transaction() as tx:
        customer = await _live_customer(tx.session, who.customer_id)
        new_email = normalize_email(body.email) if body.email else None
        if new_email is not None and new_email != customer.email.lower():
            confirmation = await email_change.request(platform.accounts, tx, customer, new_email)
        _apply(customer, body.model_copy(update={"email": None}), tx)
        _emit(tx, customer, "updated")
    if confirmation is not None:
        send_later(platform.mailer, confirmation)
    return CustomerSelf.model_validate(customer)


def announce_customer(tx: Tx, customer: Customer) -> None:
    _emit(tx, customer, "updated")


@router.get("/customers", response_model=Page[CustomerOut], tags=["operator"])
async def list_all(platform: PlatformDep, _: SuperadminDep, paging: PagingDep) -> Page[CustomerOut]:
    async with platform.store.session() as session:
        query = select(Customer).where(Customer.tm_delete.is_(None))
        rows, token = await page(session, query, Customer, paging)
    return Page(result=[CustomerOut.model_validate(r) for r in rows], next_page_token=token)


@router.post("/customers", response_model=CustomerOut, tags=["operator"], summary="Create a customer and its admin")
async def create(body: CustomerCreate, platform: PlatformDep, _: SuperadminDep) -> CustomerOut:
    check_webhook_target(platform, body.webhook_uri)
    email = normalize_email(body.email)
    if email is None:
        raise bad_request("'email' is not a valid email address.")
    if body.password and (problem := recovery.password_problem(body.password, email)):
        raise bad_request(problem, "WEAK_PASSWORD")
    password_hash = await hash_secret(body.password) if body.password else ""
    async with platform.store.transaction() as tx:
        if await tx.session.scalar(select(Agent.id).where(Agent.username == email, Agent.tm_delete.is_(None))):
            raise conflict(f"{email} already has an account.")
        fields = body.model_dump(exclude_none=True, exclude={"password", "email"})
        customer, _admin = await create_customer(
            tx, Profile(email=email, **fields), admin_password_hash=password_hash, email_verified=True
        )
        if platform.settings.sandbox:
            await assign_virtual_number(tx, customer.id, detail="Virtual number given when the customer was created")
        await end_pending_signups(tx, email)
        _emit(tx, customer, "created")
    return CustomerOut.model_validate(customer)


@router.get("/customers/{customer_id}", response_model=CustomerOut, tags=["operator"])
async def get(customer_id: str, platform: PlatformDep, _: SuperadminDep) -> CustomerOut:
    async with platform.store.session() as session:
        return CustomerOut.model_validate(await _live_customer(session, customer_id))


@router.put("/customers/{customer_id}", response_model=CustomerOut, tags=["operator"])
async def update(customer_id: str, body: CustomerUpdate, platform: PlatformDep, _: SuperadminDep) -> CustomerOut:
    check_webhook_target(platform, body.webhook_uri)
    async with platform.store.transaction() as tx:
        customer = await _live_customer(tx.session, customer_id)
        _apply(customer, body, tx)
        _emit(tx, customer, "updated")
    return CustomerOut.model_validate(customer)


@router.delete("/customers/{customer_id}", response_model=CustomerOut, tags=["operator"])
async def delete(customer_id: str, platform: PlatformDep, who: SuperadminDep) -> CustomerOut:
    if customer_id == who.customer_id:
        raise bad_request("The operator's own customer cannot be deleted.")
    async with platform.store.transaction() as tx:
        customer = await _live_customer(tx.session, customer_id)
        customer.status = "deleted"
        customer.tm_delete = customer.tm_update = tx.clock.now()
        _emit(tx, customer, "deleted")
    return CustomerOut.model_validate(customer)
