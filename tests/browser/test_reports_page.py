"""The reports page in real Chromium, at desktop width and on a 390 px phone: the charts draw
within the CSP (no console errors), fit the screen with readable text, a row drills down and the
CSV downloads with the session. Screenshots go to pbx/staff_ui/screenshots/ (shown in the README).

The app runs in a thread of its own with a settable clock, seeded through its own stores with 30
days of visits and calls from eight sources, a few sales and some ad costs.
"""

from __future__ import annotations

import asyncio
import csv
import threading
from collections.abc import Coroutine, Iterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from sqlalchemy import insert

from attribution.reports import local_day
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE
from pbx.storage.calls import CallFilter, Review
from pbx.storage.tables import costs
from tests.api.test_reports_api import SITE, Scenario
from tests.helpers import PASSWORD, FakeClock, migrate, settings_for, staff_users

from .conftest import REPO, free_port, watch

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "pbx" / "staff_ui" / "screenshots"
T = TypeVar("T")
DAY = 24 * 3600
DAYS = 30
FIRST_DAY = 1_800_000_000.0 - 8 * 3600 - (DAYS - 1) * DAY  # 2026-12-17 00:00 UTC
#: (utm query, visits a day that call) for the seeded fortnight
SOURCES = [
    ("utm_source=google&utm_medium=cpc&utm_campaign=spring", 3),
    ("utm_source=yandex&utm_medium=cpc&utm_campaign=brand", 2),
    ("utm_source=facebook&utm_medium=social", 1),
    ("utm_source=newsletter&utm_medium=email", 1),
    ("utm_source=bing&utm_medium=cpc", 1),
    ("utm_source=duckduckgo&utm_medium=organic", 1),
    ("", 1),  # direct
]


class Server:
    """The real app on a port, on an event loop in a thread (Playwright owns this thread's)."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(FIRST_DAY)
        self.settings = settings_for(tmp_path, sites=[SITE], users=staff_users())
        self._start()

    def _start(self) -> None:
        """Serve `self.settings` with `self.clock` (set by the constructor)."""
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run(migrate(self.settings))
        self.app = build_app(self.settings, clock=self.clock)
        self.runner = web.AppRunner(self.app)
        self.run(self.runner.setup())
        self.run(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)


async def seed(server: Server) -> None:
    """30 days up to the clock's today: each day every source's visitors call (every fifth call
    missed), google's more on some days, the billboard rings; every third google call is a sale;
    google and yandex cost money each day."""
    clock, app = server.clock, server.app
    s = Scenario(SimpleNamespace(app=app), clock)  # type: ignore[arg-type]
    caller = 0
    for day in range(DAYS):
        clock.now = FIRST_DAY + day * DAY + 9 * 3600
        for query, count in SOURCES:
            extra = day % 3 if "google" in query else 0
            for _ in range(count + extra):
                caller += 1
                visit = await s.visit(query)
                talk = None if caller % 5 == 0 else 20.0 + caller % 60
                await s.call(visit.number, f"+7916{caller:07d}", talk=talk)
                clock.advance(600)
        await s.call("+74990000101", f"+7926{day:07d}")
    _total, rows = await app[CALLS].list(CallFilter(source="google", limit=1000))
    for row in rows[::3]:
        review = Review(frozenset({"sale"}), 5, None, 1_250_000)
        assert await app[CALLS].review(row["id"], review, "ada")
    first = date(2026, 12, 17)
    async with app[ENGINE].begin() as conn:
        await conn.execute(
            insert(costs),
            [
                {"day": local_day(first + timedelta(days=d)), "source": source, "medium": "cpc"}
                | {"campaign": campaign, "cost_cents": cents}
                | {"imported_at": clock.now, "file": "ads.csv"}
                for d in range(DAYS)
                for source, campaign, cents in (
                    ("google", "spring", 420_000),
                    ("yandex", "brand", 150_000),
                )
            ],
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("reports"))
    server.run(seed(server))
    yield server
    server.close()


def log_in(page: Any, base: str, path: str) -> None:
    page.goto(base + path)
    assert "/login" in page.url, "the page needs a login"
    page.fill("#name", "sam")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/reports*")


def check_fits(page: Any, width: int, count: int = 2) -> None:
    """Nothing wider than the screen but the table's own scroller; `count` charts, their text
    readable."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    charts = page.locator("svg.chart-svg")
    assert charts.count() == count
    for i in range(count):
        box = charts.nth(i).bounding_box()
        assert box["width"] <= width and box["height"] > 100
    smallest = page.evaluate(
        "Math.min(...[...document.querySelectorAll('svg.chart-svg text')]"
        ".map(t => t.getBoundingClientRect().height))"
    )
    assert smallest >= 9, f"chart text {smallest}px high"


def test_reports_page_at_desktop_width(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url, "/reports")
    assert page.locator("header nav a[aria-current=page]").inner_text() == "Reports"
    check_fits(page, 1280)
    legend = page.locator("figure.chart").first.locator(".legend li").all_inner_texts()
    assert len(legend) == 6 and legend[-1].strip() == "(other)"  # top 5 sources + the rest
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "reports.png"), full_page=True)
    page.click("#report tbody th a >> text=google")
    page.wait_for_url("**group_by=campaign*")
    params = parse_qs(urlsplit(page.url).query)
    assert params["source"] == ["google"]
    assert page.locator("#report tbody th").all_inner_texts() == ["spring"]
    with page.expect_download() as download:
        page.click("text=Download CSV")
    saved = Path(download.value.path()).read_bytes()
    assert saved.startswith(b"\xef\xbb\xbf")  # Excel then reads it as UTF-8
    rows = list(csv.reader(saved.decode("utf-8-sig").splitlines()))
    assert rows[0][0] == "campaign" and [r[0] for r in rows[1:]] == ["spring", "(total)"]
    page.click("text=First vs last touch")
    page.wait_for_url("**compare=1*")
    assert page.locator("table.compare tbody tr").count() == 1
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()


def test_reports_page_on_a_phone(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url, "/reports")
    check_fits(page, 390)
    page.screenshot(path=str(SCREENSHOTS / "reports-phone.png"), full_page=True)
    assert watched.console == [] and watched.errors == []
    context.close()
