"""`GET /api/v1/reports` (bearer token): the channel report as JSON, or CSV with format=csv.

The query is read here once for the API and the staff page (/reports), so both accept the same
parameters: since, until (local dates in ui.timezone, both included; default the last 30 days),
group_by, model, include_probable, and a filter per grouping (e.g. source=google).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web

from attribution.reports import (
    COLUMNS,
    DayError,
    GroupBy,
    Model,
    Report,
    ReportQuery,
    read_day,
    report_range,
)
from pbx.keys import CLOCK, ENGINE, READER, SETTINGS
from pbx.settings import Scope
from pbx.staff_api import api_caller
from pbx.staff_ui.export import cell
from pbx.storage.report_queries import ReportTooLarge, build_report

MAX_DAYS = 3 * 366  # what one request may make the server sum
MAX_FILTER = 512
DEFAULT_DAYS = 30
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


_Choice = TypeVar("_Choice", GroupBy, Model)


def _choice(kind: type[_Choice], value: str | None, name: str, default: _Choice) -> _Choice:
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(v) for v in kind)
        raise web.HTTPBadRequest(reason=f"{name}: expected one of {allowed}") from None


def _date(value: str | None, name: str, default: date) -> date:
    try:
        return read_day(value, name, default)
    except DayError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None


def today(request: web.Request) -> date:
    zone = ZoneInfo(request.app[SETTINGS].ui.timezone)
    return datetime.fromtimestamp(request.app[CLOCK](), zone).date()


def read_report_query(params: Mapping[str, str], now: date) -> ReportQuery:
    """The report a request asks for; a 400 that names the parameter for anything else."""
    first, last = report_range(now, DEFAULT_DAYS)
    since = _date(params.get("since"), "since", first)
    until = _date(params.get("until"), "until", last)
    if until < since:
        raise web.HTTPBadRequest(reason="until: expected a date on or after since")
    if (until - since).days + 1 > MAX_DAYS:
        raise web.HTTPBadRequest(reason=f"since..until: at most {MAX_DAYS} days")
    filters: dict[GroupBy, str] = {}
    for group in GroupBy:
        value = params.get(str(group))
        if value is None or value == "" or group.is_time:
            continue
        if len(value) > MAX_FILTER:
            raise web.HTTPBadRequest(reason=f"{group}: at most {MAX_FILTER} characters")
        filters[group] = value
    probable = params.get("include_probable", "").lower()
    if probable not in _TRUE | _FALSE:
        raise web.HTTPBadRequest(reason="include_probable: expected true or false")
    return ReportQuery(
        since=since,
        until=until,
        group_by=_choice(GroupBy, params.get("group_by"), "group_by", GroupBy.SOURCE),
        model=_choice(Model, params.get("model"), "model", Model.LAST),
        filters=filters,
        include_probable=probable in _TRUE,
    )


async def report_for(request: web.Request, query: ReportQuery) -> Report:
    """The report through the reader; one too large to compute is the client's 400."""
    try:
        return await build_report(
            request.app[READER],
            request.app[SETTINGS],
            query,
            today=today(request),
            keeper=request.app[ENGINE],
        )
    except ReportTooLarge as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None


#: what GET /api/v1/reports takes: a typo (grup_by=) or a time filter (day=) is refused, not
#: silently ignored
API_PARAMETERS = frozenset(
    {"since", "until", "group_by", "model", "include_probable", "format"}
    | {str(g) for g in GroupBy if not g.is_time}
)


def report_csv(report: Report, *, notes: bool = False) -> str:
    """The report's table as CSV: a row per key, then the totals (the API's contract: a
    program reads the totals last). With `notes` (a download for people), after an empty row,
    what the JSON's `notes` say (what the `(other)` row sums, why no cost is shown), one cell
    a row, each beginning with "# ": a spreadsheet shows them under the table."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([str(report.query.group_by), *COLUMNS[1:]])
    for row in [*report.rows, report.totals]:
        writer.writerow([cell(v) for v in row.as_json().values()])
    if notes and report.notes:
        writer.writerow([])
        writer.writerows([f"# {note}"] for note in report.notes)
    return out.getvalue()


def csv_response(report: Report, *, for_people: bool = False) -> web.Response:
    """The report as a CSV download: the API's, the table alone; the staff page's
    (`for_people`), the notes under the table and a byte order mark before it, without which
    Excel reads UTF-8 as the system's code page (cp1251 in Russia: a Cyrillic campaign name
    turns to mojibake), as the calls' export does."""
    q = report.query
    name = f"calltrack-{q.group_by}-{q.since}-{q.until}.csv"
    return web.Response(
        text=("\ufeff" if for_people else "") + report_csv(report, notes=for_people),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def get_report(request: web.Request) -> web.Response:
    if isinstance(refused := api_caller(request, Scope.REPORTS_READ), web.Response):
        return refused
    params = request.query
    unknown = sorted(set(params) - API_PARAMETERS)
    if unknown:
        raise web.HTTPBadRequest(
            reason=f"unknown parameter {unknown[0]!r}; day, week and month ranges are since/until"
        )
    output = params.get("format", "json")
    if output not in ("json", "csv"):
        raise web.HTTPBadRequest(reason="format: expected json or csv")
    query = read_report_query(params, today(request))
    report = await report_for(request, query)
    if output == "csv":
        return csv_response(report)
    return web.json_response(report.as_json())


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/api/v1/reports", get_report)]
