"""What the speech worker stores: one analysis per call, the phrases heard, the automatic tags
(reports count them, webhooks hear of them), errors, transcript retention."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallReport
from pbx.settings import Settings
from pbx.storage.calls import CallFilter, CallStore
from pbx.storage.db import open_engine
from pbx.storage.outbox import Outbox
from pbx.storage.speech import SpeechStore
from pbx.storage.tables import (
    call_credits,
    call_keywords,
    call_speech,
    call_tags,
    month_versions,
    outbox,
)
from pbx.storage.visits import VisitStore
from recordings.speech import Heard, Segment, SpeechResult
from tests.helpers import FakeClock, migrate, settings_for

HOOK = {
    "name": "crm",
    "url": "http://127.0.0.1:9/crm",
    "secret": "s" * 32,
    "events": ["call.completed", "call.updated"],
}
KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}
HEARD = SpeechResult(
    [Heard("price", 1.5, "caller"), Heard("call me back", 4.25, None), Heard("price", 9.0, None)],
    "what is the price\nplease call me back",
    [
        Segment("caller", 0.5, 2.0, "what is the price"),
        Segment(None, 3.9, 5.0, "please call me back"),
    ],
)


@dataclass
class Harness:
    engine: AsyncEngine
    calls: CallStore
    speech: SpeechStore
    clock: FakeClock
    woken: list[int]

    async def call(self, linkedid: str, recording: str | None) -> int:
        at = self.clock.now
        report = CallReport(
            linkedid, "+79161234567", "+74990000101", at, at + 10, at + 2, "ANSWER", recording
        )
        assert await self.calls.store(report)
        _total, rows = await self.calls.list(CallFilter())
        return int(next(r["id"] for r in rows if r["linkedid"] == linkedid))

    async def rows(self, query: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(query)]

    async def events(self) -> list[tuple[Any, ...]]:
        return await self.rows(select(outbox.c.event, outbox.c.call_id).order_by(outbox.c.id))


SPEECH_CONFIG: dict[str, Any] = {
    "tags": ["lead", "callback", "complaint", "spam"],
    "webhooks": [HOOK],
    "speech": {"keywords": KEYWORDS},
}


async def harness(settings: Settings) -> AsyncIterator[Harness]:
    """The stores on `settings`' database (SQLite here, PostgreSQL in tests/postgres)."""
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock()
    box = Outbox(settings, clock)
    woken: list[int] = []
    box.on_added(lambda: woken.append(1))
    visits = VisitStore(engine, settings, clock)
    store = CallStore(engine, settings, visits, clock, box)
    try:
        speech = SpeechStore(engine, visits.transactions, box, clock)
        yield Harness(engine, store, speech, clock, woken)
    finally:
        visits.close()
        await engine.dispose()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for item in harness(settings_for(tmp_path, **SPEECH_CONFIG)):
        yield item


async def test_only_converted_unanalysed_recordings_wait_in_id_order(h: Harness) -> None:
    wav = await h.call("a", "a.wav")  # not converted yet
    none = await h.call("b", None)
    first = await h.call("c", "c.mp3")
    done = await h.call("d", "d.mp3")
    last = await h.call("e", "e.ogg")
    assert await h.speech.failed(done, "pocketsphinx", "corrupt")
    assert await h.speech.pending(None, 10) == [(first, "c.mp3"), (last, "e.ogg")]
    assert await h.speech.pending(first, 10) == [(last, "e.ogg")]
    assert await h.speech.pending(None, 1) == [(first, "c.mp3")]
    assert await h.speech.backlog() == 2
    assert {wav, none}.isdisjoint({first, last})


async def test_save_stores_phrases_and_adds_automatic_tags_once(h: Harness) -> None:
    call = await h.call("a", "a.mp3")
    before = len(await h.events())
    versions = dict(await h.rows(select(month_versions.c.month, month_versions.c.version)))
    assert await h.speech.save(call, "pocketsphinx", HEARD, KEYWORDS)
    assert await h.rows(
        select(
            call_keywords.c.phrase,
            call_keywords.c.tag,
            call_keywords.c.at_seconds,
            call_keywords.c.channel,
        ).order_by(call_keywords.c.at_seconds)
    ) == [
        ("price", "lead", 1.5, "caller"),
        ("call me back", "callback", 4.25, None),
        ("price", "lead", 9.0, None),
    ]
    assert await h.rows(
        select(call_tags.c.tag, call_tags.c.automatic).order_by(call_tags.c.tag)
    ) == [("callback", True), ("lead", True)]
    ((engine, transcript, segments, error),) = await h.rows(
        select(
            call_speech.c.engine,
            call_speech.c.transcript,
            call_speech.c.segments,
            call_speech.c.error,
        )
    )
    assert (engine, transcript, error) == (
        "pocketsphinx",
        "what is the price\nplease call me back",
        None,
    )
    assert json.loads(segments)[0] == {
        "channel": "caller",
        "start": 0.5,
        "end": 2.0,
        "text": "what is the price",
    }
    assert await h.rows(select(call_credits.c.tags).distinct()) == [(",callback,lead,",)], (
        "reports count them"
    )
    assert (await h.events())[before:] == [("call.updated", call)], "webhooks hear of the tags"
    assert h.woken
    assert dict(await h.rows(select(month_versions.c.month, month_versions.c.version))) == {
        month: version + 1 for month, version in versions.items()
    }, "the call's month is reported anew"
    assert len(versions) == 1

    again = SpeechResult([Heard("refund", 2.0, None)])
    assert not await h.speech.save(call, "pocketsphinx", again, KEYWORDS), "analysed once"
    assert len(await h.rows(select(call_keywords.c.id))) == 3
    assert len(await h.rows(select(call_tags.c.tag))) == 2
    assert len(await h.events()) == before + 1


async def test_no_event_when_the_call_already_had_the_tags_or_nothing_was_heard(h: Harness) -> None:
    tagged = await h.call("a", "a.mp3")
    silent = await h.call("b", "b.mp3")
    async with h.engine.begin() as conn:  # staff tagged it a lead before the analysis
        await conn.execute(call_tags.insert().values(call_id=tagged, tag="lead"))
    before = await h.events()
    assert await h.speech.save(
        tagged, "pocketsphinx", SpeechResult([Heard("price", 1.0)]), KEYWORDS
    )
    assert await h.speech.save(silent, "pocketsphinx", SpeechResult(), KEYWORDS)
    assert await h.events() == before
    assert await h.rows(select(call_tags.c.call_id, call_tags.c.tag, call_tags.c.automatic)) == [
        (tagged, "lead", False)
    ], "staff's own tag stays staff's"
    assert await h.rows(select(call_keywords.c.call_id, call_keywords.c.phrase)) == [
        (tagged, "price")
    ]


async def test_a_call_keeps_at_most_a_bounded_number_of_phrases(h: Harness) -> None:
    call = await h.call("a", "a.mp3")
    chatter = SpeechResult([Heard("price", i * 0.5) for i in range(1000)])
    assert await h.speech.save(call, "pocketsphinx", chatter, KEYWORDS)
    kept = await h.rows(select(call_keywords.c.at_seconds).order_by(call_keywords.c.at_seconds))
    assert len(kept) == 200 and kept[-1] == (199 * 0.5,), "the first ones, in time order"


async def test_a_failure_is_kept_once_and_stops_the_call_waiting(h: Harness) -> None:
    call = await h.call("a", "a.mp3")
    assert await h.speech.failed(call, "pocketsphinx", "x" * 2000)
    assert not await h.speech.failed(call, "pocketsphinx", "again")
    assert not await h.speech.save(call, "pocketsphinx", HEARD, KEYWORDS)
    ((error,),) = await h.rows(select(call_speech.c.error))
    assert error == "x" * 500
    assert await h.speech.pending(None, 10) == []
    assert await h.rows(select(call_tags.c.tag)) == []


async def test_retention_forgets_old_transcripts_but_keeps_keywords_and_tags(h: Harness) -> None:
    old = await h.call("a", "a.mp3")
    assert await h.speech.save(old, "vosk", HEARD, KEYWORDS)
    h.clock.advance(86400.0 * 10)
    new = await h.call("b", "b.mp3")
    assert await h.speech.save(new, "vosk", HEARD, KEYWORDS)
    assert await h.speech.expire_transcripts(h.clock.now - 86400.0 * 5) == 1
    assert await h.speech.expire_transcripts(h.clock.now - 86400.0 * 5) == 0
    assert await h.rows(
        select(
            call_speech.c.call_id,
            call_speech.c.transcript.is_(None),
            call_speech.c.segments.is_(None),
        ).order_by(call_speech.c.call_id)
    ) == [(old, True, True), (new, False, False)]
    assert len(await h.rows(select(call_keywords.c.id).where(call_keywords.c.call_id == old))) == 3
    assert len(await h.rows(select(call_tags.c.tag).where(call_tags.c.call_id == old))) == 2
