"""The dashboard (`/`, after login): today and the last 7 and 30 days at a glance, the missed
callers still to call back, and the sources that brought the most calls.

The numbers are the channel report's totals (pbx/storage/report_queries.build_report), so the
dashboard and /api/v1/reports never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from aiohttp import web

from attribution.reports import (
    OWN_ROWS,
    GroupBy,
    ReportQuery,
    ReportRow,
    report_range,
)
from pbx.auth import require_user
from pbx.keys import MISSED_COUNT, READER, SETTINGS
from pbx.reports_api import today
from pbx.staff_ui.views import render
from pbx.storage.missed import missed_count
from pbx.storage.report_queries import build_report

PERIODS = (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))
TOP_SOURCES = 5


@dataclass(frozen=True)
class Tile:
    label: str
    since: date
    until: date
    totals: ReportRow


async def dashboard(request: web.Request) -> web.Response:
    user = await require_user(request)
    engine, settings = request.app[READER], request.app[SETTINGS]
    now = today(request)
    tiles: list[Tile] = []
    top: list[ReportRow] = []
    for label, days in PERIODS:
        since, until = report_range(now, days)
        report = await build_report(
            engine, settings, ReportQuery(since, until, group_by=GroupBy.SOURCE)
        )
        tiles.append(Tile(label, since, until, report.totals))
        top = [r for r in report.rows if r.tally.calls and r.key not in OWN_ROWS]
    missed = request[MISSED_COUNT] if MISSED_COUNT in request else await missed_count(engine)
    return render(
        request,
        "dashboard.html",
        user=user,
        tiles=tiles,
        top=top[:TOP_SOURCES],
        top_since=tiles[-1].since,
        top_until=tiles[-1].until,
        missed=missed,
    )


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/", dashboard)]
