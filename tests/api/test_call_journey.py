"""The call page's journey: the pages the caller viewed before the call, not after (issue 11)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestClient

from attribution.calls import CallReport
from pbx.app import build_app
from pbx.keys import CALLS, SETTINGS, VISITS
from pbx.storage.calls import CallFilter
from pbx.storage.visits import VisitRequest
from tests.api.test_staff_ui import log_in
from tests.helpers import FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]


async def test_the_journey_stops_at_the_calls_start(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    clock = FakeClock()
    settings = settings_for(tmp_path, users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    visits = client.app[VISITS]
    site = client.app[SETTINGS].sites[0]
    paid = "https://shop.test/?utm_source=google&utm_medium=cpc"
    visit = await visits.start_visit(VisitRequest(site, paid, None, None, None, "10.0.0.1"))
    clock.advance(5)
    await visits.ping(visit.session_id, visit.visitor_id, "https://shop.test/before-call")
    clock.advance(5)
    called_at = clock.now
    await client.app[CALLS].store(
        CallReport("j1", "+79161234567", visit.number or "", called_at, called_at + 30, None, "")
    )
    clock.advance(5)
    await visits.ping(visit.session_id, visit.visitor_id, "https://shop.test/after-call")
    _, [call] = await client.app[CALLS].list(CallFilter())
    await log_in(client, "sam")
    page = await (await client.get(f"/calls/{call['id']}")).text()
    assert "before-call" in page and "after-call" not in page
    assert "Pages viewed (2)" in page
