"""`/admin/deliveries`: what was sent to webhooks and GA4, and how it went, for admins; with a
"Retry now" for a delivery that failed or is waiting for its next try (the receiver is fixed:
no need to wait for the backoff, or for a failed event to be lost)."""

from __future__ import annotations

from aiohttp import web

from integrations.compose import configured_targets
from pbx.auth import check_csrf, require_user
from pbx.http import read_form, whole_number
from pbx.keys import CLOCK, DELIVERIES, ENGINE, OUTBOX, SETTINGS
from pbx.staff_ui.views import render
from pbx.storage.deliveries import recent
from pbx.storage.outbox import DELIVERED, FAILED, PENDING, SKIPPED
from pbx.storage.tables import MAX_ROW_ID

STATES = (PENDING, FAILED, DELIVERED, SKIPPED)
LISTED = 200


def _state(value: str | None) -> str | None:
    if not value:
        return None
    if value not in STATES:
        raise web.HTTPBadRequest(reason=f"state: one of {', '.join(STATES)}")
    return value


async def deliveries_page(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    state = _state(request.query.get("state"))
    return render(
        request,
        "deliveries.html",
        user=user,
        rows=await recent(request.app[ENGINE], LISTED, state),
        state=state,
        states=STATES,
        listed=LISTED,
        retried=request.query.get("retried", ""),
        now=request.app[CLOCK](),
    )


async def retry(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    form = await read_form(request)
    check_csrf(user.csrf, form.get("csrf"))
    outbox_id = whole_number(str(form.get("id", "")), "id", 1, MAX_ROW_ID)
    state = _state(str(form.get("state", "")))
    targets = configured_targets(request.app[SETTINGS])
    if not await request.app[DELIVERIES].retry_now(outbox_id, targets):
        raise web.HTTPConflict(reason="that delivery was delivered or skipped: nothing to retry")
    request.app[OUTBOX].wake()
    query = f"?state={state}&retried={outbox_id}" if state else f"?retried={outbox_id}"
    raise web.HTTPSeeOther(f"/admin/deliveries{query}")


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/admin/deliveries", deliveries_page),
        web.post("/admin/deliveries", retry),
    ]
