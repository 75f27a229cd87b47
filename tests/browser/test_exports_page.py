"""An admin downloads the ad platforms' files at /admin/exports in real Chromium against
`calltrack serve`, on a database with calls from a Google click and a Yandex click; the
screenshot goes to pbx/staff_ui/screenshots/exports.png."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from attribution.ad_clients import AdClientIds
from attribution.calls import CallReport
from pbx.settings import load_settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.outbox import Outbox
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import PASSWORD, FakeClock, config_dict, staff_users, write_config

from .conftest import REPO, _calltrack, free_port, serving

pytestmark = pytest.mark.browser

SCREENSHOT = REPO / "pbx" / "staff_ui" / "screenshots" / "exports.png"
SHOP = "https://shop.test/"
HOUR = 3600.0


async def _seed(config: Path) -> None:
    """Three calls, an hour apart, two hours ago: a Google click from a browser Metrica knows,
    a Yandex click, and an organic visit (no click id: left out of both files)."""
    settings = load_settings(str(config))
    engine = open_engine(settings.database)
    clock = FakeClock(time.time() - 3 * HOUR)
    visits = VisitStore(engine, settings, clock)
    store = CallStore(engine, settings, visits, clock, Outbox(settings, clock))
    await visits.sync_numbers()  # as `serve` does on start
    site = settings.sites[0]
    arrivals = [
        (SHOP + "?gclid=CjwK-browser&utm_medium=cpc", AdClientIds("5.6", "1700000000123")),
        (SHOP + "?yclid=8842&utm_medium=cpc", AdClientIds()),
        (SHOP + "?utm_source=bing&utm_medium=organic", AdClientIds()),
    ]
    for i, (url, ids) in enumerate(arrivals):
        visit = await visits.start_visit(
            VisitRequest(site, url, None, None, None, f"10.0.0.{i}", ad_ids=ids)
        )
        at = clock.now + 5
        report = CallReport(
            f"b{i}", f"+7916000000{i}", visit.number or "", at, at + 90, at + 9, "ANSWER"
        )
        assert await store.store(report)
        clock.advance(HOUR)
    await visits.flush()
    visits.close()
    await engine.dispose()


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("exports-ui")
    port = free_port()
    config = write_config(
        folder / "calltrack.yaml",
        config_dict(
            f"sqlite+aiosqlite:///{folder / 'calltrack.db'}",
            users=staff_users(),
            currency="RUB",
            google_ads={"conversion_name": "Phone call", "calls": "answered", "value": "500"},
            http={"host": "127.0.0.1", "port": port},
        ),
    )
    subprocess.run([*_calltrack(), "db", "upgrade", "-c", str(config)], check=True, cwd=folder)
    # in a thread of its own: the browser fixtures' event loop is running in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _seed(config)).result()
    with serving(config, port) as url:
        yield url


def test_an_admin_sees_what_is_left_out_and_downloads_both_files(
    browser: Any, daemon_url: str, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(daemon_url + "/admin")
    assert "/login" in page.url
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin")
    page.click("a[href='/admin/exports']")
    page.wait_for_url("**/admin/exports")
    google = page.locator("#export-google-ads")
    assert google.locator("p.rows").inner_text() == "1 row"
    assert google.locator("ul.left-out li").all_inner_texts() == [
        "2 calls without a Google click id (gclid, gbraid, wbraid)"
    ]
    metrica = page.locator("#export-metrica")
    assert metrica.locator("p.rows").inner_text() == "1 row"
    assert metrica.locator("ul.left-out li").all_inner_texts() == [
        "2 calls without a Metrica ClientID"
    ]
    by_click = page.locator("#export-metrica-yclid")
    assert by_click.locator("p.rows").inner_text() == "1 row"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    with page.expect_download() as info:
        google.locator("a.button").click()
    download = info.value
    today = date.today()  # the daemon's default range ends today (ui.timezone: UTC)
    assert download.suggested_filename.startswith("google-ads-calls-")
    assert download.suggested_filename.endswith(f"-{today}.csv")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[:2] == [
        "Parameters:TimeZone=UTC",
        "Google Click ID,GBRAID,WBRAID,Conversion Name,Conversion Time,Conversion Value,"
        "Conversion Currency",
    ]
    assert lines[2].startswith("CjwK-browser,,,Phone call,") and lines[2].endswith(",500.00,RUB")
    with page.expect_download() as info:
        metrica.locator("a.button").click()
    metrica_lines = Path(info.value.path()).read_text().splitlines()
    assert [line.split(",")[0] for line in metrica_lines] == ["ClientId", "1700000000123"]
    with page.expect_download() as info:
        by_click.locator("a.button").click()
    yclid_lines = Path(info.value.path()).read_text().splitlines()
    assert [line.split(",")[0] for line in yclid_lines] == ["Yclid", "8842"]
    context.close()
