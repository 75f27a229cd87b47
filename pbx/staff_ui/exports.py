"""`/admin/exports`: the ad platforms' upload files of a range of days, as downloads, with how
many calls each leaves out and why (the same files as `calltrack export`, pbx.ad_exports)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from attribution.reports import DayError, read_day, report_range
from integrations.conversions import ConversionCall, Export
from pbx.ad_exports import DEFAULT_DAYS, KINDS, NotConfigured, build, file_name, read_calls
from pbx.auth import require_user
from pbx.keys import CLOCK, READER, SETTINGS
from pbx.settings import Settings
from pbx.staff_ui.export import upload_text
from pbx.staff_ui.views import SECURITY_HEADERS, render
from pbx.storage.conversions import TooManyCalls

MAX_DAYS = 92  # one file: a quarter (the CLI takes longer ranges)


class _BadRange(ValueError):
    pass


def _range(query: Mapping[str, str], today: date) -> tuple[date, date]:
    first, last = report_range(today, DEFAULT_DAYS)
    try:
        since = read_day(query.get("since"), "since", first)
        until = read_day(query.get("until"), "until", last)
    except DayError as exc:
        raise _BadRange(str(exc)) from None
    if until < since:
        raise _BadRange("until: expected a date on or after since")
    if (until - since).days + 1 > MAX_DAYS:
        raise _BadRange(
            f"since..until: at most {MAX_DAYS} days in one file; use `calltrack export` for more"
        )
    return since, until


def _today(request: web.Request) -> date:
    zone = ZoneInfo(request.app[SETTINGS].ui.timezone)
    return datetime.fromtimestamp(request.app[CLOCK](), zone).date()


async def exports_page(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    settings = request.app[SETTINGS]
    form = {k: request.query.get(k, "")[:32] for k in ("since", "until")}
    try:
        since, until = _range(request.query, _today(request))
        calls = await read_calls(request.app[READER], settings, since, until)
    except (_BadRange, TooManyCalls) as exc:
        return render(request, "exports.html", 400, user=user, form=form, error=str(exc))
    files = await asyncio.to_thread(_build_all, calls, settings, request.app[CLOCK]())
    return render(
        request,
        "exports.html",
        user=user,
        form={"since": since.isoformat(), "until": until.isoformat()},
        error="",
        files=files,
        calls=len(calls),
        max_days=MAX_DAYS,
    )


def _build_all(
    calls: list[ConversionCall], settings: Settings, now: float
) -> dict[str, Export | str]:
    """Every kind of file, or why there is none. In a thread: at MAX_CALLS calls this is
    seconds of CPU, and in the event loop it held up FastAGI's answers past the loop
    watchdog's limit (the daemon exited); a thread gives the loop its turn every few ms."""
    files: dict[str, Export | str] = {}
    for kind in KINDS:
        try:
            files[kind] = build(kind, calls, settings, now)
        except NotConfigured as exc:
            files[kind] = str(exc)
    return files


def _file(
    kind: str, calls: list[ConversionCall], settings: Settings, now: float
) -> tuple[Export, str]:
    """One file and its text, in a thread (see _build_all)."""
    export = build(kind, calls, settings, now)
    return export, upload_text(export.lines)


async def download(request: web.Request) -> web.Response:
    await require_user(request, admin=True)
    kind = request.match_info["kind"]
    settings = request.app[SETTINGS]
    try:
        since, until = _range(request.query, _today(request))
        calls = await read_calls(request.app[READER], settings, since, until)
        export, text = await asyncio.to_thread(_file, kind, calls, settings, request.app[CLOCK]())
    except (_BadRange, TooManyCalls, NotConfigured) as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{file_name(kind, since, until)}"',
            "X-Calltrack-Left-Out": str(sum(export.left_out.values())),
        },
    )


def routes() -> list[web.AbstractRouteDef]:
    kinds = "|".join(KINDS)
    return [
        web.get("/admin/exports", exports_page),
        web.get(f"/admin/exports/{{kind:{kinds}}}.csv", download),
    ]
