"""`calltrack pools --recommend` on a history the daemon stored, whose answer is worked out by
hand (issue 13): visits through the visitor API's store, calls through CallStore, then the
command in a subprocess on the same database, as an admin runs it."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pbx.app import build_app
from pbx.keys import ENGINE, VISITS
from pbx.storage.pool_usage import pool_records
from tests.api.test_cli import calltrack
from tests.api.test_reports_api import DAY, SITE, Scenario
from tests.api.test_staff_ui import log_in
from tests.helpers import FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
T0 = 1_800_000_000.0  # FakeClock's start: 2027-01-15 08:00 UTC, 11:00 in Moscow
STEPS = (5, 10, 15, 20, 30, 45, 60)


async def stored_history(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Path:
    """Freeze time 60 s. Pool "all" (3 numbers) gets four direct visits 10 s apart, none of
    them active again: the fourth finds all three held (exhausted). Calls: 40 s after the first
    visit to its number (attributed: 40 s late), one to pool "paid"'s number nobody ever held
    (unknown), one to the site's fallback."""
    clock = FakeClock(T0)
    settings = settings_for(
        tmp_path, sites=[SITE], ui={"timezone": "Europe/Moscow"}, users=staff_users()
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    first = await s.visit()
    for _ in range(3):
        clock.advance(10)
        await s.visit()
    clock.advance(10)  # T0 + 40
    await s.call(first.number, "+79160000001")
    clock.advance(10)
    await s.call("+74990000001", "+79160000002")
    await s.call("+74990000099", "+79160000003")
    await client.app[VISITS].flush()
    return client, tmp_path / "calltrack.yaml"


def recommend(config: Path, *flags: str) -> Any:
    result = calltrack("pools", "-c", str(config), "--recommend", "--since", DAY, *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_recommend_json_counts_the_stored_history(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    _, config = await stored_history(tmp_path, aiohttp_client)
    pools = {p["pool"]: p for p in json.loads(recommend(config, "--until", DAY, "--json"))["pools"]}
    assert pools["all"] == {
        "site": "main",
        "pool": "all",
        "numbers": 3,
        "peak_held": 3,  # all three from the third visit on
        "peak_at": T0 + 20,
        "visits": 4,
        "visits_not_tracked": 1,
        "fallback_calls": 1,
        "unheld_calls": 0,
        "recommended": 4,  # 3 of 4 is 75%: below 99%
        "target": 0.99,
        "curve": [[1, 0.25], [2, 0.5], [3, 0.75], [4, 1.0]],
        # the only attributed call came 40 s late: every freeze catches it; the four visits
        # lie within 30 s, so any freeze of minutes needs four numbers
        "freeze": [[m, 1.0, 4] for m in STEPS],
        "peak_demand": 4,  # all four at once with an unlimited pool
        "peak_demand_at": T0 + 30,
        "unmatched_calls": 0,
    }
    assert pools["paid"] == {
        "site": "main",
        "pool": "paid",
        "numbers": 1,
        "peak_held": 0,
        "peak_at": None,
        "visits": 0,
        "visits_not_tracked": 0,
        "fallback_calls": 1,  # the site's fallback: both pools ring its line
        "unheld_calls": 1,
        "recommended": 0,
        "target": 0.99,
        "curve": [],
        # its one call matched no visit: no freeze would have caught it
        "freeze": [[m, 0.0, 0] for m in STEPS],
        "peak_demand": 0,
        "peak_demand_at": None,
        "unmatched_calls": 1,
    }


async def test_recommend_text_says_the_period_and_takes_a_target(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    _, config = await stored_history(tmp_path, aiohttp_client)
    text = recommend(config, "--until", DAY, "--target", "75")
    assert "main/all: 3 numbers; 2027-01-15..2027-01-15 (1 day); the recorded visits" in text
    assert "visits 4, got no number 1 (25.0%): pool exhausted 1, per-client cap 0" in text
    assert (
        "calls to the fallback 1 (the site's fallback, also shown by paid),"
        " to pool numbers nobody held 0"
    ) in text
    assert (
        "peak: 3 of 3 held at once, first at 2027-01-15 11:00; an unlimited pool would have"
        " held 4 at once (2027-01-15 11:00)"
    ) in text
    assert "ran out most: Fri 11:00 (1 visit)" in text  # 2027-01-15, Moscow time
    assert (
        "recommended: 3 numbers, the smallest pool that tracks 75.0% of the 4 visits that asked"
        " for one (75.0%; your 3: 75.0%)"
    ) in text
    assert "Only 1 call to measure by in this period: too few to advise a freeze time" in text
    paid = text.split("main/paid: 1 number; ")[1]
    assert "no visits asked this pool for a number in the period" in paid


def test_recommend_refuses_bad_options_with_a_reason(tmp_path: Path) -> None:
    config = settings_for(tmp_path) and tmp_path / "calltrack.yaml"
    cases = {
        ("--recommend", "--target", "150"): "target: expected a share of visits",
        ("--recommend", "--target", "nan"): "target: expected a share of visits",
        ("--recommend", "--since", "30.11.2026"): "since: expected a date like 2026-11-30",
        ("--recommend", "--since", "2026-01-01", "--until", "2026-12-31"): "at most 92 days",
        ("--recommend", "--since", "2026-02-01", "--until", "2026-01-01"): "until: expected",
        ("--target", "99"): "--target, --since and --until go with --recommend",
    }
    for flags, reason in cases.items():
        result = calltrack("pools", "-c", str(config), *flags)
        assert result.returncode == 2, (flags, result.stdout)
        assert reason in result.stderr and "Traceback" not in result.stderr


async def test_the_page_is_for_admins_and_shows_each_pools_advice(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, _ = await stored_history(tmp_path, aiohttp_client)
    url = f"/admin/pools?since={DAY}&until={DAY}"
    anonymous = await client.get(url, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")
    assert (await log_in(client, "sam")).status == 303
    assert (await client.get(url)).status == 403  # staff: not an admin
    assert (await log_in(client, "ada")).status == 303
    page = await client.get(url)
    html = await page.text()
    assert page.status == 200, html
    assert "main / all" in html and "main / paid" in html
    assert "Add 1 number: 4 would have tracked 99% of visits; your 3 tracked 75.0%." in html
    assert "3 of 3 held at once, first on 15 Jan 2027, 11:00; an unlimited pool would" in html
    assert "Only 1 call to measure by in this period" in html
    assert "(1 attributed call)" in html and "1 matched to no visit" in html
    assert "(the site's fallback number, also shown by paid)" in html
    # the fallback call under both pools, the unheld one under "paid"
    assert len(re.findall(r'href="/calls/\d+"', html)) == 3
    assert 'title="Fri 11:00, 1 visit"' in html  # 2027-01-15 is a Friday: the exhausted visit
    assert "<svg" in html and "Visits tracked, by pool size" in html


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("target=101", "target: expected a share of visits"),
        ("target=0", "target: expected a share of visits"),
        ("target=%3Cscript%3E", "target: expected a share of visits"),
        ("since=2026-13-01", "since: expected a date like 2026-11-30"),
        ("since=2026-01-01&until=2026-12-31", "since..until: at most 92 days"),
    ],
)
async def test_the_page_answers_bad_options_with_400_and_a_reason(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], query: str, reason: str
) -> None:
    client, _ = await stored_history(tmp_path, aiohttp_client)
    await log_in(client, "ada")
    page = await client.get(f"/admin/pools?{query}")
    html = await page.text()
    assert page.status == 400 and reason in html and "<script>" not in html


async def test_call_delays_are_timed_from_the_activity_before_the_call(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Freeze time 60 s. A calls 50 s after their visit and is active again 5 s later (the page
    kept open): the delay was read from the session's last activity, after the call (-5 s, which
    every freeze catches). B's lease lapsed at T0 + 60, B calls at T0 + 120 (a probable match)
    and comes back at T0 + 200: -80 s, although the freeze in use missed that call. C reads
    one page from T0 (a ping at T0 + 150, no new page), calls at T0 + 200 and is active again:
    its last ping before the call is not kept, and its last page view (200 s) is past the
    freeze that caught the call: 60 s, the freeze in use, not more."""
    clock = FakeClock(T0)
    settings = settings_for(tmp_path, sites=[SITE], users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    visits = client.app[VISITS]
    a, b, c = await s.visit(), await s.visit(), await s.visit()
    clock.advance(50)
    await s.call(a.number, "+79160000001")
    clock.advance(5)
    assert await visits.ping(a.session_id, a.visitor_id, None) is not None
    clock.advance(65)  # T0 + 120: B's number is nobody's since T0 + 60
    await s.call(b.number, "+79160000002")
    clock.advance(30)  # T0 + 150
    assert await visits.ping(c.session_id, c.visitor_id, None) is not None
    clock.advance(50)  # T0 + 200
    await s.call(c.number, "+79160000003")
    clock.advance(5)
    assert await visits.ping(b.session_id, b.visitor_id, None) is not None
    assert await visits.ping(c.session_id, c.visitor_id, None) is not None
    await visits.flush()
    records = await pool_records(client.app[ENGINE], settings, T0 - 1, T0 + 3600)
    delays = {r.pool: sorted(r.call_delays) for r in records}
    assert delays == {"paid": [], "all": [50.0, 60.0, 120.0]}
    [all_pool] = [r for r in records if r.pool == "all"]
    assert all_pool.probable_calls == 1
