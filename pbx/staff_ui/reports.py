"""The reports page (/reports, staff and admin): the channel report as a table with charts, a
first-vs-last comparison, drill-down links and its CSV (/reports.csv).

The query is read by reports_api.read_report_query, so the page, its CSV and GET /api/v1/reports
accept the same parameters and answer the same numbers; this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from attribution.money import cents_text
from attribution.reports import (
    COLUMNS,
    MODEL_NAMES,
    NOT_SET,
    OTHER,
    PROBABLE,
    UNSPLIT_COST,
    GroupBy,
    Model,
    Report,
    ReportQuery,
    ReportRow,
    Tally,
    time_key,
)
from pbx.auth import require_user
from pbx.keys import READER, TEMPLATES
from pbx.reports_api import MAX_FILTER, csv_response, read_report_query, report_for, today
from pbx.staff_ui import charts
from pbx.staff_ui.views import SECURITY_HEADERS, render
from pbx.storage.report_series import calls_per_day

GROUP_NAMES = {
    GroupBy.SOURCE: "Source",
    GroupBy.MEDIUM: "Medium",
    GroupBy.CAMPAIGN: "Campaign",
    GroupBy.TERM: "Keyword (utm_term)",
    GroupBy.CONTENT: "Ad content (utm_content)",
    GroupBy.LANDING: "Landing page",
    GroupBy.REFERRER: "Referring site",
    GroupBy.STATIC: "Offline source (static number)",
    GroupBy.POOL: "Number pool",
    GroupBy.SITE: "Site",
    GroupBy.DAY: "Day",
    GroupBy.WEEK: "Week",
    GroupBy.MONTH: "Month",
}
FILTERS = [g for g in GroupBy if not g.is_time]
#: where a click on a row's key leads: that key as a filter, grouped by the next finer thing
DRILL = {
    GroupBy.SOURCE: GroupBy.CAMPAIGN,
    GroupBy.MEDIUM: GroupBy.SOURCE,
    GroupBy.CAMPAIGN: GroupBy.TERM,
    GroupBy.TERM: GroupBy.LANDING,
    GroupBy.CONTENT: GroupBy.LANDING,
    GroupBy.LANDING: GroupBy.SOURCE,
    GroupBy.REFERRER: GroupBy.LANDING,
    GroupBy.STATIC: GroupBy.DAY,
    GroupBy.POOL: GroupBy.SOURCE,
    GroupBy.SITE: GroupBy.SOURCE,
}
NOT_A_FILTER = (PROBABLE, UNSPLIT_COST, OTHER)  # rows that name no value a filter could select
MONEY = frozenset({"revenue", "cost", "cost_per_call", "cost_per_lead"})
RATIOS = frozenset({"answer_rate", "roi", "conversion"})
HEADERS = {
    "visits": "Visits",
    "calls": "Calls",
    "first_time_callers": "First-time callers",
    "repeat_calls": "Repeat calls",
    "answered": "Answered",
    "missed": "Missed",
    "answer_rate": "Answer rate",
    "avg_talk_seconds": "Avg talk",
    "leads": "Leads",
    "sales": "Sales",
    "revenue": "Revenue",
    "cost": "Cost",
    "cost_per_call": "Cost per call",
    "cost_per_lead": "Cost per lead",
    "roi": "ROI",
    "conversion": "Calls per visit",
}
NONE = "—"
BAR_ROWS = 10  # rows in the calls-and-revenue chart; the table has them all


def percent(ratio: float | None) -> str:
    if ratio is None:
        return NONE
    return f"{round(ratio * 100, 1):g}%"


def _cells(row: ReportRow, clock: Callable[[float], str]) -> list[str]:
    """A row as the page writes it: money as decimals (the header names the currency), ratios
    as percentages, talk time as m:ss, "—" where a ratio has no denominator."""
    values = {
        **row.as_json(),
        "revenue": row.tally.revenue_cents,
        "cost": row.tally.cost_cents,
        "cost_per_call": row.cost_per_call,
        "cost_per_lead": row.cost_per_lead,
    }
    out = []
    for column in COLUMNS[1:]:
        value = values[column]
        if value is None:
            out.append(NONE)
        elif column in MONEY:
            out.append(cents_text(value))
        elif column in RATIOS:
            out.append(percent(value))
        elif column == "avg_talk_seconds":
            out.append(clock(value))
        else:
            out.append(str(value))
    return out


@dataclass(frozen=True)
class Links:
    """Query strings for this page: the current report with some parameters changed."""

    params: Mapping[str, str]

    @classmethod
    def of(cls, query: ReportQuery, compare: bool) -> Links:
        params = {
            "since": query.since.isoformat(),
            "until": query.until.isoformat(),
            "group_by": str(query.group_by),
            "model": str(query.model),
            "include_probable": "1" if query.include_probable else "",
            "compare": "1" if compare else "",
            **{str(k): v for k, v in query.filters.items()},
        }
        return cls(params)

    def href(self, **changes: str) -> str:
        merged = {**self.params, **changes}
        return urlencode({k: v for k, v in merged.items() if v})


def quick_ranges(now: date) -> list[tuple[str, date, date]]:
    first_of_month = now.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    return [
        ("Today", now, now),
        ("7 days", now - timedelta(days=6), now),
        ("30 days", now - timedelta(days=29), now),
        ("This month", first_of_month, now),
        ("Last month", last_month_end.replace(day=1), last_month_end),
    ]


def _period(key: str, group_by: GroupBy) -> tuple[date, date]:
    """The days a row of a time grouping covers."""
    if group_by is GroupBy.MONTH:
        start = date.fromisoformat(key + "-01")
        after = (start + timedelta(days=32)).replace(day=1)
        return start, after - timedelta(days=1)
    start = date.fromisoformat(key)
    return start, start + timedelta(days=6 if group_by is GroupBy.WEEK else 0)


def drill(query: ReportQuery, key: str) -> dict[str, str] | None:
    """The changes that show what a row is made of, or None when the row cannot be opened."""
    group = query.group_by
    if key in NOT_A_FILTER or len(key) > MAX_FILTER:  # "(probable)" is no day either
        return None
    if group.is_time:
        start, end = _period(key, group)
        finer = GroupBy.SOURCE if group is GroupBy.DAY else GroupBy.DAY
        return {"since": start.isoformat(), "until": end.isoformat(), "group_by": str(finer)}
    finer = DRILL[group]
    if finer in query.filters:
        finer = GroupBy.DAY
    return {str(group): key, "group_by": str(finer)}


@dataclass(frozen=True)
class Compared:
    """A key's calls, leads and revenue under first and under last touch."""

    key: str
    first: ReportRow
    last: ReportRow

    def cells(self) -> list[tuple[str, str, str]]:
        """(first, last, last − first) for calls, leads and revenue."""
        f, la = self.first.tally, self.last.tally
        return [
            _difference(f.calls, la.calls, str),
            _difference(f.leads, la.leads, str),
            _difference(f.revenue_cents, la.revenue_cents, cents_text),
        ]


def _difference(first: int, last: int, text: Callable[[int], str]) -> tuple[str, str, str]:
    diff = last - first
    return text(first), text(last), _signed(diff, text(diff))


def _signed(value: int, text: str) -> str:
    return f"+{text}" if value > 0 else text.replace("-", "\u2212")


def compare_rows(first: Report, last: Report) -> list[Compared]:
    """The rows of both models side by side, in the last-touch report's order, then the keys
    only first touch has."""
    by_key = {r.key: r for r in first.rows}
    rows = [Compared(r.key, by_key.pop(r.key, ReportRow(r.key, Tally())), r) for r in last.rows]
    rows += [Compared(r.key, r, ReportRow(r.key, Tally())) for r in first.rows if r.key in by_key]
    return rows


def _short_day(key: str, bucket: GroupBy) -> str:
    if bucket is GroupBy.MONTH:
        return date.fromisoformat(key + "-01").strftime("%b %Y")
    day = date.fromisoformat(key)
    return f"{day.day} {day:%b}"


def bucket_of(query: ReportQuery) -> GroupBy:
    """Columns per day up to two months, per week up to a year, then per month."""
    days = (query.until - query.since).days + 1
    if days <= 62:
        return GroupBy.DAY
    return GroupBy.WEEK if days <= 371 else GroupBy.MONTH


def stack_key(query: ReportQuery) -> GroupBy:
    """The calls chart is stacked by the report's grouping, or by source under a time one."""
    return GroupBy.SOURCE if query.group_by.is_time else query.group_by


def calls_chart(query: ReportQuery, series: Sequence[tuple[date, str, int]]) -> charts.Chart:
    bucket = bucket_of(query)
    days = (query.until - query.since).days + 1
    columns = list(
        dict.fromkeys(time_key(query.since + timedelta(days=i), bucket) for i in range(days))
    )
    keyed = [(time_key(day, bucket), key, count) for day, key, count in series]
    keys, counts = charts.stack(keyed, columns)
    name = GROUP_NAMES[stack_key(query)].lower()
    labels = [_short_day(c, bucket) for c in columns]
    return charts.stacked_columns(f"Calls per {bucket} by {name}", labels, keys, counts)


def channel_chart(report: Report) -> charts.Chart:
    rows = [r for r in report.rows if r.tally.calls or r.tally.revenue_cents][:BAR_ROWS]
    revenue = [r.tally.revenue_cents for r in rows]
    return charts.grouped_bars(
        f"Calls and revenue by {GROUP_NAMES[report.query.group_by].lower()}",
        [r.key for r in rows],
        [
            charts.Measure(
                "Calls", [r.tally.calls for r in rows], [str(r.tally.calls) for r in rows]
            ),
            charts.Measure(
                f"Revenue, {report.currency}", revenue, [cents_text(c) for c in revenue]
            ),
        ],
    )


def _compare_flag(request: web.Request) -> bool:
    value = request.query.get("compare", "")
    if value not in ("", "0", "1"):
        raise web.HTTPBadRequest(reason="compare: expected 1 or nothing")
    return value == "1"


async def reports_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    compare = _compare_flag(request)
    now = today(request)
    query = read_report_query(request.query, now)
    engine = request.app[READER]
    context: dict[str, Any] = {}
    if compare:
        first = await report_for(request, replace(query, model=Model.FIRST))
        last = await report_for(request, replace(query, model=Model.LAST))
        report = last
        context.update(
            compared=compare_rows(first, last),
            compared_totals=Compared("(total)", first.totals, last.totals),
        )
    else:
        report = await report_for(request, query)
        series = await calls_per_day(engine, query, stack_key(query))
        context.update(charts=[calls_chart(query, series), channel_chart(report)])
    clock = request.app[TEMPLATES].filters["clock"]
    return render(
        request,
        "reports.html",
        user=user,
        q=query,
        report=report,
        compare=compare,
        links=Links.of(query, compare),
        quick=quick_ranges(now),
        rows=[(r, _cells(r, clock), drill(query, r.key)) for r in report.rows],
        totals=_cells(report.totals, clock),
        headers=[(c, HEADERS[c]) for c in COLUMNS[1:]],
        money=MONEY,
        group_names=GROUP_NAMES,
        model_names=MODEL_NAMES,
        filters=FILTERS,
        not_set=NOT_SET,
        **context,
    )


async def reports_csv(request: web.Request) -> web.Response:
    """The page's table as CSV, for a logged-in user (the API's CSV needs a bearer token)."""
    await require_user(request)
    query = read_report_query(request.query, today(request))
    report = await report_for(request, query)
    response = csv_response(report, for_people=True)
    response.headers.update(SECURITY_HEADERS)
    return response


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/reports", reports_page), web.get("/reports.csv", reports_csv)]
