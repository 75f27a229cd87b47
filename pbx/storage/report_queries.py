"""The channel report's queries: sums of the rollups (call_credits, visit_channels,
visit_facets, costs) for a range of local days; the arithmetic is attribution.reports'.

Each part is one grouped range read of a rollup, never a scan of every visit or call: calls
through call_credits (model, day), visits through visit_channels (channel) or visit_facets
(term, content, landing, referrer, with source and medium). Only a grouping and filters no rollup
holds together (a facet filtered by campaign or pool, a channel or time grouping filtered by a
facet) count sessions, and then for at most MAX_SESSION_DAYS days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta
from operator import add
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.calls import UNANSWERED
from attribution.costs import spread_costs
from attribution.models import CreditKind
from attribution.reports import (
    MAX_VISIT_ROWS,
    NOT_SET,
    OTHER,
    OWN_ROWS,
    PROBABLE,
    UNATTRIBUTED,
    UNSPLIT_COST,
    WEB,
    GroupBy,
    Part,
    Report,
    ReportQuery,
    Tally,
    build_rows,
    day_of,
    fold_visit_rows,
    folds,
    local_day,
    month_parts,
    time_key,
)
from pbx.settings import Settings
from pbx.storage.costs import static_monthly_costs
from pbx.storage.report_months import KEPT_VISIT_ROWS, keep, read_kept
from pbx.storage.tables import (
    call_credits,
    costs,
    sessions,
    visit_channels,
    visit_facets,
)
from pbx.storage.visit_rollups import KEY_MAX, key_text

MAX_SESSION_DAYS = 92  # the longest range a report may count sessions of (no rollup)


TALK_FIELD = [f.name for f in fields(Tally)].index("talk_seconds")


class ReportTooLarge(Exception):
    """A report this server will not compute for one request (the client's to narrow)."""


CHANNEL = (GroupBy.SOURCE, GroupBy.MEDIUM, GroupBy.CAMPAIGN)
#: what the visit_channels rollup is keyed by (besides the day)
CHANNEL_ROLLUP = frozenset({*CHANNEL, GroupBy.POOL, GroupBy.SITE})
FACETS = frozenset({GroupBy.TERM, GroupBy.CONTENT, GroupBy.LANDING, GroupBy.REFERRER})
#: what the visit_facets rollup is keyed by (besides the facet, its value and the day)
FACET_ROLLUP = frozenset({GroupBy.SITE, GroupBy.SOURCE, GroupBy.MEDIUM})
#: cost is known by source, medium, campaign and day
COST_KEYS = frozenset({*CHANNEL, GroupBy.DAY, GroupBy.WEEK, GroupBy.MONTH, GroupBy.STATIC})


async def build_report(
    engine: AsyncEngine,
    settings: Settings,
    query: ReportQuery,
    *,
    today: date | None = None,
    keeper: AsyncEngine | None = None,
) -> Report:
    """The report. With `today` and a `keeper` (an engine that may write), closed months are
    read from report_months, and kept there once computed."""
    check_size(query)
    since, until = query.since, query.until
    parts = [Part(since, until)]
    if today is not None and keeper is not None:
        parts = month_parts(since, until, today)
    months = [p.month for p in parts if p.month is not None]
    # summed as plain lists of the Tally's fields: a year of a term report is 12 × 4000 rows
    sums: dict[str, list[float]] = {}
    computed: dict[int, dict[str, Tally]] = {}
    folded = False  # whether a part's visit-only rows were more than it shows
    async with engine.connect() as conn:
        kept = await read_kept(conn, settings, query, months)
        for part in parts:
            found: Mapping[str, Sequence[float]]
            if part.month is not None and part.month in kept.tallies:
                found = kept.tallies[part.month]
            else:
                # a part kept or summed with others keeps more rows than a report shows
                shown = MAX_VISIT_ROWS if part.month is None and len(parts) == 1 else None
                live = await _tallies(
                    conn, settings, query, part.since, part.until, shown, today=today
                )
                if part.month is not None:
                    computed[part.month] = live
                found = {key: tally.values() for key, tally in live.items()}
            folded = folded or OTHER in found
            for key, values in found.items():
                into = sums.get(key)
                if into is None:
                    sums[key] = list(values)
                else:
                    into[:] = map(add, into, values)  # in C: a year of 4,000 rows a month
        tallies = {key: Tally(*_whole(values)) for key, values in sums.items()}
        if folded and len(parts) > 1:
            # a part had more rows than it keeps: which are the range's most visited, and all
            # of their visits, only the whole range's counts can tell (the database sums them)
            tallies = {k: replace(t, visits=0) for k, t in tallies.items() if not t.visits_only}
            first, last = local_day(since), local_day(until)
            tallies = await _with_visits(
                conn, settings, query, first, last, tallies, MAX_VISIT_ROWS
            )
        elif folds(query.group_by):  # the parts' most visited are all here: fold their sum
            tallies = fold_visit_rows(tallies, MAX_VISIT_ROWS)
    if keeper is not None:
        await keep(keeper, settings, query, computed, kept.versions)
    rows = build_rows(tallies, query.group_by)
    return Report(query, settings.currency, rows, _notes(query, tallies))


def _whole(values: Sequence[float]) -> list[Any]:
    """A Tally's fields as summed: counts and cents back to int (JSON keeps them so anyway)."""
    counts = [*values[:TALK_FIELD], *values[TALK_FIELD + 1 :]]
    whole: list[Any] = list(map(int, counts))
    whole.insert(TALK_FIELD, values[TALK_FIELD])  # seconds: a float, not cut
    return whole


async def _tallies(
    conn: AsyncConnection,
    settings: Settings,
    query: ReportQuery,
    first: date,
    last: date,
    keep: int | None = None,
    *,
    today: date | None = None,
) -> dict[str, Tally]:
    """Every row's raw counts for the days first..last (visits as _with_visits has them, with
    `keep` rows of visits alone, KEPT_VISIT_ROWS unless given). Static numbers' fixed costs
    are spread over the days up to `today` only: a month's rent against the calls of the days
    gone so far, not of the month's days still to come."""
    since, until = local_day(first), local_day(last)
    tallies: dict[str, Tally] = defaultdict(Tally)
    for key, tally in await _call_tallies(conn, settings, query, since, until):
        tallies[key] = tallies[key] + tally
    spent_until = min(until, local_day(today)) if today is not None else until
    for key, cents in await _costs(conn, settings, query, since, until, spent_until):
        tallies[key] = tallies[key] + Tally(cost_cents=cents)
    return await _with_visits(conn, settings, query, since, until, tallies, keep or KEPT_VISIT_ROWS)


async def _with_visits(
    conn: AsyncConnection,
    settings: Settings,
    query: ReportQuery,
    since: int,
    until: int,
    others: Mapping[str, Tally],
    keep: int,
) -> dict[str, Tally]:
    """`others` (rows with calls or cost) with the visits of the days since..until added:
    every row's, or, when the grouping folds, those of the rows in `others` and of the `keep`
    most visited others, the rest's in OTHER. The database sums and picks; the rows it returns
    are at most `keep` more than `others` has."""
    tallies = dict(others)
    exact = set(others) - OWN_ROWS  # their visits must be exact, whatever their rank
    top = keep + len(exact)  # the most visited `top` hold the most visited `keep` others
    found = await _visit_counts(conn, settings, query, since, until, top=top)
    for key, visits in found:
        tallies[key] = tallies.get(key, Tally()) + Tally(visits=visits)
    missing = exact.difference(k for k, _ in found)
    if OTHER in tallies and missing:  # rows with calls below the top: out of OTHER
        rest = tallies[OTHER].visits
        for key, visits in await _visit_counts(conn, settings, query, since, until, only=missing):
            if key in missing:
                tallies[key] = tallies[key] + Tally(visits=visits)
                rest -= visits
        tallies[OTHER] = replace(tallies[OTHER], visits=rest)
    if folds(query.group_by):
        tallies = fold_visit_rows(tallies, keep)
    if OTHER in tallies and tallies[OTHER] == Tally():
        del tallies[OTHER]
    return tallies


def _notes(query: ReportQuery, tallies: Mapping[str, Tally]) -> list[str]:
    """What the reader must know about the rows and the costs shown."""
    notes = []
    if OTHER in tallies:
        notes.append(
            f"the row {OTHER} sums the visits of the {query.group_by} rows with nothing but"
            f" visits past the {MAX_VISIT_ROWS} most visited"
        )
    unknown = sorted(str(d) for d in query.filters if d not in COST_KEYS)
    if unknown:
        notes.append(
            "cost is kept by source, medium, campaign and day: not shown when filtered by "
            + ", ".join(unknown)
        )
    elif UNSPLIT_COST in tallies:
        notes.append(
            f"cost is kept by source, medium, campaign and day: the {query.group_by} rows show"
            f" none, the row {UNSPLIT_COST} holds it"
        )
    return notes


# -- calls -------------------------------------------------------------------------------------


def credit_key(query: ReportQuery) -> ColumnElement[Any]:
    """The row a credit falls in: its value of the grouping, or a row of its own."""
    c = call_credits.c
    if query.group_by is GroupBy.STATIC:
        value: ColumnElement[Any] = func.coalesce(c.static, literal(WEB))
    else:  # cut as the rollups' keys are, so a long campaign's calls and visits are one row
        value = _key_of(c[str(query.group_by)], cut=True)
    whens: list[tuple[ColumnElement[bool], Any]] = [(c.kind == CreditKind.NONE, UNATTRIBUTED)]
    if not query.include_probable:
        whens.append((c.kind == CreditKind.PROBABLE, PROBABLE))
    return case(*whens, else_=value)


def credit_filter(group: GroupBy, value: str) -> ColumnElement[bool]:
    """The credits of a row: a filter picks exactly what that row counted."""
    c = call_credits.c
    if value == UNATTRIBUTED:
        return c.kind == CreditKind.NONE
    if group is GroupBy.STATIC:
        if value == WEB:  # an unattributed call has no value either, but is a row of its own
            web = or_(c.static.is_(None), c.static == WEB)  # as credit_key's coalesce
            return and_(web, c.kind != CreditKind.NONE)
        return c.static == value
    matched = _key_filter(c[str(group)], value, cut=True)
    return and_(matched, c.kind != CreditKind.NONE) if value == NOT_SET else matched


#: how a stored value says "none" besides NULL: "" (a rollup's key), "(not set)" (what
#: read_source names the source of a link with utm_medium alone, or a visitor's own tag)
NONE_SPELLINGS = ("", NOT_SET)


def _cut(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A value as the rollups key it: its first KEY_MAX characters."""
    return func.substr(column, 1, KEY_MAX)


def _key_of(column: ColumnElement[Any], *, cut: bool) -> ColumnElement[Any]:
    """A stored value as the report's key (what report_key does in Python): NOT_SET for none,
    else the value, cut as the rollups keep it (`cut`: the column holds whole values)."""
    none = or_(column.is_(None), column.in_(NONE_SPELLINGS))
    return case((none, literal(NOT_SET)), else_=_cut(column) if cut else column)


def _key_filter(column: ColumnElement[Any], key: str, *, cut: bool) -> ColumnElement[bool]:
    """The stored values whose report key is `key`; where the column holds keys (`cut` False:
    a rollup's, never NULL), a plain comparison or IN, so that its index is used."""
    if key == NOT_SET:
        spelled = column.in_(NONE_SPELLINGS)
        return or_(column.is_(None), spelled) if cut else spelled
    return (_cut(column) if cut else column) == key_text(key)


def report_key(value: str | None) -> str:
    """A value as the report's key: NOT_SET for none, else its first KEY_MAX characters."""
    return NOT_SET if value is None or value in NONE_SPELLINGS else key_text(value)


def is_lead(settings: Settings) -> ColumnElement[bool]:
    """The lead rule of `leads:` over a call's credit row (reports, ad platform exports)."""
    k, leads = call_credits.c, settings.leads
    parts: list[ColumnElement[bool]] = [
        k.tags.contains(f",{tag},", autoescape=True) for tag in leads.tags
    ]
    if leads.min_score is not None:
        parts.append(k.score >= leads.min_score)
    if leads.min_talk is not None:
        parts.append(and_(k.status == "answered", k.talk_seconds >= leads.min_talk))
    return or_(*parts) if parts else literal(False)


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


async def _call_tallies(
    conn: AsyncConnection, settings: Settings, query: ReportQuery, since: int, until: int
) -> list[tuple[str, Tally]]:
    k = call_credits.c
    group: ColumnElement[Any]
    if query.group_by.is_time:  # by day, but probable calls apart unless asked
        probable = k.kind == CreditKind.PROBABLE
        group = k.day if query.include_probable else case((probable, -1), else_=k.day)
    else:
        group = credit_key(query)
    answered = k.status == "answered"
    statement = (
        select(
            group.label("key"),
            func.count().label("calls"),
            _count(k.first_time).label("first_time"),
            _count(k.repeat_call).label("repeat_calls"),
            _count(answered).label("answered"),
            _count(k.status.in_(UNANSWERED)).label("missed"),
            func.sum(case((answered, k.talk_seconds), else_=0.0)).label("talk"),
            _count(is_lead(settings)).label("leads"),
            func.sum(case((k.sale_cents > 0, 1), else_=0) + k.crm_sales).label("sales"),
            func.sum(k.sale_cents + k.crm_sale_cents).label("revenue"),
        )
        .where(k.model == str(query.model), k.day >= since, k.day <= until)
        .group_by(group)
    )
    for dimension, value in query.filters.items():
        statement = statement.where(credit_filter(dimension, value))
    rows = []
    for r in await conn.execute(statement):
        key = r.key
        if query.group_by.is_time:
            key = PROBABLE if r.key == -1 else time_key(day_of(r.key), query.group_by)
        rows.append(
            (
                key,
                Tally(
                    calls=r.calls,
                    first_time_callers=r.first_time or 0,
                    repeat_calls=r.repeat_calls or 0,
                    answered=r.answered or 0,
                    missed=r.missed or 0,
                    talk_seconds=float(r.talk or 0),
                    leads=r.leads or 0,
                    sales=int(r.sales or 0),
                    revenue_cents=int(r.revenue or 0),
                ),
            )
        )
    return rows


# -- visits ------------------------------------------------------------------------------------


def _visit_filters(query: ReportQuery) -> tuple[GroupBy, dict[GroupBy, str]] | None:
    """The grouping and filters visits are counted by; None when no visit can match."""
    group, filters = query.group_by, dict(query.filters)
    static = filters.pop(GroupBy.STATIC, None)
    if static is not None and static != WEB:
        return None  # visits came through the website, none through an offline source
    if UNATTRIBUTED in filters.values():
        return None
    if group is GroupBy.STATIC:
        group = GroupBy.SITE  # every visit is a (web) one: count them, then name the row
    return group, filters


def _counts_sessions(query: ReportQuery) -> bool:
    """Whether no rollup holds this grouping with these filters (visits are counted one by
    one): a facet filtered by campaign or pool, a channel or time grouping filtered by a facet."""
    found = _visit_filters(query)
    if found is None:
        return False
    group, filters = found
    if (group.is_time or group in CHANNEL_ROLLUP) and set(filters) <= CHANNEL_ROLLUP:
        return False
    return not (group in FACETS and set(filters) <= FACET_ROLLUP)


def check_size(query: ReportQuery) -> None:
    """Refuse what one request must not make the server compute."""
    days = (query.until - query.since).days + 1
    if _counts_sessions(query) and days > MAX_SESSION_DAYS:
        raise ReportTooLarge(
            f"a {query.group_by} report filtered by "
            + ", ".join(sorted(str(d) for d in query.filters))
            + f" counts each visit (no rollup holds both): at most {MAX_SESSION_DAYS}"
            " days; narrow since..until"
        )


@dataclass(frozen=True)
class Pick:
    """Which rows a visit count returns: exactly the rows `only`; else the `top` most visited
    (ties by key) and the others' sum as OTHER; else (neither) every row."""

    only: Collection[str] | None = None
    top: int | None = None


IN_BATCH = 500  # keys per IN (...): far below any database's limit on parameters


async def _visit_counts(
    conn: AsyncConnection,
    settings: Settings,
    query: ReportQuery,
    since: int,
    until: int,
    *,
    top: int | None = None,
    only: Collection[str] | None = None,
) -> list[tuple[str, int]]:
    """Visits per row: of the rows `only`; else, when the grouping folds and `top` is given,
    of the `top` most visited and the others' sum as OTHER; else of every row."""
    found = _visit_filters(query)
    if found is None:
        return []
    group, filters = found
    pick = Pick(only, top if folds(query.group_by) else None)
    if _counts_sessions(query):
        counts = await _from_sessions(conn, settings, group, filters, since, until, pick)
    elif group in FACETS:
        counts = await _from_facets(conn, group, filters, since, until, pick)
    else:
        counts = await _from_channels(conn, group, filters, since, until, pick)
    if query.group_by is GroupBy.STATIC:
        return [(WEB, sum(n for _, n in counts))]
    return counts


async def _grouped(
    conn: AsyncConnection,
    key: ColumnElement[Any],
    visits: ColumnElement[Any],
    conditions: Sequence[ColumnElement[bool]],
    pick: Pick,
) -> tuple[list[tuple[Any, int]], int]:
    """A rollup's visits summed per `key` (the database groups and picks): the rows, and the
    visits of the rows not picked."""
    summed = func.sum(visits).label("visits")
    statement = select(key.label("key"), summed).where(*conditions).group_by(key)
    if pick.only is not None:
        wanted = sorted({report_key(k) for k in pick.only})
        rows = []
        for start in range(0, len(wanted), IN_BATCH):
            batch = wanted[start : start + IN_BATCH]
            rows += list(await conn.execute(statement.where(key.in_(batch))))
        return [(r.key, int(r.visits)) for r in rows], 0
    if pick.top is None:
        return [(r.key, int(r.visits)) for r in await conn.execute(statement)], 0
    # ties by key in code point order, as Python's (PostgreSQL's default collation is not)
    order = key.collate("C") if conn.dialect.name == "postgresql" else key
    everything = func.sum(func.sum(visits)).over().label("everything")  # the same snapshot
    top = statement.add_columns(everything).order_by(summed.desc(), order).limit(pick.top)
    rows = list(await conn.execute(top))
    picked = [(r.key, int(r.visits)) for r in rows]
    return picked, (int(rows[0].everything) - sum(n for _, n in picked)) if rows else 0


def _with_rest(rows: list[tuple[str, int]], rest: int) -> list[tuple[str, int]]:
    return [*rows, (OTHER, rest)] if rest else rows


async def _from_channels(
    conn: AsyncConnection,
    group: GroupBy,
    filters: Mapping[GroupBy, str],
    since: int,
    until: int,
    pick: Pick,
) -> list[tuple[str, int]]:
    v = visit_channels.c
    column = v.day if group.is_time else _key_of(v[str(group)], cut=False)
    conditions = [v.day >= since, v.day <= until]
    conditions += [_key_filter(v[str(d)], value, cut=False) for d, value in filters.items()]
    rows, rest = await _grouped(conn, column, v.visits, conditions, pick)
    if group.is_time:
        return [(time_key(day_of(key), group), n) for key, n in rows]
    return _with_rest(rows, rest)


async def _from_facets(
    conn: AsyncConnection,
    group: GroupBy,
    filters: Mapping[GroupBy, str],
    since: int,
    until: int,
    pick: Pick,
) -> list[tuple[str, int]]:
    f = visit_facets.c
    conditions = [f.facet == str(group), f.day >= since, f.day <= until]
    conditions += [_key_filter(f[str(d)], value, cut=False) for d, value in filters.items()]
    rows, rest = await _grouped(conn, _key_of(f.value, cut=False), f.visits, conditions, pick)
    return _with_rest(rows, rest)


def _local_range(settings: Settings, since: int, until: int) -> tuple[float, float]:
    zone = ZoneInfo(settings.ui.timezone)
    start = datetime.combine(day_of(since), time(), zone)
    end = datetime.combine(day_of(until) + timedelta(days=1), time(), zone)
    return start.timestamp(), end.timestamp()


_SESSION_COLUMN = {
    GroupBy.SOURCE: sessions.c.source,
    GroupBy.MEDIUM: sessions.c.medium,
    GroupBy.CAMPAIGN: sessions.c.campaign,
    GroupBy.TERM: sessions.c.term,
    GroupBy.CONTENT: sessions.c.content,
    GroupBy.LANDING: sessions.c.landing_path,
    GroupBy.REFERRER: sessions.c.referrer_host,
    GroupBy.POOL: sessions.c.pool,
    GroupBy.SITE: sessions.c.site,
}
#: a time grouping's sessions are counted per quarter hour in SQL, then per local day here:
#: every time zone's offset is a whole number of quarter hours, so none straddles midnight
QUARTER_HOUR = 900


async def _from_sessions(
    conn: AsyncConnection,
    settings: Settings,
    group: GroupBy,
    filters: Mapping[GroupBy, str],
    since: int,
    until: int,
    pick: Pick,
) -> list[tuple[str, int]]:
    """Count the sessions of the range: a facet grouping filtered by a channel, or the other
    way round (no rollup holds both). The database counts, groups and picks the rows."""
    start, end = _local_range(settings, since, until)
    conditions = [sessions.c.started_at >= start, sessions.c.started_at < end]
    conditions += [_key_filter(_SESSION_COLUMN[d], v, cut=True) for d, v in filters.items()]
    one: ColumnElement[int] = literal_column("1")  # summed: each session counts once
    if not group.is_time:
        key = _key_of(_SESSION_COLUMN[group], cut=True)
        rows, rest = await _grouped(conn, key, one, conditions, pick)
        return _with_rest(rows, rest)
    quarters, _ = await _grouped(
        conn, _quarter_hour(conn, sessions.c.started_at), one, conditions, Pick()
    )
    zone = ZoneInfo(settings.ui.timezone)
    counts: dict[str, int] = defaultdict(int)
    for quarter, n in quarters:
        day = datetime.fromtimestamp(int(quarter) * QUARTER_HOUR, zone).date()
        counts[time_key(day, group)] += n
    return list(counts.items())


def _quarter_hour(conn: AsyncConnection, at: ColumnElement[Any]) -> ColumnElement[Any]:
    """The quarter hour (since the epoch) of a time in seconds: SQLite's CAST truncates,
    PostgreSQL's rounds, so there it is floor()."""
    if conn.dialect.name == "postgresql":
        return func.floor(at / QUARTER_HOUR)
    return cast(at / QUARTER_HOUR, Integer)


# -- costs -------------------------------------------------------------------------------------


async def _costs(
    conn: AsyncConnection,
    settings: Settings,
    query: ReportQuery,
    since: int,
    until: int,
    fixed_until: int,
) -> list[tuple[str, int]]:
    """Cost per row: imported, plus static numbers' monthly costs spread per day (up to
    `fixed_until`)."""
    if any(d not in COST_KEYS for d in query.filters):
        return []  # not known by such a filter (_notes says so)
    group = query.group_by
    static_filter = query.filters.get(GroupBy.STATIC)
    channel_filters = {d: v for d, v in query.filters.items() if d in CHANNEL}
    keyed: list[tuple[str, int]] = []
    if static_filter in (None, WEB):
        keyed += await _imported_costs(conn, group, channel_filters, since, until)
    wanted = {str(d): report_key(v) for d, v in channel_filters.items()}
    fixed = [
        row
        for row in spread_costs(static_monthly_costs(settings), since, fixed_until)
        if static_filter in (None, row.source)
        and all(report_key(getattr(row, d)) == key for d, key in wanted.items())
    ]
    for row in fixed:
        if group.is_time:
            key = time_key(day_of(row.day), group)
        elif group in CHANNEL:
            key = report_key(getattr(row, str(group)))
        elif group is GroupBy.STATIC:
            key = row.source
        else:
            key = UNSPLIT_COST
        keyed.append((key, row.cost_cents))
    return keyed


async def _imported_costs(
    conn: AsyncConnection,
    group: GroupBy,
    channel_filters: Mapping[GroupBy, str],
    since: int,
    until: int,
) -> list[tuple[str, int]]:
    x = costs.c
    column: ColumnElement[Any] | None = None
    if group.is_time:
        column = x.day
    elif group in CHANNEL:
        column = _key_of(x[str(group)], cut=True)
    cents = func.sum(x.cost_cents).label("cents")
    statement = (
        select(column.label("key"), cents).group_by(column)
        if column is not None
        else select(literal(None).label("key"), cents)  # one sum: costs do not split this way
    ).where(x.day >= since, x.day <= until)
    for dimension, value in channel_filters.items():
        statement = statement.where(_key_filter(x[str(dimension)], value, cut=True))
    rows = list(await conn.execute(statement))
    if group.is_time:
        return [(time_key(day_of(r.key), group), int(r.cents)) for r in rows]
    if group in CHANNEL:
        return [(r.key, int(r.cents)) for r in rows]
    key = WEB if group is GroupBy.STATIC else UNSPLIT_COST  # imported costs are the website's
    return [(key, int(r.cents)) for r in rows if r.cents]  # a sum of no rows is NULL
