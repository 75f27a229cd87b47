"""Report arithmetic: what a row of the channel report holds and how its ratios are computed.

Storage sums raw counts per key (`Tally`); everything derived from them (answer rate, cost per
lead, ROI) is computed here once, so the page, the JSON API, the CSV and the dashboard agree.
Money is whole cents; a ratio with a zero denominator is None ("—" on the page), never 0.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from attribution.money import cents_text, divide_cents


class GroupBy(StrEnum):
    SOURCE = "source"
    MEDIUM = "medium"
    CAMPAIGN = "campaign"
    TERM = "term"
    CONTENT = "content"
    LANDING = "landing"  # the landing page's path
    REFERRER = "referrer"  # the referring host
    STATIC = "static"  # the offline source of a static number
    POOL = "pool"
    SITE = "site"
    DAY = "day"
    WEEK = "week"  # keyed by its Monday
    MONTH = "month"

    @property
    def is_time(self) -> bool:
        return self in (GroupBy.DAY, GroupBy.WEEK, GroupBy.MONTH)


class Model(StrEnum):
    """Whom a call is credited to (see attribution.models)."""

    LAST = "last"  # the session that called
    FIRST = "first"  # the visitor's first touch
    LAST_NON_DIRECT = "last_non_direct"  # a direct visit credited to the latest earlier source


MODEL_NAMES = {
    Model.LAST: "Last touch: the visit the caller called from",
    Model.FIRST: "First touch: the visit that first brought the caller",
    Model.LAST_NON_DIRECT: "Last non-direct: a direct visit credited to the caller's latest"
    " earlier source (as Google Analytics and Metrica do)",
}

#: Keys of calls that no channel can be credited with; they are rows of their own, never dropped.
UNATTRIBUTED = "(unattributed)"
PROBABLE = "(probable)"  # calls only probably matched, when not asked to include them
TOTAL = "(total)"
NOT_SET = "(not set)"  # e.g. the term of a visit without utm_term, or of a static call
WEB = "(web)"  # under `static`: calls that came through the website
UNSPLIT_COST = "(costs)"  # the row of costs a grouping cannot split (e.g. by landing page)
OTHER = "(other)"  # the visits of the rows past MAX_VISIT_ROWS that have nothing but visits
#: rows that name no value of the grouping, shown after the others (of them, only UNATTRIBUTED
#: is also a filter's value)
OWN_ROWS = frozenset({UNATTRIBUTED, PROBABLE, UNSPLIT_COST, OTHER})

#: Rows with nothing but visits that a report shows (the range's most visited); the rest are
#: summed in OTHER. Anonymous visitors choose their tags: without a bound, a script could give a
#: report a row per visit, and every page of it would be seconds of work. Rows with calls, cost
#: or revenue are never folded, and take none of these places: they cost a call or an admin's
#: import to make.
MAX_VISIT_ROWS = 500


#: the days a request may name: room for a day or a month after the last
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


class DayError(ValueError):
    """A day option that is not a date in range; the text names the option."""


def read_day(text: str | None, name: str, default: date) -> date:
    """A local day as requests and commands give it (2026-11-30); `default` when not given."""
    if text is None or text == "":
        return default
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise DayError(f"{name}: expected a date like 2026-11-30") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DayError(f"{name}: expected a date from {FIRST_DAY} to {LAST_DAY}")
    return day


def local_day(day: date) -> int:
    """The rollups' day key: yyyymmdd."""
    return day.year * 10000 + day.month * 100 + day.day


def day_at(at: float, zone: tzinfo) -> int:
    """The day key of an instant, in the time zone reports count days in (ui.timezone)."""
    return local_day(datetime.fromtimestamp(at, zone).date())


def report_range(today: date, days: int) -> tuple[date, date]:
    """The last `days` days up to today."""
    return today - timedelta(days=days - 1), today


def day_of(key: int) -> date:
    return date(key // 10000, key // 100 % 100, key % 100)


def time_key(day: date, group_by: GroupBy) -> str:
    """A day's row key under a time grouping: the date, its week's Monday, or the month."""
    if group_by is GroupBy.WEEK:
        return (day - timedelta(days=day.weekday())).isoformat()
    if group_by is GroupBy.MONTH:
        return day.strftime("%Y-%m")
    return day.isoformat()


@dataclass(frozen=True)
class Tally:
    """Raw counts of one row; added up for totals and coarser groupings."""

    visits: int = 0
    calls: int = 0
    first_time_callers: int = 0
    #: calls from a number that called before (a withheld number is neither first-time nor this)
    repeat_calls: int = 0
    answered: int = 0
    missed: int = 0  # missed, busy, abandoned, failed or voicemail
    talk_seconds: float = 0.0  # of answered calls
    leads: int = 0
    sales: int = 0
    revenue_cents: int = 0
    cost_cents: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[Any, ...]:
        """The fields in their order (dataclasses.astuple deep-copies each: 20 times slower)."""
        return tuple(getattr(self, name) for name in _NAMES)

    @property
    def visits_only(self) -> bool:
        """Nothing but visits (spelled out: comparing with a new Tally cost 7 times as much,
        on every row of a year's term report)."""
        return not (
            self.calls
            or self.first_time_callers
            or self.repeat_calls
            or self.answered
            or self.missed
            or self.talk_seconds
            or self.leads
            or self.sales
            or self.revenue_cents
            or self.cost_cents
        )


_NAMES = tuple(f.name for f in fields(Tally))


def total(tallies: Iterable[Tally]) -> Tally:
    result = Tally()
    for tally in tallies:
        result = result + tally
    return result


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


def _money(cents: int | None) -> str | None:
    return cents_text(cents) if cents is not None else None


@dataclass(frozen=True)
class ReportRow:
    key: str
    tally: Tally

    @property
    def answer_rate(self) -> float | None:
        return _ratio(self.tally.answered, self.tally.calls)

    @property
    def avg_talk_seconds(self) -> float | None:
        return _ratio(self.tally.talk_seconds, self.tally.answered, 1)

    @property
    def cost_per_call(self) -> int | None:
        return divide_cents(self.tally.cost_cents, self.tally.calls)

    @property
    def cost_per_lead(self) -> int | None:
        return divide_cents(self.tally.cost_cents, self.tally.leads)

    @property
    def roi(self) -> float | None:
        """(revenue − cost) / cost."""
        t = self.tally
        return _ratio(t.revenue_cents - t.cost_cents, t.cost_cents)

    @property
    def conversion(self) -> float | None:
        """Calls per visit."""
        return _ratio(self.tally.calls, self.tally.visits)

    def as_json(self) -> dict[str, Any]:
        """The API's row: money as exact decimal strings ("1500.00"), ratios as numbers."""
        t = self.tally
        return {
            "key": self.key,
            "visits": t.visits,
            "calls": t.calls,
            "first_time_callers": t.first_time_callers,
            "repeat_calls": t.repeat_calls,
            "answered": t.answered,
            "missed": t.missed,
            "answer_rate": self.answer_rate,
            "avg_talk_seconds": self.avg_talk_seconds,
            "leads": t.leads,
            "sales": t.sales,
            "revenue": cents_text(t.revenue_cents),
            "cost": cents_text(t.cost_cents),
            "cost_per_call": _money(self.cost_per_call),
            "cost_per_lead": _money(self.cost_per_lead),
            "roi": self.roi,
            "conversion": self.conversion,
        }


#: The columns of a row, in the order of the JSON object, the CSV and the page.
COLUMNS = tuple(ReportRow("", Tally()).as_json())


@dataclass(frozen=True)
class ReportQuery:
    """One report: a range of local days (both included), a grouping, filters, a model."""

    since: date
    until: date
    group_by: GroupBy = GroupBy.SOURCE
    model: Model = Model.LAST
    filters: Mapping[GroupBy, str] = field(default_factory=dict)
    include_probable: bool = False


@dataclass(frozen=True)
class Report:
    query: ReportQuery
    currency: str
    rows: list[ReportRow]
    notes: list[str] = field(default_factory=list)  # what the reader must know, e.g. no costs

    @property
    def totals(self) -> ReportRow:
        return ReportRow(TOTAL, total(r.tally for r in self.rows))

    def as_json(self) -> dict[str, Any]:
        q = self.query
        return {
            "since": q.since.isoformat(),
            "until": q.until.isoformat(),
            "group_by": str(q.group_by),
            "model": str(q.model),
            "filters": {str(k): v for k, v in q.filters.items()},
            "include_probable": q.include_probable,
            "currency": self.currency,
            "rows": [r.as_json() for r in self.rows],
            "totals": self.totals.as_json(),
            "notes": self.notes,
        }


def build_rows(tallies: Mapping[str, Tally], group_by: GroupBy) -> list[ReportRow]:
    """Rows in reading order: time groupings by time; others by calls, then visits, then key,
    with the rows that name no channel last."""
    rows = [ReportRow(key, tally) for key, tally in tallies.items()]
    if group_by.is_time:
        return sorted(rows, key=lambda r: (r.key in OWN_ROWS, r.key))
    return sorted(
        rows,
        key=lambda r: (r.key in OWN_ROWS, -r.tally.calls, -r.tally.visits, r.key),
    )


def folds(group_by: GroupBy) -> bool:
    """Whether a grouping's rows are folded past MAX_VISIT_ROWS: not time (a row a day of the
    range) nor static, site or pool (the config names them)."""
    return not group_by.is_time and group_by not in (GroupBy.STATIC, GroupBy.SITE, GroupBy.POOL)


def most_visited(visits: Mapping[str, int], count: int) -> list[str]:
    """The `count` keys with the most visits, ties by key in code point order (the order the
    report queries ask the database for too)."""
    return heapq.nsmallest(count, visits, key=lambda k: (-visits[k], k))


def fold_visit_rows(tallies: Mapping[str, Tally], keep: int) -> dict[str, Tally]:
    """The rows with the `keep` most visited of those with nothing but visits (ties by key);
    the others' visits are added to OTHER. Totals are unchanged."""
    visit_only = {k: t.visits for k, t in tallies.items() if k not in OWN_ROWS and t.visits_only}
    if len(visit_only) <= keep:
        return dict(tallies)
    folded = visit_only.keys() - most_visited(visit_only, keep)
    rows = {k: t for k, t in tallies.items() if k not in folded}
    rows[OTHER] = tallies.get(OTHER, Tally()) + Tally(visits=sum(visit_only[k] for k in folded))
    return rows


@dataclass(frozen=True)
class Part:
    """A piece of a report's range: a whole month that is over (kept once computed), or days
    computed for each request."""

    since: date
    until: date
    month: int | None = None  # yyyymm, for a closed month


def month_parts(since: date, until: date, today: date) -> list[Part]:
    """The range as closed whole months and the days around them. A month is closed once the
    day after it is over too (a call of its last evening may still be on its way)."""
    parts: list[Part] = []
    live_from: date | None = None
    day = since
    while day <= until:
        month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        whole = day.day == 1 and month_end <= until and month_end + timedelta(days=1) < today
        if whole:
            if live_from is not None:
                parts.append(Part(live_from, day - timedelta(days=1)))
                live_from = None
            parts.append(Part(day, month_end, day.year * 100 + day.month))
        elif live_from is None:
            live_from = day
        day = min(month_end, until) + timedelta(days=1)
    if live_from is not None:
        parts.append(Part(live_from, until))
    return parts
