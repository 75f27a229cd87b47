"""GET /api/v1/reports against numbers worked out here, in plain Python, from the generated rows.

bench/report_data.py writes a seeded history (visitors coming back, calls matched to sessions,
static numbers, the fallback, numbers nobody held, probable matches, known callers, tags, CRM
sales, costs) and builds the rollups with the product's rebuild. The expectation below reads
only the generator's own records and re-states the report's rules (issue 12) on them: no code of
the product computes an expected number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from attribution.calls import CallReport
from bench import report_data
from pbx.app import build_app
from pbx.keys import CALLS, SETTINGS, VISITS
from pbx.settings import Settings
from pbx.storage.db import open_engine
from pbx.storage.tables import call_credits, visit_channels, visit_facets
from pbx.storage.visits import VisitRequest
from tests.helpers import STAFF_TOKEN, FakeClock, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
ZONE = "America/New_York"  # the range crosses the change to summer time (2027-03-14)
END = date(2027, 3, 31)
SHAPE = report_data.Shape(visits=2000, calls=300, days=60, end=END, seed=7)
LEADS = {"tags": ["lead", "sale"], "min_score": 4, "min_talk": "30s"}
MISSED = {"missed", "busy", "abandoned", "failed"}
LOOKBACK = 90 * 86400
CHANNEL = {"source", "medium", "campaign"}
COST_FILTERS = CHANNEL | {"static"}


def host(url: str | None) -> str | None:
    name = urlsplit(url).hostname if url else None
    return name.lower().removeprefix("www.") if name else None


def path(url: str) -> str:
    return urlsplit(url).path or "/"


@dataclass
class Numbers:
    visits: int = 0
    calls: int = 0
    first_time: int = 0
    repeat: int = 0
    answered: int = 0
    missed: int = 0
    talk: float = 0.0
    leads: int = 0
    sales: int = 0
    revenue: int = 0
    cost: int = 0

    def row(self) -> tuple[Any, ...]:
        talk = round(self.talk / self.answered, 1) if self.answered else None
        return (
            self.visits,
            self.calls,
            self.first_time,
            self.repeat,
            self.answered,
            self.missed,
            talk,
            self.leads,
            self.sales,
            f"{self.revenue // 100}.{self.revenue % 100:02d}",
            f"{self.cost // 100}.{self.cost % 100:02d}",
        )


FIELDS = ("visits", "calls", "first_time_callers", "repeat_calls", "answered", "missed")
FIELDS += ("avg_talk_seconds",)
FIELDS += ("leads", "sales", "revenue", "cost")


class Expected:
    """The report, worked out from the generator's records."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.zone = ZoneInfo(ZONE)
        self.internal = {host(o) for o in report_data.ORIGINS.values()}
        self.sessions = {s["id"]: s for s in rows["sessions"]}
        self.visits_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in sorted(rows["sessions"], key=lambda s: (s["started_at"], s["id"])):
            self.visits_of[s["visitor_id"]].append(s)
        self.calls = rows["calls"]
        self.tags: dict[int, set[str]] = defaultdict(set)
        for t in rows.get("call_tags", []):
            self.tags[t["call_id"]].add(t["tag"])
        self.candidates: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for c in rows.get("call_candidates", []):
            self.candidates[c["call_id"]].append(c)
        self.costs = rows["costs"]

    def day(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.zone).date()

    def direct(self, s: dict[str, Any]) -> bool:
        # an untagged link from the sites' own origins; a tagged one names its source
        ref = host(s["referrer"]) if s["referrer"] is not None else None
        internal = ref in self.internal and (s["source"], s["medium"]) == (ref, "referral")
        return (s["source"], s["medium"]) == ("(direct)", "(none)") or internal

    # -- whom a call is credited to: (kind, dimensions) -----------------------------------------

    def dims(self, s: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: s[k] for k in ("site", "pool", "source", "medium", "campaign", "term")},
            "content": s["content"],
            "landing": path(s["landing_url"]),
            "referrer": host(s["referrer"]),
            "static": None,
        }

    def credit(self, call: dict[str, Any], model: str) -> tuple[str, dict[str, Any]]:
        kind, session = call["attribution"], None
        visitor = call["visitor_id"]
        if kind == "session":
            session = self.sessions[call["session_id"]]
        elif kind == "probable":
            best = max(
                self.candidates[call["id"]], key=lambda c: (c["likelihood"], c["released_at"])
            )
            session = self.sessions[best["session_id"]]
            visitor = visitor or session["visitor_id"]
        earlier = [
            v
            for v in self.visits_of.get(visitor or "", [])
            if v["started_at"] <= call["started_at"]
        ]
        if model == "first" and earlier:
            kind = kind if kind in ("session", "probable") else "visitor"
            return kind, {**self.dims(earlier[0]), "pool": call["pool"]}
        if model == "last_non_direct" and session is not None and self.direct(session):
            sources = [
                v
                for v in earlier
                if v["id"] != session["id"]
                and v["started_at"] <= session["started_at"]
                and v["started_at"] >= call["started_at"] - LOOKBACK
                and not self.direct(v)
            ]
            session = sources[-1] if sources else session
        if session is not None:  # the pool is the dialled number's, not the visit's
            return kind, {**self.dims(session), "pool": call["pool"]}
        if kind == "static":
            static = {k: call[k] for k in ("source", "medium", "campaign")}
            return "static", {**static, "static": call["source"], "site": None, "pool": None}
        # nobody: the number's site and pool still say whose call it was
        return "none", {"site": call["site"], "pool": call["pool"]}

    # -- the report ------------------------------------------------------------------------------

    def key(self, group: str, day: date, value: str | None) -> str:
        if group == "day":
            return day.isoformat()
        if group == "week":
            return (day - timedelta(days=day.weekday())).isoformat()
        if group == "month":
            return day.strftime("%Y-%m")
        return value or "(not set)"

    def report(
        self,
        since: date,
        until: date,
        group: str,
        model: str,
        filters: dict[str, str],
        include_probable: bool = False,
    ) -> dict[str, tuple[Any, ...]]:
        rows: dict[str, Numbers] = defaultdict(Numbers)
        timed = group in ("day", "week", "month")
        for call in self.calls:
            day = self.day(call["started_at"])
            if not since <= day <= until:
                continue
            kind, dims = self.credit(call, model)
            if not all(self.matches(kind, dims, f, v) for f, v in filters.items()):
                continue
            if kind == "probable" and not include_probable:
                key = "(probable)"  # apart in every grouping, by time too
            elif timed:
                key = self.key(group, day, None)
            elif kind == "none":
                key = "(unattributed)"
            elif group == "static":
                key = dims["static"] or "(web)"
            else:
                key = self.key(group, day, dims.get(group))
            n = rows[key]
            answered = call["status"] == "answered"
            n.calls += 1
            # a withheld number may have called before: not a first-time caller
            n.first_time += call["caller"].strip("+").isdigit() and not call["repeat_caller"]
            n.repeat += bool(call["repeat_caller"])  # a number that called before
            n.answered += answered
            n.missed += call["status"] in MISSED
            n.talk += call["talk_seconds"] if answered else 0
            n.leads += bool(
                self.tags[call["id"]] & {"lead", "sale"}
                or (call["score"] or 0) >= 4
                or (answered and call["talk_seconds"] >= 30)
            )
            n.sales += ((call["sale_cents"] or 0) > 0) + call["crm_sales"]
            n.revenue += (call["sale_cents"] or 0) + call["crm_sale_cents"]
        self.add_visits(rows, since, until, group, filters)
        self.add_costs(rows, since, until, group, filters)
        return {k: n.row() for k, n in rows.items()}

    def matches(self, kind: str, dims: dict[str, Any], field: str, value: str) -> bool:
        if value == "(unattributed)":
            return kind == "none"
        if value in ("(web)", "(not set)") and kind == "none":
            return False  # an unattributed call is its own row, not one without a value
        if field == "static":
            return dims.get("static") == (None if value == "(web)" else value)
        return (dims.get(field) or "(not set)") == value

    def add_visits(
        self,
        rows: dict[str, Numbers],
        since: date,
        until: date,
        group: str,
        filters: dict[str, str],
    ) -> None:
        if filters.get("static", "(web)") != "(web)" or "(unattributed)" in filters.values():
            return  # visits come through the website
        for s in self.sessions.values():
            day = self.day(s["started_at"])
            dims = self.dims(s)
            if not since <= day <= until or any(
                (dims[f] or "(not set)") != v for f, v in filters.items() if f != "static"
            ):
                continue
            key = "(web)" if group == "static" else self.key(group, day, dims.get(group))
            rows[key].visits += 1

    def add_costs(
        self,
        rows: dict[str, Numbers],
        since: date,
        until: date,
        group: str,
        filters: dict[str, str],
    ) -> None:
        if set(filters) - COST_FILTERS or filters.get("static", "(web)") != "(web)":
            return  # costs are the website's, kept by channel and day
        pooled = 0
        for c in self.costs:
            key = c["day"]
            day = date(key // 10000, key // 100 % 100, key % 100)
            if not since <= day <= until or any(
                (c[f] or "(not set)") != v for f, v in filters.items() if f in CHANNEL
            ):
                continue
            if group in CHANNEL or group in ("day", "week", "month"):
                rows[self.key(group, day, c[group] if group in CHANNEL else None)].cost += c[
                    "cost_cents"
                ]
            else:
                pooled += c["cost_cents"]
        if pooled:
            rows["(web)" if group == "static" else "(costs)"].cost += pooled


@dataclass
class World:
    client: Client
    expected: Expected
    settings: Settings
    clock: FakeClock


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> World:
    settings = settings_for(
        tmp_path,
        sites=report_data.SITES,
        static=report_data.STATIC,
        ui={"timezone": ZONE},
        leads=LEADS,
    )
    await migrate(settings)
    engine = open_engine(settings.database)
    try:
        records = await report_data.write(engine, settings, SHAPE, keep=True)
        await report_data.build_rollups(engine, settings)
    finally:
        await engine.dispose()
    assert records is not None
    clock = FakeClock(datetime(2027, 3, 31, 12, tzinfo=ZoneInfo(ZONE)).timestamp())
    client = await aiohttp_client(build_app(settings, clock=clock))
    return World(client, Expected(records.rows), settings, clock)


async def fetch(client: Client, since: date, until: date, **params: str) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/reports",
        params={"since": since.isoformat(), "until": until.isoformat(), **params},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def table(data: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {r["key"]: tuple(r[f] for f in FIELDS) for r in data["rows"]}


WHOLE = (END - timedelta(days=SHAPE.days - 1), END)
PART = (date(2027, 3, 10), date(2027, 3, 20))  # cut mid-week, across the clock change
GROUPS = ("source", "medium", "campaign", "term", "landing", "referrer", "static", "pool")
GROUPS += ("site", "day", "week", "month")


def cases() -> Iterable[tuple[tuple[date, date], str, str, dict[str, str]]]:
    for model in ("last", "first", "last_non_direct"):
        for group in GROUPS:
            yield WHOLE, group, model, {}
        for group in ("source", "campaign", "day", "landing", "static"):
            yield PART, group, model, {}
        yield WHOLE, "campaign", model, {"source": "google"}
        yield WHOLE, "landing", model, {"source": "google"}
        yield WHOLE, "day", model, {"source": "yandex", "medium": "cpc"}
        yield WHOLE, "source", model, {"site": "clinic"}
        yield WHOLE, "landing", model, {"site": "clinic"}
        yield PART, "week", model, {"site": "main"}
        yield WHOLE, "source", model, {"static": "billboard"}
        yield WHOLE, "month", model, {"source": "(unattributed)"}


async def differences(
    world: World, reports: Iterable[tuple[tuple[date, date], str, str, dict[str, str]]]
) -> list[str]:
    found = []
    for (since, until), group, model, filters in reports:
        got = table(await fetch(world.client, since, until, group_by=group, model=model, **filters))
        want = world.expected.report(since, until, group, model, filters)
        if got != want:
            wrong = {
                k: (got.get(k), want.get(k))
                for k in got.keys() | want.keys()
                if got.get(k) != want.get(k)
            }
            found.append(f"{since}..{until} {group} {model} {filters}: {wrong}")
    return found


async def test_reports_match_numbers_worked_out_from_the_generated_rows(world: World) -> None:
    wrong = await differences(world, cases())
    assert not wrong, "\n".join(wrong[:10])


async def test_reports_no_rollup_holds_match_the_generated_rows(world: World) -> None:
    """A channel or time filtered by landing page or referrer, a landing page filtered by
    campaign: the database counts the sessions (by quarter hour for days, here across the
    clock change)."""
    e = world.expected
    part = [s for s in e.sessions.values() if PART[0] <= e.day(s["started_at"]) <= PART[1]]
    campaign = Counter(s["campaign"] for s in part if s["campaign"]).most_common(1)[0][0]
    referrer = Counter(host(s["referrer"]) for s in part if s["referrer"]).most_common(1)[0][0]
    reports = [
        (PART, group, "last", filters)
        for group, filters in (
            ("day", {"landing": "/p/1"}),
            ("source", {"landing": "/p/1"}),
            ("medium", {"referrer": referrer}),
            ("week", {"referrer": "(not set)"}),
            ("landing", {"campaign": campaign}),
            ("referrer", {"pool": "paid"}),
        )
    ]
    wrong = await differences(world, reports)
    assert not wrong, "\n".join(wrong[:10])


async def test_probable_calls_are_a_row_of_their_own_unless_asked(world: World) -> None:
    since, until = WHOLE
    apart = table(await fetch(world.client, since, until, group_by="source"))
    both = table(await fetch(world.client, since, until, group_by="source", include_probable="1"))
    assert apart["(probable)"][1] > 0  # the data has probable calls
    assert "(probable)" not in both
    assert both == world.expected.report(since, until, "source", "last", {}, include_probable=True)


async def test_the_data_has_what_the_rules_are_about(world: World) -> None:
    """The comparison above is only worth something if every rule has cases to bite on."""
    e = world.expected
    kinds = {c["attribution"] for c in e.calls}
    assert kinds == {"session", "static", "fallback", "unknown", "probable"}
    assert any(c["visitor_id"] and c["attribution"] != "session" for c in e.calls)  # known
    assert any(c["repeat_caller"] for c in e.calls) and any(c["crm_sales"] for c in e.calls)
    assert any(len(v) > 2 for v in e.visits_of.values())
    last = e.report(*WHOLE, "source", "last", {})
    first = e.report(*WHOLE, "source", "first", {})
    non_direct = e.report(*WHOLE, "source", "last_non_direct", {})
    assert last != first and last != non_direct
    assert last["(unattributed)"][1] > 0 and last["billboard"][1] > 0


async def snapshot(settings: Settings) -> list[list[tuple[Any, ...]]]:
    engine = open_engine(settings.database)
    try:
        async with engine.connect() as conn:
            return [
                sorted(tuple(r) for r in await conn.execute(select(table)))
                for table in (call_credits, visit_channels, visit_facets)
            ]
    finally:
        await engine.dispose()


async def test_rebuild_after_live_writes_changes_nothing(world: World) -> None:
    """Credits and visit counts kept on write are exactly what `rebuild` makes of the raw rows."""
    app = world.client.app
    site = app[SETTINGS].sites[0]
    now = world.clock.now
    visit = await app[VISITS].start_visit(
        VisitRequest(
            site,
            f"{report_data.ORIGINS['main']}/p/3?utm_source=google&utm_medium=cpc",
            None,
            None,
            None,
            "10.0.0.9",
        )
    )
    calls = app[CALLS]
    assert await calls.store(
        CallReport("live-1", "+79990000001", visit.number, now + 60, now + 200, now + 70, "ANSWER")
    )
    known = next(c for c in world.expected.calls if c["attribution"] == "session")
    assert await calls.store(
        CallReport(
            "live-2", known["caller"], "+74990000101", now + 300, now + 400, now + 310, "ANSWER"
        )
    )
    live = await snapshot(world.settings)
    engine = open_engine(world.settings.database)
    try:
        await report_data.build_rollups(engine, world.settings)
    finally:
        await engine.dispose()
    assert await snapshot(world.settings) == live
