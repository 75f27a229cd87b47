"""A report shows every row with calls and at most MAX_VISIT_ROWS rows with nothing but visits
(the range's most visited, ties by name); the others' visits are one row, "(other)". Visitors
choose their tags: without the bound a script gave a report a row per visit, and 20,000 sources
stalled the event loop for seconds.

Each history spans two closed months (kept in report_months) and live days, with the bound set
to 2, so each part folds differently; the expected rows are counted in this file from the list
of visits, never by the code under test."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

import pbx.storage.report_months as report_months
import pbx.storage.report_queries as report_queries
from pbx.app import build_app
from pbx.keys import READER, SETTINGS
from tests.api.test_reports_api import AUTH, SITE, Client, Scenario
from tests.api.test_reports_page import read_tables
from tests.api.test_staff_ui import log_in
from tests.helpers import FakeClock, make_settings, migrate, settings_for, staff_users

KEEP = 2
ZONE = ZoneInfo("UTC")
TODAY = "2027-02-05"  # December and January are over (kept), February is live
RANGE = {"since": "2026-12-01", "until": TODAY, "group_by": "source"}
LONG = "x" * 250  # a campaign longer than the rollups' keys (200 characters)


class Visits(NamedTuple):
    day: str
    source: str  # utm_source ("" for a link with utm_medium alone)
    count: int
    calls: bool = False  # each visit's visitor calls

    @property
    def key(self) -> str:
        """The report's row: the rollups keep 200 characters; no source is "(not set)"."""
        return self.source[:200] or "(not set)"


#: the case each history shows; every one has visit-only rows past KEEP in some part
HISTORIES = {
    # c's 7 visits are 1 in December (folded there: a and b were more visited) and 6 in
    # January; the caller d had 1 visit, past December's top 2
    "mixed": [
        Visits("2026-12-03", "a", 5),
        Visits("2026-12-04", "b", 4),
        Visits("2026-12-05", "c", 1),
        Visits("2026-12-06", "d", 1, calls=True),
        Visits("2027-01-10", "c", 6),
        Visits("2027-01-11", "e", 3),
        Visits("2027-01-12", "b", 1),
        Visits("2027-02-02", "a", 1),
        Visits("2027-02-03", "f", 2),
    ],
    # x is the most visited of the range, but below the top 2 of each month; of the four with
    # 3, B comes first by code point (in a PostgreSQL database collated as en_US, a would)
    "ranked by the range": [
        Visits("2026-12-03", "x", 2),
        Visits("2026-12-04", "a", 3),
        Visits("2026-12-05", "B", 3),
        Visits("2027-01-10", "x", 2),
        Visits("2027-01-11", "c", 3),
        Visits("2027-01-12", "e", 3),
    ],
    # the called a takes none of the 2 places of the rows with visits alone
    "calls take no place": [
        Visits("2027-02-01", "a", 5, calls=True),
        Visits("2027-02-02", "b", 4),
        Visits("2027-02-03", "c", 3),
        Visits("2027-02-04", "d", 2),
    ],
    # a called campaign longer than the rollups keep, and a called link without a source
    "long and unnamed": [
        Visits("2026-12-03", LONG, 5, calls=True),
        Visits("2026-12-04", "a", 4),
        Visits("2026-12-05", "b", 1),
        Visits("2027-01-10", "", 1, calls=True),
        Visits("2027-01-11", "c", 1),
        Visits("2027-01-12", "", 1),
        Visits("2027-02-02", "d", 2),
        Visits("2027-02-03", "e", 2),
    ],
    # a called link without a source below December's top: its visits are looked up by key
    "unnamed caller below the top": [
        Visits("2026-12-03", "a", 5),
        Visits("2026-12-04", "b", 4),
        Visits("2026-12-05", "c", 3),
        Visits("2026-12-06", "", 1, calls=True),
    ],
}


def at(day: str, hour: int = 10) -> float:
    return datetime.fromisoformat(f"{day}T{hour:02}:00").replace(tzinfo=ZONE).timestamp()


async def folded_history(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    history: list[Visits],
    database: str | None = None,
) -> Client:
    clock = FakeClock(at(history[0].day))
    config: dict[str, Any] = {"sites": [SITE], "users": staff_users()}
    settings = make_settings(database, **config) if database else settings_for(tmp_path, **config)
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    for i, visits in enumerate(history):
        clock.now = at(visits.day)
        tags = f"utm_source={quote(visits.source)}&" if visits.source else ""
        for j in range(visits.count):
            visit = await s.visit(f"{tags}utm_medium=m&utm_term=t")
            if visits.calls:
                await s.call(visit.number, f"+7916{i:03}{j:04}")
            clock.advance(120)  # past the freeze time: the next visit may have the number
    clock.now = at(TODAY, 12)
    return client


def expected_rows(history: list[Visits], keep: int) -> dict[str, tuple[int, int]]:
    """(visits, calls) per row: the called rows and the `keep` most visited of the others
    (ties by name), the rest summed in (other)."""
    visits: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for v in history:
        visits[v.key] += v.count
        calls[v.key] += v.count if v.calls else 0
    only_visits = sorted((k for k in visits if not calls[k]), key=lambda k: (-visits[k], k))
    rows = {k: (visits[k], calls[k]) for k in visits if calls[k]}
    rows |= {k: (visits[k], 0) for k in only_visits[:keep]}
    rest = sum(visits[k] for k in only_visits[keep:])
    return rows | ({"(other)": (rest, 0)} if rest else {})


async def get_report(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/reports", params={**RANGE, **params}, headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def by_key(data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["key"]: (r["visits"], r["calls"]) for r in data["rows"]}


@pytest.fixture(params=[KEEP, 100], ids=["months fold", "months keep all"])
def keep_two(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Reports show KEEP rows of visits alone; months keep KEEP (so a range counts its visits
    again) or 100 (all of theirs: the range's sum is folded)."""
    monkeypatch.setattr(report_queries, "MAX_VISIT_ROWS", KEEP)
    monkeypatch.setattr(report_queries, "KEPT_VISIT_ROWS", request.param)


def test_the_histories_show_what_they_are_for() -> None:
    """The expected rows, worked out by hand for each case, as expected_rows counts them."""
    assert expected_rows(HISTORIES["mixed"], KEEP) == {
        "c": (7, 0),
        "a": (6, 0),
        "d": (1, 1),
        "(other)": (10, 0),
    }
    assert expected_rows(HISTORIES["ranked by the range"], KEEP) == {
        "x": (4, 0),
        "B": (3, 0),
        "(other)": (9, 0),
    }
    assert expected_rows(HISTORIES["calls take no place"], KEEP) == {
        "a": (5, 5),
        "b": (4, 0),
        "c": (3, 0),
        "(other)": (2, 0),
    }
    assert expected_rows(HISTORIES["unnamed caller below the top"], KEEP) == {
        "(not set)": (1, 1),
        "a": (5, 0),
        "b": (4, 0),
        "(other)": (3, 0),
    }
    assert expected_rows(HISTORIES["long and unnamed"], KEEP) == {
        LONG[:200]: (5, 5),
        "(not set)": (2, 1),
        "a": (4, 0),
        "d": (2, 0),
        "(other)": (4, 0),
    }


@pytest.mark.parametrize("name", HISTORIES)
async def test_rows_past_the_most_visited_are_one_row_and_shown_rows_are_exact(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], keep_two: None, name: str
) -> None:
    history = HISTORIES[name]
    await check_folded(await folded_history(tmp_path, aiohttp_client, history), history)


async def check_folded(client: Client, history: list[Visits]) -> None:
    expected = expected_rows(history, KEEP)
    first = await get_report(client)
    assert by_key(first) == expected
    assert first["totals"]["visits"] == sum(v.count for v in history)
    assert [r["key"] for r in first["rows"]][-1] == "(other)"
    assert any("(other)" in note and str(KEEP) in note for note in first["notes"])
    # the closed months are now kept folded; read back, the report is the same
    assert await get_report(client) == first
    # counted from the sessions (a channel filtered by a facet): the same rows
    assert by_key(await get_report(client, term="t")) == expected


async def test_a_report_with_few_rows_is_not_folded(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    history = HISTORIES["mixed"]
    client = await folded_history(tmp_path, aiohttp_client, history)
    data = await get_report(client)
    assert by_key(data) == expected_rows(history, len(history))
    assert "(other)" not in by_key(data) and not data["notes"]


async def test_the_page_shows_the_folded_row_last_and_as_no_filter(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], keep_two: None
) -> None:
    client = await folded_history(tmp_path, aiohttp_client, HISTORIES["mixed"])
    assert (await log_in(client, "sam")).status == 303
    response = await client.get("/reports", params=RANGE)
    html = await response.text()
    assert response.status == 200, html[:2000]
    tables = read_tables(html)
    keys = [row[0] for row in tables.tables["report"][1:]]
    assert keys == ["d", "c", "a", "(other)", "Total"]
    assert "(other)" not in tables.links and "c" in tables.links  # no filter names (other)


def test_months_kept_before_the_fold_are_computed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A month kept by a version that kept every row (or another bound) is not read back: the
    bound is part of what a kept month's figures depend on."""
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    now = report_months.fingerprint(settings)
    monkeypatch.setattr(report_months, "KEPT_VISIT_ROWS", KEEP)
    assert report_months.fingerprint(settings) != now


async def test_a_filtered_facet_report_reads_the_rollups_index(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A term report filtered by a source and medium is a range read of the facet rollup's
    (facet, source, medium, day) index, as bench/reports.py measured it (8.2 s -> 0.2 s a year):
    no expression on a filtered column (a "(not set)" filter is an IN of its spellings)."""
    client = await folded_history(tmp_path, aiohttp_client, HISTORIES["mixed"])
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "FROM visit_facets" in statement:
            seen.append((statement, parameters))

    engine = client.app[READER].sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        await get_report(client, group_by="term", source="a", medium="m")
        await get_report(client, group_by="term", source="(not set)", medium="m")
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert seen
    database = str(client.app[SETTINGS].database).split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(database)) as conn:
        for sql, params in seen:
            plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "INDEX ix_visit_facets_channel" in plan, (sql, params, plan)
