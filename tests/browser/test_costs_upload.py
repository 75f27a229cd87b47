"""An admin uploads a Google Ads export at /admin/costs in real Chromium against `calltrack
serve`; the screenshot goes to artifacts/screenshots/costs-upload.png."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PASSWORD, config_dict, staff_users, write_config

from .conftest import REPO, _calltrack, free_port, serving

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"
FIXTURES = REPO / "tests" / "fixtures" / "costs"


@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("costs-ui")
    port = free_port()
    config = write_config(
        folder / "calltrack.yaml",
        config_dict(
            f"sqlite+aiosqlite:///{folder / 'calltrack.db'}",
            users=staff_users(),
            http={"host": "127.0.0.1", "port": port},
        ),
    )
    subprocess.run([*_calltrack(), "db", "upgrade", "-c", str(config)], check=True, cwd=folder)
    with serving(config, port) as url:
        yield url


def test_an_admin_uploads_a_google_ads_export(
    browser: Any, daemon_url: str, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(daemon_url + "/admin/costs")
    assert "/login" in page.url
    page.fill("#name", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/costs")
    page.set_input_files("#file", str(FIXTURES / "google-ads.csv"))
    page.select_option("#preset", "google-ads")
    page.click("button.primary")
    notice = page.locator("p.notice")
    notice.wait_for()
    assert notice.inner_text() == (
        "Imported google-ads.csv: 4 rows, 3 days (2024-03-01..2024-03-03), sources google,"
        " total 3245.06 USD"
    )
    rows = page.locator("table.plain tbody tr")
    assert rows.count() == 1 and rows.first.inner_text().split("\t") == [
        "2024-03",
        "google",
        "3245.06",
    ]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "costs-upload.png"), full_page=True)

    # a bad file: its lines are listed, nothing more is stored
    bad = tmp_path / "bad-costs.csv"
    bad.write_text("date,source,medium,campaign,cost\n2024-03-09,vk,social,x,lots\n")
    page.set_input_files("#file", str(bad))
    page.select_option("#preset", "")
    page.click("button.primary")
    page.locator("div.alert").wait_for()
    assert "bad-costs.csv:2: cost: expected an amount" in page.locator("div.alert").inner_text()
    assert page.locator("table.plain tbody tr").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "costs-upload-errors.png"), full_page=True)
    context.close()
