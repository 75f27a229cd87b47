"""GET /api/v1/calls/{id}/journey and the call page's journey on a hand-built history (issue 12):
a visitor came from Yandex, came back from Google and called, then came back directly and
called again; the same number had called the billboard before. Gaps are worked out by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from pbx.app import build_app
from pbx.keys import CALLS, ENGINE, VISITS
from pbx.storage.calls import CallFilter
from pbx.storage.tables import calls
from tests.api.test_reports_api import AUTH, SITE, Scenario
from tests.api.test_staff_ui import log_in
from tests.helpers import ORIGIN, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
DAY = 86400
CALLER = "+79160000001"
BILLBOARD = "+74990000101"  # tests/helpers: the static number of source "billboard"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def history(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Any:
    clock = FakeClock()
    t0 = clock.now
    settings = settings_for(tmp_path, sites=[SITE], users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    visits = client.app[VISITS]
    first = await s.visit("utm_source=yandex&utm_medium=organic")
    clock.advance(30)
    await visits.ping(first.session_id, first.visitor_id, f"{ORIGIN}/prices")
    clock.now = t0 + DAY  # the billboard; the number is nobody's yet
    await s.call(BILLBOARD, CALLER, talk=None)
    clock.now = t0 + 3 * DAY
    back = await s.visit(
        "utm_source=google&utm_medium=cpc&utm_campaign=spring&utm_term=implants",
        first.visitor_id,
    )
    clock.advance(20)
    await s.call(back.number, CALLER)
    clock.now = t0 + 5.5 * DAY
    direct = await s.visit(visitor=first.visitor_id)
    clock.advance(10)
    await visits.ping(direct.session_id, direct.visitor_id, f"{ORIGIN}/contacts")
    clock.advance(10)
    await s.call(direct.number, CALLER)
    clock.advance(30)
    await visits.ping(direct.session_id, direct.visitor_id, f"{ORIGIN}/after-the-call")
    other = await s.visit("utm_source=bing&utm_medium=cpc")  # someone else entirely
    await s.call(other.number, "+79160000002")
    await visits.flush()
    _, rows = await client.app[CALLS].list(CallFilter())
    ids = {r["linkedid"]: r["id"] for r in rows}
    return client, t0, ids


async def test_the_journey_lists_visits_pages_earlier_calls_and_gaps(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, t0, ids = await history(tmp_path, aiohttp_client)
    response = await client.get(f"/api/v1/calls/{ids['r3']}/journey", headers=AUTH)
    assert response.status == 200, await response.text()
    data = await response.json()
    assert data["call"]["id"] == ids["r3"] and data["call"]["started_at"] == iso(
        t0 + 5.5 * DAY + 20
    )
    visits = data["visits"]
    assert [(v["source"], v["medium"], v["campaign"], v["term"]) for v in visits] == [
        ("yandex", "organic", None, None),
        ("google", "cpc", "spring", "implants"),
        ("(direct)", "(none)", None, None),
    ]
    assert [v["started_at"] for v in visits] == [iso(t0), iso(t0 + 3 * DAY), iso(t0 + 5.5 * DAY)]
    assert visits[1]["landing_url"].endswith("utm_term=implants")
    first_pages = [p["url"] for p in visits[0]["pages"]]
    assert first_pages[-1] == f"{ORIGIN}/prices"
    last_pages = [p["url"] for p in visits[2]["pages"]]
    assert f"{ORIGIN}/contacts" in last_pages
    assert f"{ORIGIN}/after-the-call" not in last_pages  # viewed after the call started
    assert [c["id"] for c in data["earlier_calls"]] == [ids["r1"], ids["r2"]]
    billboard = data["earlier_calls"][0]
    assert (billboard["source"], billboard["attribution"], billboard["status"]) == (
        "billboard",
        "static",
        "missed",
    )
    # first visit t0 -> this call t0 + 5.5 d + 20 s; billboard t0 + 1 d -> google call
    # t0 + 3 d + 20 s (2.0 d) -> this call (2.5 d)
    assert data["days_since_first_visit"] == 5.5
    assert data["days_between_calls"] == [2.0, 2.5]
    assert data["channels_back"] == ["google", "(direct)"]
    assert data["visits_total"] == 3
    assert data["truncated"] == {"visits": False, "pages": False, "earlier_calls": False}


async def test_the_first_call_of_a_caller_has_no_earlier_calls(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, _t0, ids = await history(tmp_path, aiohttp_client)
    data = await (await client.get(f"/api/v1/calls/{ids['r4']}/journey", headers=AUTH)).json()
    assert [v["source"] for v in data["visits"]] == ["bing"]
    assert data["earlier_calls"] == [] and data["days_between_calls"] == []
    assert data["channels_back"] == []


async def test_the_journey_needs_a_token_and_a_call(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, _t0, ids = await history(tmp_path, aiohttp_client)
    assert (await client.get(f"/api/v1/calls/{ids['r3']}/journey")).status == 401
    for missing in ("999999", "abc", "1" * 13):
        response = await client.get(f"/api/v1/calls/{missing}/journey", headers=AUTH)
        assert response.status == 404, missing
        assert "error" in await response.json()


async def test_the_call_page_shows_the_visitors_journey(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client, _t0, ids = await history(tmp_path, aiohttp_client)
    await log_in(client, "sam")
    page = await (await client.get(f"/calls/{ids['r3']}")).text()
    journey = page[page.index('id="visitor-journey"') :]
    assert "5.5</strong> days before this call" in journey
    assert "2.0 → 2.5" in journey
    assert "implants" in journey and "/prices" in journey
    assert "after-the-call" not in page
    assert f'href="/calls/{ids["r1"]}"' in journey  # the billboard call, found by the number


async def test_earlier_calls_kept_before_callers_were_e164_are_the_same_callers(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A call stored before 2026-12-03 kept its caller as the trunk sent it (89160000001): the
    caller's journey still lists it beside their calls kept in E.164."""
    client, _t0, ids = await history(tmp_path, aiohttp_client)
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(
            update(calls).where(calls.c.id == ids["r1"]).values(caller="89160000001")
        )
    data = await (await client.get(f"/api/v1/calls/{ids['r3']}/journey", headers=AUTH)).json()
    assert [c["id"] for c in data["earlier_calls"]] == [ids["r1"], ids["r2"]]
