"""A report shows at most MAX_VISIT_ROWS rows with nothing but visits (the most visited); the
others' visits are one row, "(other)". Visitors choose their tags: without the bound a script
gave a report a row per visit, and 20,000 sources stalled the event loop for seconds.

The history spans two closed months (kept in report_months) and live days, with the bound set
to 2, so each part folds differently; the expected rows are counted in this file from the list
of visits, never by the code under test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import pbx.storage.report_queries as report_queries
from pbx.app import build_app
from tests.api.test_reports_api import AUTH, SITE, Client, Scenario
from tests.api.test_reports_page import read_tables
from tests.api.test_staff_ui import log_in
from tests.helpers import FakeClock, make_settings, migrate, settings_for, staff_users

KEEP = 2
ZONE = ZoneInfo("UTC")
#: (day, source, visits): December and January are over by TODAY, February is live
VISITS = [
    ("2026-12-03", "a", 5),
    ("2026-12-04", "b", 4),
    ("2026-12-05", "c", 1),
    ("2026-12-06", "d", 1),  # its visitor calls
    ("2027-01-10", "c", 6),
    ("2027-01-11", "e", 3),
    ("2027-01-12", "b", 1),
    ("2027-02-02", "a", 1),
    ("2027-02-03", "f", 2),
]
CALLED = "d"
TODAY = "2027-02-05"
RANGE = {"since": "2026-12-01", "until": TODAY, "group_by": "source"}


def at(day: str, hour: int = 10) -> float:
    return datetime.fromisoformat(f"{day}T{hour:02}:00").replace(tzinfo=ZONE).timestamp()


async def folded_history(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    database: str | None = None,
) -> Client:
    clock = FakeClock(at(VISITS[0][0]))
    config: dict[str, Any] = {"sites": [SITE], "users": staff_users()}
    settings = make_settings(database, **config) if database else settings_for(tmp_path, **config)
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    for day, source, visits in VISITS:
        clock.now = at(day)
        for _ in range(visits):
            visit = await s.visit(f"utm_source={source}&utm_term=t")
            if source == CALLED:
                await s.call(visit.number, "+79160000001")
    clock.now = at(TODAY, 12)
    return client


def expected_rows(keep: int) -> dict[str, tuple[int, int]]:
    """(visits, calls) per row: the called source and the `keep` most visited of the others
    (ties by name), the rest summed in (other)."""
    visits: Counter[str] = Counter()
    for _, source, n in VISITS:
        visits[source] += n
    only_visits = sorted((s for s in visits if s != CALLED), key=lambda s: (-visits[s], s))
    rows = {s: (visits[s], 0) for s in only_visits[:keep]} | {CALLED: (visits[CALLED], 1)}
    rest = sum(visits[s] for s in only_visits[keep:])
    return rows | ({"(other)": (rest, 0)} if rest else {})


async def get_report(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/reports", params={**RANGE, **params}, headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def by_key(data: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["key"]: (r["visits"], r["calls"]) for r in data["rows"]}


@pytest.fixture
def keep_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_queries, "MAX_VISIT_ROWS", KEEP)


async def test_rows_past_the_most_visited_are_one_row_and_shown_rows_are_exact(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], keep_two: None
) -> None:
    await check_folded(await folded_history(tmp_path, aiohttp_client))


async def check_folded(client: Client) -> None:
    expected = expected_rows(KEEP)
    # c's 7 visits are 1 in December (folded there: a and b were more visited) and 6 in
    # January; the called d had 1 visit, past December's top 2, and is shown with it
    assert expected == {"c": (7, 0), "a": (6, 0), "d": (1, 1), "(other)": (10, 0)}
    first = await get_report(client)
    assert by_key(first) == expected
    assert first["totals"]["visits"] == sum(n for _, _, n in VISITS)
    assert [r["key"] for r in first["rows"]] == ["d", "c", "a", "(other)"]  # (other) last
    assert any("(other)" in note and str(KEEP) in note for note in first["notes"])
    # December and January are now kept folded; read back, the report is the same
    assert await get_report(client) == first
    # counted from the sessions (a channel filtered by a facet): folded in Python, same rows
    assert by_key(await get_report(client, term="t")) == expected


async def test_a_report_with_few_rows_is_not_folded(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await folded_history(tmp_path, aiohttp_client)
    data = await get_report(client)
    assert by_key(data) == expected_rows(len(VISITS))
    assert "(other)" not in by_key(data) and not data["notes"]


async def test_the_page_shows_the_folded_row_last_and_as_no_filter(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], keep_two: None
) -> None:
    client = await folded_history(tmp_path, aiohttp_client)
    assert (await log_in(client, "sam")).status == 303
    response = await client.get("/reports", params=RANGE)
    html = await response.text()
    assert response.status == 200, html[:2000]
    tables = read_tables(html)
    keys = [row[0] for row in tables.tables["report"][1:]]
    assert keys == ["d", "c", "a", "(other)", "Total"]
    assert "(other)" not in tables.links and "c" in tables.links  # no filter names (other)
