"""The staff web pages, rendered on the server (Jinja2): small, no build step, work on a phone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from pbx.auth import current_user
from pbx.http import with_error_headers
from pbx.settings import Settings
from pbx.staff_ui.export import amount
from pbx.staff_ui.views import render, routes

__all__ = ["error_page", "routes", "templates"]

STATUS_LABELS = {
    "answered": "Answered",
    "missed": "Missed",
    "busy": "Busy",
    "abandoned": "Abandoned",
    "failed": "Failed",
    "voicemail": "Voicemail",  # the PBX took it, no person did
}
ATTRIBUTION_LABELS = {
    "session": "Website visit",
    "static": "Static number",
    "fallback": "Fallback number: pool was full, source unknown",
    "probable": "Probably a recent visitor: their number had just been released",
    "unknown": "No visitor held the number",
}


def _clock(seconds: float | None) -> str:
    """Durations as a phone shows them: 0:07, 12:30, 1:02:03."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def templates(settings: Settings) -> jinja2.Environment:
    """The page templates, with times shown in the configured time zone."""
    zone = ZoneInfo(settings.ui.timezone)

    def local(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, zone)

    def when(ts: float | None) -> str:
        return local(ts).strftime("%d %b %Y, %H:%M") if ts is not None else ""

    def when_iso(ts: float | None) -> str:
        return local(ts).isoformat(timespec="seconds") if ts is not None else ""

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pbx.staff_ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, when_iso=when_iso, clock=_clock, amount=amount)
    env.globals.update(
        status_labels=STATUS_LABELS,
        attribution_labels=ATTRIBUTION_LABELS,
        zone=settings.ui.timezone,
    )
    return env


async def error_page(request: web.Request, error: web.HTTPException) -> web.Response:
    """Errors on the pages are pages too: what went wrong, in words, and a way back."""
    user = await current_user(request)
    return with_error_headers(
        render(request, "error.html", error.status, user=user, error=error), error
    )
