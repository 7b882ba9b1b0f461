"""``/v1.0/webhook_deliveries``: what happened to the events sent to the customer's webhook.

Not part of VoIPBIN's API; the console's settings page shows it, so a user sees why their webhook
receives nothing without reading server logs.
"""

from __future__ import annotations

from fastapi import APIRouter

from voipbin.api.crud import list_view
from voipbin.api.deps import AdminDep, PagingDep, PlatformDep
from voipbin.store.models import WebhookDelivery
from voipbin.views import Page, Resource, Timestamp

router = APIRouter(prefix="/v1.0", tags=["webhook"])


class WebhookDeliveryOut(Resource):
    id: str
    customer_id: str
    event_id: str
    event_type: str
    method: str
    uri: str
    status: str
    attempts: int
    last_status_code: int
    last_error: str
    tm_create: Timestamp
    tm_update: Timestamp = None


@router.get(
    "/webhook_deliveries",
    response_model=Page[WebhookDeliveryOut],
    summary="Recent webhook deliveries, newest first: pending, delivered or failed",
)
async def list_webhook_deliveries(platform: PlatformDep, who: AdminDep, paging: PagingDep) -> Page[WebhookDeliveryOut]:
    return await list_view(platform, WebhookDelivery, WebhookDeliveryOut, who.customer_id, paging)
