"""The deliveries admin page (/admin/deliveries, issue 14) in real Chromium, at desktop width and
on a 390 px phone: the deliveries are listed and fit the screen, and "Retry now" on a failed one
makes it pending again. Screenshots go to pbx/staff_ui/screenshots/deliveries*.png.

The app runs in a thread with a settable clock (the reports page test's Server); its outbox is
written by storing calls, then set to what a worker would have left: delivered, failed after
500s and timeouts, skipped GA4 events, one waiting for its next try.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from attribution.calls import CallReport
from pbx.keys import CALLS, ENGINE
from pbx.storage.tables import outbox
from tests.helpers import PASSWORD, FakeClock, settings_for, staff_users

from .conftest import watch
from .test_reports_page import SCREENSHOTS, Server

pytestmark = pytest.mark.browser

T0 = 1_800_000_000.0
HOOKS = [
    {"name": "crm", "url": "https://crm.example/hooks/calltrack", "secret": "s" * 32},
    {
        "name": "bitrix",
        "url": "https://shop.bitrix24.ru/rest/1/k3y/",
        "secret": "s" * 32,
        "format": "bitrix24",
    },
]
GA4 = {"measurement_id": "G-TEST1234", "api_secret": "stream-secret"}


class DeliveryServer(Server):
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(T0)
        self.settings = settings_for(tmp_path, users=staff_users(), webhooks=HOOKS, ga4=GA4)
        self._start()


async def seed(server: DeliveryServer) -> None:
    app, clock = server.app, server.clock
    for n in range(4):
        at = clock.now
        report = CallReport(f"c{n}", f"+7916000000{n}", "+74990000101", at, at + 60, at + 5, "")
        assert await app[CALLS].store(report)  # three deliveries each: crm, bitrix, ga4
        clock.advance(900)
    worker_left: dict[int, dict[str, Any]] = {
        1: {"state": "delivered", "attempts": 1, "last_status": 200, "delivered_at": T0 + 1},
        2: {"state": "delivered", "attempts": 2, "last_status": 200, "delivered_at": T0 + 12},
        3: {"state": "skipped", "last_error": "no GA client id"},
        4: {"state": "failed", "attempts": 14, "last_status": 503,
            "last_error": "Service Unavailable"},
        5: {"state": "failed", "attempts": 14,
            "last_error": "no answer within 10 s"},
        6: {"state": "skipped", "last_error": "no GA client id"},
        7: {"state": "pending", "attempts": 3, "last_status": 500, "due_at": T0 + 4000,
            "last_error": "Internal Server Error"},
        9: {"state": "skipped", "last_error": "no GA client id"},
    }  # fmt: skip
    async with app[ENGINE].begin() as conn:
        for row_id, values in worker_left.items():
            await conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeliveryServer]:
    server = DeliveryServer(tmp_path_factory.mktemp("deliveries"))
    server.run(seed(server))
    yield server
    server.close()


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin")
    assert "/login" in page.url, "the page needs a login"
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin")
    page.click("a[href='/admin/deliveries']")
    page.wait_for_url("**/admin/deliveries")


def test_deliveries_page_at_desktop_width(server: DeliveryServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url)
    rows = page.locator("#deliveries tbody tr")
    assert rows.count() == 12
    assert rows.first.get_attribute("data-id") == "12"  # newest first
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "deliveries.png"), full_page=True)
    page.click("nav.tabs >> text=Failed")
    page.wait_for_url("**state=failed")
    assert [r.get_attribute("data-id") for r in rows.all()] == ["5", "4"]
    rows.first.locator("button", has_text="Retry now").click()
    page.wait_for_url("**retried=5")
    assert "Delivery 5 will be tried again now." in page.locator("p.alert").inner_text()
    assert [r.get_attribute("data-id") for r in rows.all()] == ["4"]
    page.click("nav.tabs >> text=Pending")
    assert page.locator("#deliveries tr[data-id='5'] .delivery").inner_text() == "pending"
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()


def test_deliveries_page_on_a_phone(server: DeliveryServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url)
    assert page.locator("#deliveries tbody tr").count() == 12
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    button = page.locator("#deliveries button", has_text="Retry now").first.bounding_box()
    assert button["x"] + button["width"] <= 390
    page.screenshot(path=str(SCREENSHOTS / "deliveries-phone.png"), full_page=True)
    assert watched.console == [] and watched.errors == []
    context.close()
