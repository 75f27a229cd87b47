"""The dashboard (`/`) on a hand-built history in Moscow time: calls, answered share and leads
for today and the last 7 and 30 local days, missed callers to call back, top sources. Every
expected number is counted by hand in the docstring of `history`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from pbx.app import build_app
from tests.api.test_reports_api import SITE, Scenario
from tests.api.test_staff_ui import login_csrf
from tests.helpers import PASSWORD, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC = 11:00 in Moscow (UTC+3)
HOUR, DAY = 3600, 86400
BILLBOARD, FALLBACK = "+74990000101", "+74990000099"


async def history(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    """Six calls, oldest first (local dates in Moscow):

    1. 2026-12-06 (40 days ago): google cpc, answered 40 s          -> in no tile
    2. 2026-12-26 (20 days ago): fallback, answered 50 s (a lead)    -> 30 days, unattributed
    3. 2027-01-12 (3 days ago): billboard, answered 10 s (no lead)   -> 7 and 30 days
    4. 2027-01-14 23:00 local (NOW - 12 h = 20:00 UTC): billboard, busy
    5. 2027-01-15 02:00 local (NOW - 9 h = 23:00 UTC the day before): yandex organic, missed
    6. 2027-01-15 10:00 local: google cpc, answered 40 s (a lead)

    Today: calls 5, 6 -> 2 calls, 1 answered (50 %), 1 lead.
    7 days: 3, 4, 5, 6 -> 4 calls, 2 answered (50 %), 1 lead.
    30 days: 2..6 -> 5 calls, 3 answered (60 %), 2 leads.
    To call back: the callers of 4 and 5.
    Top sources (30 days): billboard 2 calls 0 leads; google 1/1; yandex 1/0 (google before
    yandex: as many calls and visits, by name); the unattributed call is no source.
    """
    clock = FakeClock(NOW - 40 * DAY)
    settings = settings_for(
        tmp_path, sites=[SITE], users=staff_users(), ui={"timezone": "Europe/Moscow"}
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    paid = await s.visit("utm_source=google&utm_medium=cpc")
    await s.call(paid.number, "+79160000001", talk=40)
    clock.now = NOW - 20 * DAY
    await s.call(FALLBACK, "+79160000002", talk=50)
    clock.now = NOW - 3 * DAY
    await s.call(BILLBOARD, "+79160000003", talk=10)
    clock.now = NOW - 12 * HOUR
    await s.call(BILLBOARD, "+79160000004", talk=None)
    clock.now = NOW - 9 * HOUR
    organic = await s.visit("utm_source=yandex&utm_medium=organic")
    await s.call(organic.number, "+79160000005", talk=None)
    clock.now = NOW - HOUR
    paid = await s.visit("utm_source=google&utm_medium=cpc")
    await s.call(paid.number, "+79160000001", talk=40)
    clock.now = NOW
    return client


def tile(page: str, tile_id: str) -> dict[str, str]:
    section = page[page.index(f'id="{tile_id}"') :]
    section = section[: section.index("</section>")]
    return dict(re.findall(r'data-stat="(\w+)">([^<]*)<', section))


async def test_the_dashboard_counts_local_days_from_the_report_totals(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client)
    csrf = await login_csrf(client)
    response = await client.post(
        "/login", data={"csrf": csrf, "name": "sam", "password": PASSWORD}, allow_redirects=False
    )
    assert response.headers["Location"] == "/"  # the dashboard is where a login lands
    page = await (await client.get("/")).text()
    assert tile(page, "tile-1") == {"calls": "2", "answered": "50%", "leads": "1"}
    assert tile(page, "tile-2") == {"calls": "4", "answered": "50%", "leads": "1"}
    assert tile(page, "tile-3") == {"calls": "5", "answered": "60%", "leads": "2"}
    assert tile(page, "tile-missed") == {"missed": "2"}
    assert 'href="/calls/missed"' in page
    top = page[page.index('id="top-sources"') :]
    rows = re.findall(
        r'class="source"[^>]*>([^<]+)</a></td><td class="num">(\d+)</td>'
        r'<td class="num">(\d+)</td>',
        top,
    )
    assert rows == [("billboard", "2", "0"), ("google", "1", "1"), ("yandex", "1", "0")]
    assert "(unattributed)" not in top


async def test_the_dashboard_needs_a_login(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client)
    response = await client.get("/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login?next=")


async def test_a_top_sources_link_finds_the_calls_of_a_source_longer_than_a_report_key(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Reports key a value by its first 200 characters; the link of such a row to the call log
    finds its calls (before, the log looked for the 200 characters exactly and found none),
    and only its calls: not those of a source with another first 200, nor another case."""
    await _links_find_their_own_calls(
        tmp_path, aiohttp_client, "a" * 199 + "b" * 101, "A" * 199 + "b"
    )


@pytest.mark.parametrize(
    "source", ["a" * 199 + "%20tail", "spring%20sale%20"], ids=["cut after a space", "pasted"]
)
async def test_a_top_sources_link_finds_its_calls_when_the_key_ends_in_a_space(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], source: str
) -> None:
    """A source whose 200th character is a space has a report key ending in one, as has a
    source pasted with a space after it. The call log strips the spaces around what staff
    type, but not from a key (before, what was left matched nothing)."""
    await _links_find_their_own_calls(tmp_path, aiohttp_client, source, source.upper())


async def _links_find_their_own_calls(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], long: str, other: str
) -> None:
    """Two sources with calls, `long` (paid) and `other` (organic), as a link's query spells
    them; each top-sources link of the dashboard finds its own call in the call log and not
    the other's."""
    clock = FakeClock(NOW)
    settings = settings_for(tmp_path, sites=[SITE], users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    for source, medium, caller in (
        (long, "cpc", "+79160000001"),
        (other, "organic", "+79160000002"),  # another pool: its own number
    ):
        visit = await s.visit(f"utm_source={source}&utm_medium={medium}")
        await s.call(visit.number, caller)
    csrf = await login_csrf(client)
    await client.post("/login", data={"csrf": csrf, "name": "sam", "password": PASSWORD})
    page = await (await client.get("/")).text()
    top = page[page.index('id="top-sources"') :]
    links = re.findall(r'class="source" href="([^"]+)"', top)
    assert len(links) == 2
    for link in links:
        found, absent = ("02", "01") if f"source={other[:3]}" in link else ("01", "02")
        log = await (await client.get(link.replace("&amp;", "&"))).text()
        assert f"+791600000{found}" in log and f"+791600000{absent}" not in log, link
