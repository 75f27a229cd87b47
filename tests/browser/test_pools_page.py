"""The pool sizing page (/admin/pools, issue 13) in real Chromium, at desktop width and on a
390 px phone: its charts draw within the CSP, fit the screen with readable text, and the verdict,
the freeze advice and the lost calls are there. Screenshots go to pbx/staff_ui/screenshots/.

The app runs in a thread with a settable clock (the reports page test's Server), seeded through
its own stores: a week of afternoons busier than a pool of four numbers with a 10-minute freeze,
visitors who ping while they read and some who call minutes after they leave.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attribution.calls import CallReport
from pbx.keys import CALLS, SETTINGS, VISITS
from pbx.storage.visits import VisitRequest
from tests.helpers import PASSWORD, FakeClock, settings_for, staff_users

from .conftest import watch
from .test_reports_page import SCREENSHOTS, Server, check_fits

pytestmark = pytest.mark.browser

ORIGIN = "https://shop.example"
SITE = {
    "name": "main",
    "origins": [ORIGIN],
    "replace": ["+7 (495) 123-45-67"],
    "pools": [{"name": "web", "numbers": [f"+749900000{n}" for n in range(11, 15)]}],
    "fallback": "+74990000099",
}
DAY = 86400.0
#: Monday 2027-01-11 00:00 in Moscow (UTC+3)
MONDAY = 1_799_614_800.0
DAYS = 7
SINCE, UNTIL = "2027-01-11", "2027-01-17"


class PoolServer(Server):
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(MONDAY)
        self.settings = settings_for(
            tmp_path,
            sites=[SITE],
            users=staff_users(),
            freeze_time="10m",
            ui={"timezone": "Europe/Moscow"},
        )
        self._start()


def events(rng: random.Random) -> list[tuple[float, str, int]]:
    """(at, what, visitor) for the week: 40 visits on an afternoon (12-18 h), 8 in the morning,
    each reading 1-8 minutes and pinging every minute; a third call 0-25 minutes after leaving."""
    out: list[tuple[float, str, int]] = []
    visitor = 0
    for day in range(DAYS):
        starts = [12 * 3600 + rng.random() * 6 * 3600 for _ in range(40)]
        starts += [9 * 3600 + rng.random() * 3 * 3600 for _ in range(8)]
        for start in starts:
            visitor += 1
            at = MONDAY + day * DAY + start
            out.append((at, "visit", visitor))
            minutes = rng.randint(1, 8)
            out += [(at + 60 * m, "ping", visitor) for m in range(1, minutes + 1)]
            if rng.random() < 1 / 3:
                out.append((at + 60 * minutes + rng.random() * 25 * 60, "call", visitor))
    return sorted(out)


async def seed(server: PoolServer) -> None:
    app, clock = server.app, server.clock
    site = app[SETTINGS].sites[0]
    shown: dict[int, tuple[str, str, str]] = {}  # visitor -> (session, visitor id, number)
    for at, what, visitor in events(random.Random(13)):
        clock.now = at
        if what == "visit":
            ip = f"10.0.{visitor // 250}.{visitor % 250}"
            visit = await app[VISITS].start_visit(
                VisitRequest(site, f"{ORIGIN}/", None, None, None, ip)
            )
            shown[visitor] = (visit.session_id, visit.visitor_id, visit.number or SITE["fallback"])
        elif what == "ping":
            session, visitor_id, _ = shown[visitor]
            await app[VISITS].ping(session, visitor_id, None)
        else:
            number = shown[visitor][2]
            report = CallReport(
                f"c{visitor}", f"+7916{visitor:07d}", number, at, at + 60, at + 5, "ANSWER"
            )
            assert await app[CALLS].store(report)
    await app[VISITS].flush()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolServer]:
    server = PoolServer(tmp_path_factory.mktemp("pools"))
    server.run(seed(server))
    yield server
    server.close()


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/pools?since={SINCE}&until={UNTIL}")
    assert "/login" in page.url, "the page needs a login"
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/pools*")


def check_page(page: Any, width: int) -> None:
    """The verdict and advice are there; the four charts fit the screen, their text readable."""
    section = page.locator("section.pool")
    assert section.count() == 1
    verdict = section.locator(".verdict").inner_text()
    assert verdict.startswith("Add ") and "would have tracked 99% of visits" in verdict
    assert "freeze 10m caught" in section.locator(".freeze-advice").inner_text()
    assert (
        section.locator(
            "table.heat td.heat-1, table.heat td.heat-2, table.heat td.heat-3, table.heat td.heat-4"
        ).count()
        > 0
    )
    check_fits(page, width, count=4)


def test_pools_page_at_desktop_width(server: PoolServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url)
    check_page(page, 1280)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "pools.png"), full_page=True)
    page.fill("#p-target", "90")
    page.click("text=Show")
    page.wait_for_url("**target=90*")
    assert "tracked 90% of visits" in page.locator(".verdict").inner_text()
    lists = page.locator("section.pool details.calls-list")
    assert lists.count() == 2  # calls to the fallback, calls to numbers nobody held
    lists.first.locator("summary").click()
    lists.first.locator("a[href^='/calls/']").first.click()
    page.wait_for_url("**/calls/*")
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()


def test_pools_page_on_a_phone(server: PoolServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url)
    check_page(page, 390)
    page.screenshot(path=str(SCREENSHOTS / "pools-phone.png"), full_page=True)
    assert watched.console == [] and watched.errors == []
    context.close()
