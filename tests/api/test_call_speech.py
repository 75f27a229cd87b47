"""Speech results (issue 16) on the staff pages, the staff API and in reports, through the real
app on SQLite. The speech worker is stood for by raw rows in call_speech, call_keywords and
call_tags.automatic, as it writes them; every expected value is written out here."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from pbx.app import build_app
from pbx.keys import CALLS, ENGINE
from pbx.storage.call_credits import refresh_facts
from pbx.storage.tables import call_keywords, call_speech, call_tags
from tests.api.test_staff_ui import log_in, page_csrf, store_call
from tests.helpers import STAFF_TOKEN, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
NOW = 1_800_000_000.0  # FakeClock's start: 2027-01-15T08:00:00Z
Heard = tuple[str, str, float, str | None]  # phrase, tag, at_seconds, channel


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    (tmp_path / "rec").mkdir()
    settings = settings_for(tmp_path, users=staff_users(), recordings={"dir": "rec"})
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=FakeClock(NOW)))


async def analysed(
    client: Client,
    call_id: int,
    heard: Sequence[Heard] = (),
    *,
    automatic: Sequence[str] = (),
    transcript: str | None = None,
    segments: list[dict[str, Any]] | None = None,
    error: str | None = None,
) -> None:
    """What the speech worker stores for an analysed call, as raw rows."""
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(
            insert(call_speech).values(
                call_id=call_id,
                engine="pocketsphinx",
                analysed_at=NOW + 60,
                transcript=transcript,
                segments=json.dumps(segments) if segments is not None else None,
                error=error,
            )
        )
        for phrase, tag, at, channel in heard:
            await conn.execute(
                insert(call_keywords).values(
                    call_id=call_id, phrase=phrase, tag=tag, at_seconds=at, channel=channel
                )
            )
        for tag in automatic:
            await conn.execute(insert(call_tags).values(call_id=call_id, tag=tag, automatic=True))
        await refresh_facts(conn, call_id)


async def tag_rows(client: Client, call_id: int) -> dict[str, bool]:
    """The call's tags as stored: tag → automatic."""
    async with client.app[ENGINE].connect() as conn:
        rows = await conn.execute(
            select(call_tags.c.tag, call_tags.c.automatic).where(call_tags.c.call_id == call_id)
        )
        return {row.tag: bool(row.automatic) for row in rows}


async def api_calls(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/calls", params=params, headers=AUTH)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


# --- the staff API's call JSON ----------------------------------------------------------------


async def test_the_call_json_has_keywords_in_time_order_the_transcript_and_automatic_tags(
    client: Client,
) -> None:
    heard_call = await store_call(client, "s1")
    quiet_call = await store_call(client, "s2", caller="+79035550101")
    # stored out of time order, as two channels' results may be
    heard = [("refund", "complaint", 31.5, "caller"), ("price", "lead", 4.25, None)]
    await analysed(client, heard_call, heard, automatic=["lead"], transcript="what is the price")
    async with client.app[ENGINE].begin() as conn:  # a tag staff gave
        await conn.execute(insert(call_tags).values(call_id=heard_call, tag="sale"))
    calls = {c["id"]: c for c in (await api_calls(client))["calls"]}
    call = calls[heard_call]
    assert call["keywords"] == [
        {"phrase": "price", "tag": "lead", "at_seconds": 4.25, "channel": None},
        {"phrase": "refund", "tag": "complaint", "at_seconds": 31.5, "channel": "caller"},
    ]
    assert call["transcript"] == "what is the price"
    assert call["tags"] == ["lead", "sale"]  # still plain strings
    assert call["automatic_tags"] == ["lead"]
    quiet = calls[quiet_call]
    assert (quiet["keywords"], quiet["transcript"], quiet["automatic_tags"]) == ([], None, [])


async def test_the_api_filters_calls_by_a_keyword_heard(client: Client) -> None:
    price = await store_call(client, "s1")
    refund = await store_call(client, "s2", caller="+79035550101")
    await store_call(client, "s3", caller="+74957654321")  # not analysed
    await analysed(client, price, [("price", "lead", 3.0, None), ("price", "lead", 9.0, None)])
    await analysed(client, refund, [("refund", "complaint", 5.0, None)])
    answer = await api_calls(client, keyword="price")
    assert answer["total"] == 1 and [c["id"] for c in answer["calls"]] == [price]
    assert (await api_calls(client, keyword="call me back"))["total"] == 0
    assert (await api_calls(client, keyword=""))["total"] == 3
    response = await client.get("/api/v1/calls", params={"keyword": "x" * 129}, headers=AUTH)
    assert response.status == 400
    assert "keyword" in (await response.json())["error"]
    assert (await client.get("/api/v1/calls", params={"keyword": "price"})).status == 401


# --- staff tag edits keep the automatic marker ------------------------------------------------


async def test_a_crm_patch_keeps_a_kept_automatic_tag_automatic_and_a_removed_one_gone(
    client: Client,
) -> None:
    call = await store_call(client, "s1")
    await analysed(client, call, [("price", "lead", 3.0, None)], automatic=["lead"])

    async def patch(tags: list[str]) -> dict[str, Any]:
        response = await client.patch(f"/api/v1/calls/{call}", json={"tags": tags}, headers=AUTH)
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    kept = await patch(["lead", "sale"])
    assert (kept["tags"], kept["automatic_tags"]) == (["lead", "sale"], ["lead"])
    assert await tag_rows(client, call) == {"lead": True, "sale": False}
    removed = await patch(["sale"])
    assert (removed["tags"], removed["automatic_tags"]) == (["sale"], [])
    assert await tag_rows(client, call) == {"sale": False}
    again = await patch(["lead", "sale"])  # given back by staff: now staff's tag
    assert await tag_rows(client, call) == {"lead": False, "sale": False}
    assert again["automatic_tags"] == []
    # a patch without tags leaves them, and their markers, alone
    await analysed_tag(client, call, "spam")
    response = await client.patch(f"/api/v1/calls/{call}", json={"score": 2}, headers=AUTH)
    assert response.status == 200
    assert await tag_rows(client, call) == {"lead": False, "sale": False, "spam": True}


async def test_a_crm_patch_may_keep_an_automatic_tag_that_is_not_configured(client: Client) -> None:
    call = await store_call(client, "s1")  # `tags` (the default) has no "complaint"
    await analysed(client, call, [("refund", "complaint", 3.0, None)], automatic=["complaint"])
    kept = await client.patch(
        f"/api/v1/calls/{call}", json={"tags": ["complaint", "lead"]}, headers=AUTH
    )
    assert kept.status == 200, await kept.text()
    assert await tag_rows(client, call) == {"complaint": True, "lead": False}
    refused = await client.patch(f"/api/v1/calls/{call}", json={"tags": ["vip"]}, headers=AUTH)
    assert refused.status == 400 and "vip" in (await refused.json())["error"]
    assert await tag_rows(client, call) == {"complaint": True, "lead": False}


async def analysed_tag(client: Client, call_id: int, tag: str) -> None:
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(insert(call_tags).values(call_id=call_id, tag=tag, automatic=True))


async def test_the_review_form_keeps_a_kept_automatic_tag_and_drops_a_removed_one(
    client: Client,
) -> None:
    call = await store_call(client, "s1")
    await analysed(client, call, [("price", "lead", 3.0, None)], automatic=["lead"])
    await log_in(client)
    page = await (await client.get(f"/calls/{call}")).text()
    assert re.search(r'value="lead" checked> lead <span class="chip auto"', page)
    csrf = await page_csrf(client, f"/calls/{call}")
    form = {"csrf": csrf, "tag": ["lead", "spam"], "score": "3"}
    saved = await client.post(f"/calls/{call}", data=form, allow_redirects=False)
    assert saved.status == 303
    assert await tag_rows(client, call) == {"lead": True, "spam": False}
    form = {"csrf": csrf, "tag": ["spam"], "score": "3"}
    assert (await client.post(f"/calls/{call}", data=form, allow_redirects=False)).status == 303
    assert await tag_rows(client, call) == {"spam": False}
    page = await (await client.get(f"/calls/{call}")).text()
    assert 'class="chip auto"' not in page


# --- the call log's keyword filter ------------------------------------------------------------


async def test_the_call_log_filters_by_keyword_and_lists_the_phrases_heard(client: Client) -> None:
    price = await store_call(client, "s1")
    both = await store_call(client, "s2", caller="+79035550101")
    await store_call(client, "s3", caller="+74957654321")
    await analysed(client, price, [("price", "lead", 3.0, None)])
    await analysed(client, both, [("refund", "complaint", 2.0, None), ("price", "lead", 8.0, None)])
    await log_in(client)

    async def callers(query: str) -> set[str]:
        response = await client.get("/calls?" + query)
        assert response.status == 200, query
        return set(re.findall(r">(\+\d{11})</a>", await response.text()))

    assert await callers("keyword=price") == {"+79161234567", "+79035550101"}
    assert await callers("keyword=refund") == {"+79035550101"}
    assert await callers("keyword=refund&caller=9161") == set()
    assert await callers("keyword=") == {"+79161234567", "+79035550101", "+74957654321"}
    page = await (await client.get("/calls")).text()
    select_html = page[page.index('<select id="f-keyword"') :]
    select_html = select_html[: select_html.index("</select>")]
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select_html) == ["any", "price", "refund"]
    response = await client.get("/calls?keyword=" + "x" * 129)
    assert response.status == 400 and "keyword: at most 128 characters" in await response.text()


# --- the call page ----------------------------------------------------------------------------

SEGMENTS = [
    {"channel": "staff", "start": 0.5, "end": 2.0, "text": "hello, shop"},
    {"channel": "caller", "start": 2.5, "end": 5.0, "text": "<script>alert(1)</script> price?"},
]


async def test_the_call_page_shows_markers_keywords_and_the_escaped_transcript(
    client: Client, tmp_path: Path
) -> None:
    (tmp_path / "rec" / "r1.mp3").write_bytes(bytes(2000))
    call = await store_call(client, "r1", recording="r1.mp3")
    await client.app[CALLS].replace_recording(call, "r1.mp3", "r1.mp3", 10.0, [10, 100, 50, 20])
    heard = [("price", "lead", 4.0, "caller"), ("order", "sale", 10.0, "staff")]
    await analysed(client, call, heard, automatic=["lead"], segments=SEGMENTS, transcript="x")
    await log_in(client)
    page = await (await client.get(f"/calls/{call}")).text()
    # 4 peaks are 12 units wide: 4 s of 10 s is at 4.8, the end at 12
    markers = re.findall(r'<g class="marker" data-at="([0-9.]+)">.*?x1="([0-9.]+)"', page)
    assert markers == [("4.0", "4.8"), ("10.0", "12.0")]
    assert re.search(r'data-at="4.0">0:04</button>\s*<strong>price</strong> <span', page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; price?" in page and "<script>alert" not in page
    assert 'data-at="2.5">0:02</button>' in page and "hello, shop" in page
    assert "speech analysis failed" not in page


async def test_a_failed_analysis_says_why_and_an_unanalysed_call_shows_nothing(
    client: Client,
) -> None:
    failed = await store_call(client, "s1")
    plain = await store_call(client, "s2", caller="+79035550101")
    await analysed(client, failed, error="corrupt audio <b>")
    await analysed(client, plain, transcript="just text <i>")
    untouched = await store_call(client, "s3", caller="+74957654321")
    await log_in(client)
    page = await (await client.get(f"/calls/{failed}")).text()
    assert "speech analysis failed: corrupt audio &lt;b&gt;" in page
    page = await (await client.get(f"/calls/{plain}")).text()
    assert '<p class="transcript" id="transcript">just text &lt;i&gt;</p>' in page
    page = await (await client.get(f"/calls/{untouched}")).text()
    assert 'id="speech"' not in page


async def test_segments_not_in_the_shape_the_worker_writes_show_the_transcript_not_a_500(
    client: Client,
) -> None:
    call = await store_call(client, "s1")
    await analysed(client, call, transcript="plain words")
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(call_speech.update().values(segments='[{"start": "soon"}]'))
    await log_in(client)
    response = await client.get(f"/calls/{call}")
    assert response.status == 200
    assert '<p class="transcript" id="transcript">plain words</p>' in await response.text()


# --- reports count by the automatic tags --------------------------------------------------------


async def test_reports_count_a_call_whose_lead_tag_a_keyword_added(client: Client) -> None:
    # missed: no talk time, so only a tag can make them leads
    lead = await store_call(client, "s1", answered=False)
    await store_call(client, "s2", caller="+79035550101", answered=False)

    async def leads() -> int:
        response = await client.get(
            "/api/v1/reports",
            params={"since": "2027-01-15", "until": "2027-01-15", "group_by": "source"},
            headers=AUTH,
        )
        assert response.status == 200, await response.text()
        rows = {row["key"]: row for row in (await response.json())["rows"]}
        return int(rows["billboard"]["leads"])

    assert await leads() == 0
    await analysed(client, lead, [("price", "lead", 3.0, None)], automatic=["lead"])
    assert await leads() == 1


async def test_a_converted_recording_not_yet_analysed_says_so_when_speech_is_on(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    (tmp_path / "rec").mkdir()
    settings = settings_for(
        tmp_path,
        users=staff_users(),
        recordings={"dir": "rec"},
        speech={"keywords": {"price": "lead"}},
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock(NOW)))
    converted = await store_call(client, "w1", recording="w1.mp3")
    as_recorded = await store_call(client, "w2", caller="+79035550101", recording="w2.wav")
    await log_in(client)
    page = await (await client.get(f"/calls/{converted}")).text()
    assert 'id="speech-waiting"' in page
    # converted before it was stored (read again from the CDR after a restore): no length
    # known, and nothing will prepare it
    assert "Being prepared" not in page
    page = await (await client.get(f"/calls/{as_recorded}")).text()
    assert 'id="speech"' not in page  # not converted yet: nothing to analyse
    assert "Being prepared for the browser" in page
