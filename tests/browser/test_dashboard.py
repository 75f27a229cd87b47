"""The dashboard and the missed-calls page in real Chromium against `calltrack serve`: the tiles
show the seeded calls, the missed callers' tile leads to /calls/missed, and "Called back" takes a
caller off the list. Screenshots go to pbx/staff_ui/screenshots/ (shown in the README)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from attribution.calls import CallReport
from pbx.settings import load_settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import ORIGIN, PASSWORD, config_dict, staff_users

from .conftest import REPO, _calltrack, free_port

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "pbx" / "staff_ui" / "screenshots"
BILLBOARD, FALLBACK = "+74990000101", "+74990000099"  # tests/helpers' config


async def seed(config: Path) -> None:
    """Calls of the last minutes (real time: the daemon's clock; the staff pages' time zone is
    chosen by `midday_zone`, so "today" holds them at any hour of the run): a paid caller
    answered, a billboard caller busy, an organic visitor's call missed, a billboard caller who
    got voicemail; and a call answered three days ago."""
    settings = load_settings(config)
    engine = open_engine(settings.database)
    now = time.time()
    clock = [now - 3 * 86400]
    visits = VisitStore(engine, settings, lambda: clock[0])
    calls = CallStore(engine, settings, visits, lambda: clock[0])
    site = settings.sites[0]
    await visits.sync_numbers()

    async def call(
        n: int, caller: str, did: str, dial: str, talk: float = 0, person: bool = True
    ) -> None:
        at = clock[0]
        answered = at + 5 if dial == "ANSWER" and person else None  # no person: voicemail
        report = CallReport(f"b{n}", caller, did, at, at + 5 + talk, answered, dial)
        assert await calls.store(report)

    try:
        await call(1, "+79160000001", BILLBOARD, "ANSWER", 95)
        clock[0] = now - 3 * 60
        paid = await visits.start_visit(
            VisitRequest(
                site, f"{ORIGIN}/?utm_source=google&utm_medium=cpc", None, None, None, "10.0.0.1"
            )
        )
        await call(2, "+79160000002", paid.number or "", "ANSWER", 120)
        clock[0] = now - 2 * 60
        await call(3, "+79160000003", BILLBOARD, "BUSY")
        clock[0] = now - 60
        organic = await visits.start_visit(
            VisitRequest(
                site,
                f"{ORIGIN}/?utm_source=yandex&utm_medium=organic",
                None,
                None,
                None,
                "10.0.0.2",
            )
        )
        await call(4, "+79160000004", organic.number or "", "NOANSWER")
        clock[0] = now - 30
        await call(5, "+79160000005", BILLBOARD, "ANSWER", 40, person=False)
        await visits.flush()
    finally:
        visits.close()
        await engine.dispose()


def midday_zone(now: float) -> str:
    """A fixed-offset zone where `now` falls between 11:00 and 13:00, so calls of the last
    minutes are "today" there. (With Europe/Moscow, a CI run just after 21:00 UTC put them on
    the day before.) Etc/GMT signs are inverted: Etc/GMT-5 is UTC+5."""
    offset = 12 - time.gmtime(now).tm_hour  # -11 .. +12, all of which Etc/GMT has
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    config = folder / "calltrack.yaml"
    with config.open("w") as out:
        YAML().dump(
            config_dict(
                f"sqlite+aiosqlite:///{folder / 'calltrack.db'}",
                users=staff_users(),
                ui={"timezone": midday_zone(time.time())},
            ),
            out,
        )
    subprocess.run([*_calltrack(), "db", "upgrade", "-c", str(config)], check=True, cwd=folder)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright may own this loop
        pool.submit(asyncio.run, seed(config)).result()
    log = folder / "daemon.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_calltrack(), "serve", "-c", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_the_dashboard_and_the_missed_calls_page(served: str, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served + "/")
    assert "/login" in page.url
    page.fill("#name", "sam")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(served + "/")
    today = page.locator("#tile-1")
    assert today.locator("[data-stat=calls]").inner_text() == "4"  # 2 to 5 are today's
    assert today.locator("[data-stat=answered]").inner_text() == "25%"  # voicemail is not
    week = page.locator("#tile-2")
    assert week.locator("[data-stat=calls]").inner_text() == "5"
    assert week.locator("[data-stat=leads]").inner_text() == "2"  # talked 95 s and 120 s
    assert page.locator("#tile-missed [data-stat=missed]").inner_text() == "3"
    assert page.locator("#nav-missed").inner_text() == "Missed calls (3)"
    assert page.locator("#top-sources tbody tr").count() == 3
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    page.click("#tile-missed [data-stat=missed]")
    page.wait_for_url(served + "/calls/missed")
    callers = page.locator("#missed tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.caller)"
    )
    assert callers == ["+79160000003", "+79160000004", "+79160000005"]  # longest wait first
    status = page.locator('#missed tr[data-caller="+79160000005"] .status')
    assert status.inner_text() == "Voicemail"
    page.screenshot(path=str(SCREENSHOTS / "missed-calls.png"), full_page=True)

    page.locator('#missed tr[data-caller="+79160000003"] button').click()
    page.wait_for_load_state()
    assert page.locator("#missed tbody tr").count() == 2
    assert page.locator("#nav-missed").inner_text() == "Missed calls (2)"
    assert "by sam" in page.inner_text("#h-done + ul")
    assert errors == []
    context.close()
