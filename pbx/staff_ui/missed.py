"""`/calls/missed`: the callers to call back, oldest first, and the "called back" button; and the
count of them that every page's navigation shows."""

from __future__ import annotations

from aiohttp import web

from pbx.auth import SESSION_COOKIE, check_csrf, current_user, require_user
from pbx.http import read_form, whole_number
from pbx.keys import CLOCK, ENGINE, MISSED_COUNT, READER
from pbx.staff_ui.views import render
from pbx.storage.missed import (
    PAGE,
    mark_called_back,
    missed_callers,
    missed_count,
    recent_callbacks,
)
from pbx.storage.tables import MAX_ROW_ID


async def count_for_navigation(request: web.Request) -> None:
    """The navigation's "Missed calls (N)": one indexed count per page a logged-in user opens
    (a page's template is rendered without awaiting, so the count is read before)."""
    if (
        not request.path.startswith("/static/")
        and SESSION_COOKIE in request.cookies
        and await current_user(request) is not None
    ):
        request[MISSED_COUNT] = await missed_count(request.app[READER])


async def _page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    user = await require_user(request)
    engine = request.app[ENGINE]
    total = request[MISSED_COUNT] if MISSED_COUNT in request else await missed_count(engine)
    return render(
        request,
        "missed.html",
        status,
        user=user,
        rows=await missed_callers(engine),
        total=total,
        page_size=PAGE,
        done=await recent_callbacks(engine),
        error=error,
    )


async def missed_page(request: web.Request) -> web.Response:
    return await _page(request)


async def called_back(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await read_form(request)
    check_csrf(user.csrf, form.get("csrf"))
    call_id = whole_number(str(form.get("call_id", "")), "call_id", 1, MAX_ROW_ID)
    engine = request.app[ENGINE]
    if not await mark_called_back(engine, call_id, user.name, request.app[CLOCK]()):
        message = "That caller has called again or was answered since; the list is up to date now."
        return await _page(request, message, 409)
    raise web.HTTPSeeOther("/calls/missed")


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/calls/missed", missed_page), web.post("/calls/missed", called_back)]
