"""The staff pages: log in, the call log (filters, live rows, CSV), one call (its journey, the
player, the review form) and the admins' configuration status."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy.engine import make_url

from attribution.calls import AS_RECORDED, NOTES_MAX, allowed_tags, stored_notes
from attribution.money import MoneyError, to_cents
from pbx.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    StaffUser,
    check_csrf,
    log_in,
    log_out,
    new_login_csrf,
    require_user,
    set_cookie,
)
from pbx.http import read_form, whole_number
from pbx.keys import CALLS, MISSED_COUNT, PBX_LINK, READER, SETTINGS, TEMPLATES, VISITS
from pbx.ratelimit import LoginRefused
from pbx.staff_api import call_id_of
from pbx.staff_ui.export import COLUMNS, csv_row, csv_text
from pbx.staff_ui.query import PAGE_SIZE, parse_log_query
from pbx.storage.call_speech_read import heard_phrases, speech_of
from pbx.storage.calls import Review
from pbx.storage.journey import load_journey
from pbx.storage.tables import MAX_ROW_ID

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
EXPORT_BATCH = 1000


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(path=request.path, missed_count=request.get(MISSED_COUNT), **context)
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def _zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].ui.timezone)


def _local_path(target: str) -> str:
    """Where to go after logging in: only a path on this site, never another host. Checked
    as text before it is parsed: urlsplit raises on a host it cannot read ("//[")."""
    if not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/"
    return "/" if parts.scheme or parts.netloc else target


async def login_form(
    request: web.Request, error: str = "", status: int = 200, next_path: str | None = None
) -> web.Response:
    """The login page; `next_path`: where the refused form was going (a POST has no query)."""
    token = new_login_csrf()
    next_path = _local_path(next_path or request.query.get("next", "/"))
    response = render(
        request, "login.html", status, user=None, csrf=token, next=next_path, error=error
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


async def login(request: web.Request) -> web.Response:
    form = await read_form(request)
    check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE), form.get("csrf"))
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    going_to = _local_path(str(form.get("next", "/")))  # before a session is made
    try:
        token = await log_in(request, name, password)
    except LoginRefused as refused:
        minutes = math.ceil(refused.retry_after / 60)
        message = (
            "Too many logins at once. Try again in a moment."
            if refused.busy
            else f"Too many failed attempts. Try again in {minutes} min."
        )
        response = await login_form(request, message, 429, str(form.get("next", "/")))
        response.headers["Retry-After"] = str(math.ceil(refused.retry_after))
        return response
    if token is None:
        return await login_form(
            request, "Wrong user name or password.", 401, str(form.get("next", "/"))
        )
    response = web.HTTPSeeOther(going_to)
    set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.Response:
    user = await require_user(request)
    check_csrf(user.csrf, (await read_form(request)).get("csrf"))
    await log_out(request)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def call_log(request: web.Request) -> web.Response:
    user = await require_user(request)
    query = parse_log_query(request.query, _zone(request))
    calls = request.app[CALLS]
    total, rows = await calls.list(query.where)
    settings = request.app[SETTINGS]
    return render(
        request,
        "calls.html",
        user=user,
        q=query,
        total=total,
        rows=rows,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        newest_id=max((row["id"] for row in rows), default=0),
        choices={c: await calls.choices(c) for c in ("source", "medium", "campaign")},
        tags=settings.tags,
        phrases=await heard_phrases(request.app[READER]),
        statics=settings.static,
    )


async def live_rows(request: web.Request) -> web.Response:
    """Calls stored after `after` that match the log's filters, as table rows to prepend."""
    user = await require_user(request)
    after = whole_number(request.query.get("after", ""), "after", 0, MAX_ROW_ID)
    query = parse_log_query(request.query, _zone(request))
    where = replace(query.where, after_id=after, offset=0)
    _total, rows = await request.app[CALLS].list(where)
    html = request.app[TEMPLATES].get_template("_rows.html").render(rows=rows, q=query, user=user)
    newest = max((row["id"] for row in rows), default=after)
    return web.json_response(
        {"html": html, "count": len(rows), "newest_id": newest}, headers=SECURITY_HEADERS
    )


async def export_csv(request: web.Request) -> web.StreamResponse:
    """Every call matching the log's filters (not one page), newest first."""
    await require_user(request)
    query = parse_log_query(request.query, _zone(request))
    when = request.app[TEMPLATES].filters["when_iso"]
    stamp = datetime.now(_zone(request)).strftime("%Y%m%d-%H%M")
    response = web.StreamResponse(
        headers={
            **SECURITY_HEADERS,
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="calls-{stamp}.csv"',
        }
    )
    await response.prepare(request)
    await response.write(("\ufeff" + csv_text([list(COLUMNS)])).encode())  # BOM: Excel reads UTF-8
    # batches by the last row's place, not an offset: a call stored during the download
    # shifted every later batch by one, a row written twice at each boundary
    before = None
    while True:
        batch = replace(query.where, limit=EXPORT_BATCH, offset=0, before=before)
        _total, rows = await request.app[CALLS].list(batch)
        if not rows:
            break
        await response.write(csv_text(csv_row(row, when) for row in rows).encode())
        before = (rows[-1]["started_at"], rows[-1]["id"])
    await response.write_eof()
    return response


async def _call(request: web.Request) -> dict[str, Any]:
    call_id = call_id_of(request.match_info["call_id"])
    call = None if call_id is None else await request.app[CALLS].get(call_id)
    if call is None:
        raise web.HTTPNotFound(reason="there is no call with this number")
    return call


def review_mark(call: dict[str, Any]) -> str:
    """A digest of the review a call page shows. The form sends it back: a save from a page
    opened before someone else's change (the CRM's PATCH of the sale, the speech worker's
    tags, a colleague) put back what the page showed, and the change was lost unseen."""
    shown = [sorted(call["tags"]), call["score"], call["notes"] or None, call["sale_cents"]]
    return hashlib.blake2b(json.dumps(shown).encode(), digest_size=8).hexdigest()


async def _call_page(
    request: web.Request,
    user: StaffUser,
    call: dict[str, Any],
    error: str = "",
    status: int = 200,
    seen: str | None = None,
) -> web.Response:
    """The call's page; `seen`: the review mark its form sends back (the call's own, unless
    the form shows a review other than the stored one)."""
    settings = request.app[SETTINGS]
    views = (
        await request.app[VISITS].page_views(call["session_id"], before=call["started_at"])
        if call["session_id"]
        else []
    )
    journey = await load_journey(request.app[READER], call["id"], request.app[SETTINGS].region)
    speech = await speech_of(request.app[READER], call["id"])
    return render(
        request,
        "call.html",
        status,
        user=user,
        call=call,
        views=views,
        journey=journey,
        speech=speech,
        speech_waiting=speech is None
        and settings.speech.enabled
        and bool(call["recording"])
        and not call["recording"].endswith(AS_RECORDED),
        tags=allowed_tags(settings.tags, call["tags"]),
        seen=seen or review_mark(call),
        error=error,
        saved=request.query.get("saved") == "1" and not error,
    )


async def call_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    return await _call_page(request, user, await _call(request))


class _InvalidReview(ValueError):
    pass


def _sale_cents(text: str) -> int | None:
    """The form's sale amount as cents, read as every other amount is (attribution.money: the
    CRM's, the cost files'), "1 500,50" and "1.234,56" included; empty means no sale."""
    if not text.strip():
        return None
    try:
        return to_cents(text)
    except MoneyError as exc:
        raise _InvalidReview(f"Sale amount: {exc}") from None


def _review(form: Any, allowed: list[str]) -> Review:
    tags = frozenset(str(t) for t in form.getall("tag", []))
    if unknown := tags - set(allowed):
        raise _InvalidReview(f"Unknown tag(s): {', '.join(sorted(unknown))}")
    score_text = str(form.get("score", ""))
    if score_text not in ("", "1", "2", "3", "4", "5"):
        raise _InvalidReview("Score: from 1 to 5, or none")
    notes = stored_notes(str(form.get("notes", ""))) or ""
    if len(notes) > NOTES_MAX:
        raise _InvalidReview(f"Notes: at most {NOTES_MAX} characters")
    return Review(
        tags=tags,
        score=int(score_text) if score_text else None,
        notes=notes or None,
        sale_cents=_sale_cents(str(form.get("sale", ""))),
    )


async def save_review(request: web.Request) -> web.Response:
    user = await require_user(request)
    form = await read_form(request)
    check_csrf(user.csrf, form.get("csrf"))
    call = await _call(request)
    try:
        review = _review(form, allowed_tags(request.app[SETTINGS].tags, call["tags"]))
    except _InvalidReview as exc:
        return await _call_page(request, user, call, str(exc), 400)
    if (shown := form.get("seen")) is not None and shown != review_mark(call):
        # changed since the page was shown: nothing saved; the form keeps this user's version,
        # now marked as seeing the stored one, so saving again keeps it on purpose
        who = f" by {call['reviewed_by']}" if call["reviewed_by"] else ""
        mine = {
            **call,
            "tags": sorted(review.tags),
            "score": review.score,
            "notes": review.notes,
            "sale_cents": review.sale_cents,
        }
        message = (
            f"This call's review was changed{who} while the page was open: nothing was saved."
            " The form shows your version: save again to keep it, or reload the page for theirs."
        )
        return await _call_page(request, user, mine, message, 409, seen=review_mark(call))
    await request.app[CALLS].review(call["id"], review, user.name)
    raise web.HTTPSeeOther(f"/calls/{call['id']}?saved=1")


async def admin_status(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    settings = request.app[SETTINGS]
    held: dict[tuple[str, str], int] = {}
    for lease in await request.app[VISITS].current_leases():
        key = (str(lease["site"]), str(lease["pool"]))
        held[key] = held.get(key, 0) + bool(lease["held"])
    return render(
        request,
        "admin.html",
        user=user,
        settings=settings,
        held=held,
        pbx=request.app[PBX_LINK].state(),
        database=make_url(settings.database).render_as_string(hide_password=True),
        pending=len(await request.app[CALLS].unconverted_recordings(None, 1000)),
    )


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/login", login_form),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/calls", call_log),
        web.get("/calls/live", live_rows),
        # no HEAD: a streamed body has no length to announce, and aiohttp wrote it after the
        # HEAD's headers anyway, out of step with the next response on the connection
        web.get("/calls.csv", export_csv, allow_head=False),
        web.get(r"/calls/{call_id:[0-9]{1,12}}", call_page),
        web.post(r"/calls/{call_id:[0-9]{1,12}}", save_review),
        web.get("/admin", admin_status),
        web.static("/static/ui", STATIC),
    ]
