"""The call page's speech results (issue 16) in real Chromium, at 1280 px and on a 390 px phone:
keyword markers on the waveform of a really converted recording play the call from their time,
the keyword list does too, the transcript (with markup in it) shows as text, automatic tags are
marked, and the call log filters by a keyword heard. Screenshots go to
pbx/staff_ui/screenshots/call-speech*.png.

The speech worker is stood for by raw rows in call_speech, call_keywords and call_tags."""

from __future__ import annotations

import json
import math
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from attribution.calls import CallReport
from pbx.keys import CALLS, ENGINE
from pbx.storage.calls import CallFilter
from pbx.storage.tables import call_keywords, call_speech, call_tags
from recordings.files import convert
from tests.helpers import PASSWORD, FakeClock, settings_for, staff_users

from .conftest import watch
from .test_reports_page import SCREENSHOTS, Server

pytestmark = pytest.mark.browser

T0 = 1_800_000_000.0
SECONDS = 12
RATE = 8000  # as MixMonitor writes
KEYWORDS = [("price", "lead", 2.0, "caller"), ("order", "sale", 8.0, "staff")]
SEGMENTS = [
    {"channel": "staff", "start": 0.4, "end": 1.8, "text": "Good morning, garden shop."},
    {"channel": "caller", "start": 1.9, "end": 4.0,
     "text": "What is the price of <script>window.pwned = 1</script> the hedge trimmer?"},
    {"channel": "staff", "start": 4.2, "end": 7.5, "text": "It is 120 with delivery."},
    {"channel": "caller", "start": 7.6, "end": 11.0, "text": "Then I will order one."},
]  # fmt: skip


def speech_wav(path: Path) -> None:
    """12 s of a 440 Hz tone whose loudness rises and falls, so the waveform has a shape."""
    frames = bytearray()
    for n in range(SECONDS * RATE):
        t = n / RATE
        loudness = 0.15 + 0.85 * abs(math.sin(math.pi * t / 4))
        frames += struct.pack("<h", int(12000 * loudness * math.sin(2 * math.pi * 440 * t)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))


class SpeechServer(Server):
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(T0)
        (tmp_path / "rec").mkdir()
        self.folder = tmp_path / "rec"
        self.settings = settings_for(tmp_path, users=staff_users(), recordings={"dir": "rec"})
        self._start()


async def seed(server: SpeechServer) -> dict[str, int]:
    """A recorded call the worker analysed, and one it did not."""
    app, at = server.app, T0
    speech_wav(server.folder / "talk.wav")
    converted = convert(server.folder / "talk.wav", "mp3")
    reports = [
        CallReport("talk", "+79161234567", "+74990000101", at, at + 20, at + 3, "ANSWER",
                   recording="talk.wav"),
        CallReport("quiet", "+79035550101", "+74990000101", at + 60, at + 90, at + 65, "ANSWER"),
    ]  # fmt: skip
    for report in reports:
        assert await app[CALLS].store(report)
    _total, rows = await app[CALLS].list(CallFilter())
    ids = {row["linkedid"]: row["id"] for row in rows}
    talk = ids["talk"]
    assert await app[CALLS].replace_recording(
        talk, "talk.wav", converted.path.name, converted.seconds, converted.peaks
    )
    async with app[ENGINE].begin() as conn:
        await conn.execute(
            insert(call_speech).values(
                call_id=talk,
                engine="vosk",
                analysed_at=at + 40,
                transcript=" ".join(str(s["text"]) for s in SEGMENTS),
                segments=json.dumps(SEGMENTS),
            )
        )
        await conn.execute(
            insert(call_keywords),
            [
                {"call_id": talk, "phrase": p, "tag": t, "at_seconds": s, "channel": c}
                for p, t, s, c in KEYWORDS
            ],
        )
        await conn.execute(insert(call_tags).values(call_id=talk, tag="lead", automatic=True))
    return ids


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    server = SpeechServer(tmp_path_factory.mktemp("speech"))
    server.ids = server.run(seed(server))  # type: ignore[attr-defined]
    yield server
    server.close()


def log_in(page: Any, base: str, path: str) -> None:
    page.goto(base + path)
    assert "/login" in page.url, "the page needs a login"
    page.fill("#name", "sam")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")


def player_time(page: Any) -> float:
    return float(page.evaluate("document.getElementById('player').currentTime"))


def wait_playing_near(page: Any, seconds: float) -> None:
    """The player plays from about `seconds` (a few hundred ms of playback may have passed)."""
    page.wait_for_function(
        f"""() => {{ const p = document.getElementById('player');
            return !p.paused && p.currentTime >= {seconds - 0.3} && p.currentTime < {seconds + 1.5}; }}""",
        timeout=10_000,
    )


def test_keywords_on_the_waveform_play_from_their_time(server: SpeechServer, browser: Any) -> None:
    talk = server.ids["talk"]  # type: ignore[attr-defined]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url, f"/calls/{talk}")
    page.evaluate("document.getElementById('player').muted = true")
    markers = page.locator("#waveform .marker")
    assert markers.count() == 2
    # the markers sit where their time is on the waveform: 2 s and 8 s of 12 s
    box = page.locator("#waveform").bounding_box()
    for marker, (_phrase, _tag, at, _channel) in zip(markers.all(), KEYWORDS, strict=True):
        mark = marker.bounding_box()
        centre = mark["x"] + mark["width"] / 2 - box["x"]
        assert abs(centre / box["width"] - at / SECONDS) < 0.02
    markers.nth(1).click()
    wait_playing_near(page, 8.0)
    page.evaluate("document.getElementById('player').pause()")
    page.locator("#keywords button", has_text="0:02").click()
    wait_playing_near(page, 2.0)
    page.evaluate("document.getElementById('player').pause()")
    assert player_time(page) < 4.0
    # the transcript: by channel and time, markup shown as text, never run
    transcript = page.locator("#transcript")
    assert "<script>window.pwned = 1</script>" in transcript.inner_text()
    assert page.evaluate("window.pwned") is None
    assert transcript.locator("li").count() == 4
    assert transcript.locator("li").nth(1).locator(".channel").inner_text().lower() == "caller"
    lead = page.locator("label.check", has=page.locator("input[value=lead]"))
    assert lead.locator(".chip.auto").inner_text() == "auto"
    assert page.is_checked("input[name=tag][value=lead]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "call-speech.png"), full_page=True)
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()


def test_the_call_log_filters_by_a_keyword_heard(server: SpeechServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url, "/calls")
    assert page.locator("#rows tr").count() == 2
    page.click("details.filters summary")
    assert page.locator("#f-keyword option").all_inner_texts() == ["any", "order", "price"]
    page.select_option("#f-keyword", "price")
    page.click("form.filter-grid button[type=submit]")
    page.wait_for_url("**/calls?keyword=price")
    ids = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => Number(r.dataset.id))")
    assert ids == [server.ids["talk"]]  # type: ignore[attr-defined]
    assert page.locator("#rows .chip.tag.auto").inner_text() == "lead"
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()


def test_the_call_page_on_a_phone(server: SpeechServer, browser: Any) -> None:
    talk = server.ids["talk"]  # type: ignore[attr-defined]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, server.url, f"/calls/{talk}")
    assert page.locator("#waveform .marker").count() == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#speech").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "call-speech-phone.png"), full_page=True)
    assert watched.problems(server.url) == [] and watched.console == []
    context.close()
