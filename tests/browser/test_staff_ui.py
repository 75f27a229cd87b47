"""The staff pages in real Chromium beside the lab Asterisk: a SIPp call appears live in the log,
its recording plays and seeks (HTTP Range), staff tag it, filter by the tag and export CSV;
roles and anonymous access are enforced. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import re
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from pbx.settings import Settings, load_settings
from tests.asterisk.conftest import lab_running, lab_settings, load_lab_dialplan  # noqa: F401
from tests.e2e.conftest import LAB_ORIGIN, Daemon, call, write_daemon_config
from tests.helpers import PASSWORD, staff_users

from .conftest import REPO, Watched

# the call's recording is real-time audio (SIPp's RTP): on a loaded machine it came out seconds
# short (4.2 of 7.1 s in CI), so these run when nothing else does
pytestmark = [pytest.mark.asterisk, pytest.mark.browser, pytest.mark.quiet]

SCREENSHOTS = REPO / "artifacts" / "screenshots"
CPC = f"{LAB_ORIGIN}/landing?utm_source=google&utm_medium=cpc&utm_campaign=spring-sale&gclid=G1"
STATIC = "+74990000009"  # tests/fixtures/lab.yaml: the billboard
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run async lab helpers from these sync tests: Playwright's sync API owns this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class StaffLab:
    daemon: Daemon
    folder: Path
    shared: dict[str, Any] = field(default_factory=dict)  # what one test leaves for the next


@pytest.fixture(scope="module")
def staff_lab(
    lab_running: None,  # noqa: F811
    lab_settings: Settings,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StaffLab]:
    """`calltrack serve` on the lab, with users; no CDR read-back, so the log holds only the
    calls these tests make (and the lab's shared recordings folder is left alone)."""
    load_lab_dialplan(lab_settings)
    folder = tmp_path_factory.mktemp("staff-ui")
    assert lab_settings.asterisk is not None
    asterisk = lab_settings.asterisk.model_dump(mode="json") | {"cdr_csv": None}
    config = write_daemon_config(
        folder, users=staff_users(), asterisk=asterisk, ui={"timezone": "Europe/Moscow"}
    )
    settings = load_settings(config)
    daemon = Daemon(config, settings.http.port, folder / "daemon.log")
    daemon.start()
    try:
        run(daemon.wait_ready())
        yield StaffLab(daemon, folder)
    finally:
        daemon.stop()


def new_context(browser: Any, phone: bool = False) -> Any:
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 860}
    return browser.new_context(viewport=viewport, accept_downloads=True)


def log_in(page: Any, base: str, name: str, next_path: str = "/calls") -> None:
    page.goto(base + next_path)
    assert "/login" in page.url, "pages need a login"
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


async def visit_and_browse(daemon: Daemon) -> dict[str, Any]:
    """A paid visitor who looked at two more pages before calling."""
    visit = await daemon.visit(CPC)
    async with aiohttp.ClientSession() as http:
        for path in ("/prices", "/contacts"):
            async with http.post(
                f"{daemon.url}/api/v1/visits/{visit['session_id']}/ping",
                json={"visitor_id": visit["visitor_id"], "url": LAB_ORIGIN + path},
                headers={"Origin": LAB_ORIGIN},
            ) as response:
                assert response.status == 200
    return visit


def test_a_sipp_call_appears_in_the_open_log_without_a_reload(
    staff_lab: StaffLab, browser: Any
) -> None:
    daemon = staff_lab.daemon
    run(call(STATIC, staff_lab.folder / "busy", "busy"))  # something older in the log
    run(daemon.wait_call(STATIC))
    context = new_context(browser)
    page = Watched(context.new_page())
    page.page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    log_in(page.page, daemon.url, "ada")
    page.page.evaluate("window.__notReloaded = true")
    visit = run(visit_and_browse(daemon))
    did = visit["numbers"][0]["number"]
    run(call(did, staff_lab.folder / "paid"))
    stored = run(daemon.wait_call(did))
    row = page.page.wait_for_selector(f'tr.new[data-id="{stored["id"]}"]', timeout=20_000)
    assert page.page.evaluate("window.__notReloaded === true"), "the page was not reloaded"
    assert "google" in row.inner_text() and "Answered" in row.inner_text()
    assert page.page.inner_text("#total") == "2"
    staff_lab.shared.update(call=stored, did=did)
    run(daemon.wait_converted(stored["id"]))
    assert page.errors == []
    context.close()


def test_the_recording_plays_and_seeks_through_range_requests(
    staff_lab: StaffLab, browser: Any
) -> None:
    daemon, stored = staff_lab.daemon, staff_lab.shared["call"]
    context = new_context(browser)
    page = context.new_page()
    ranges: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda r: (
            "/recording" in r.url and ranges.append((r.status, r.headers.get("content-range", "")))
        ),
    )
    log_in(page, daemon.url, "sam", f"/calls/{stored['id']}")
    shown = re.search(r"Length (\d+):(\d\d)\b", page.inner_text("#recording"))
    assert shown, page.inner_text("#recording")
    page.evaluate(
        "() => { const p = document.getElementById('player'); p.muted = true; return p.play(); }"
    )
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=15_000)
    duration = page.evaluate("document.getElementById('player').duration")
    assert abs(duration - 7.1) < 1.0
    # SIPp plays 7.08 s; recorded bridged-only on a loaded machine it can come out a little
    # shorter ("Length 0:06" once in CI): the page's length is the file's as Chromium decodes it,
    # to the second
    assert abs(int(shown[1]) * 60 + int(shown[2]) - duration) <= 0.6
    seeked = page.evaluate(
        """() => new Promise(resolve => {
            const p = document.getElementById('player');
            p.pause();
            p.addEventListener('seeked', () => resolve(p.currentTime), {once: true});
            p.currentTime = 5.0;
        })"""
    )
    assert abs(seeked - 5.0) < 0.3
    page.wait_for_function("document.getElementById('player').readyState >= 2")
    assert any(status == 206 and value.startswith("bytes ") for status, value in ranges), ranges
    box = page.locator("#waveform").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "Math.abs(document.getElementById('player').currentTime - document.getElementById('player').duration / 4) < 0.5"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "staff-call-page.png"), full_page=True)
    context.close()


def test_tag_the_call_filter_by_the_tag_and_export_csv(staff_lab: StaffLab, browser: Any) -> None:
    daemon, stored = staff_lab.daemon, staff_lab.shared["call"]
    context = new_context(browser)
    page = context.new_page()
    log_in(page, daemon.url, "sam", f"/calls/{stored['id']}")
    page.check("input[name=tag][value=lead]")
    page.check("input[name=score][value='4']")
    page.fill("#sale", "12500")
    page.fill("#notes", "Asked for a quote for the spring sale")
    page.click("form.review button[type=submit]")
    page.wait_for_selector("text=Saved.")
    assert page.is_checked("input[name=tag][value=lead]")
    page.goto(daemon.url + "/calls")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "staff-call-log.png"))
    page.click("details.filters summary")
    page.select_option("#f-tag", "lead")
    page.click("form.filter-grid button[type=submit]")
    page.wait_for_url("**/calls?tag=lead")
    ids = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => Number(r.dataset.id))")
    assert ids == [stored["id"]], "only the tagged call"
    with page.expect_download() as download:
        page.click("text=Export CSV")
    path = download.value.path()
    rows = list(csv.DictReader(Path(path).read_text(encoding="utf-8-sig").splitlines()))
    assert [int(r["id"]) for r in rows] == [stored["id"]]
    assert rows[0]["tags"] == "lead" and rows[0]["score"] == "4"
    assert rows[0]["sale_amount"] == "12500.00" and rows[0]["source"] == "google"
    phone = new_context(browser, phone=True)
    small = phone.new_page()
    log_in(small, daemon.url, "sam")
    small.screenshot(path=str(SCREENSHOTS / "staff-call-log-phone.png"))
    phone.close()
    context.close()


def test_staff_cannot_reach_admin_pages_and_admins_can(staff_lab: StaffLab, browser: Any) -> None:
    context = new_context(browser)
    page = context.new_page()
    log_in(page, staff_lab.daemon.url, "sam")
    assert page.locator("nav a[href='/admin']").count() == 0
    response = page.goto(staff_lab.daemon.url + "/admin")
    assert response.status == 403 and "for admins" in page.inner_text("main")
    context.close()
    context = new_context(browser)
    page = context.new_page()
    log_in(page, staff_lab.daemon.url, "ada", "/admin")
    assert "Configuration status" in page.inner_text("h1")
    assert "connected" in page.inner_text("main")
    context.close()


def test_anonymous_visitors_get_401_or_the_login_page(staff_lab: StaffLab, browser: Any) -> None:
    stored = staff_lab.shared["call"]
    context = new_context(browser)
    page = context.new_page()
    response = context.request.get(f"{staff_lab.daemon.url}/api/v1/calls/{stored['id']}/recording")
    assert response.status == 401
    page.goto(f"{staff_lab.daemon.url}/calls/{stored['id']}")
    assert "/login?next=" in page.url and page.locator("#password").count() == 1
    context.close()


def test_screenshots_were_taken_just_now(staff_lab: StaffLab) -> None:
    """After the module's other tests: staff_lab puts it in the lab's group of tests, which
    one pytest-xdist worker runs in order. The shots must be this run's, taken since the
    module's daemon started, not files an earlier run left."""
    for name in ("staff-call-log.png", "staff-call-page.png", "staff-call-log-phone.png"):
        shot = SCREENSHOTS / name
        assert shot.exists() and shot.stat().st_mtime >= staff_lab.daemon.since, name
