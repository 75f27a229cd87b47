"""The json webhook carries what the speech worker heard (issue 16): a call.updated event
delivered to a local receiver has the call's keywords, transcript and automatic tags. The
worker is stood for by raw rows, as it writes them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

from attribution.calls import CallReport
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE
from pbx.storage.calls import CallFilter, ReviewChanges
from pbx.storage.tables import call_keywords, call_speech, call_tags
from tests.helpers import migrate, settings_for
from tests.webhooks.receiver import PATH, Receiver, serve

Client = TestClient  # type: ignore[type-arg]
AT = 1_800_000_000.0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    got = Receiver()
    server = await serve(got)
    yield got, server
    await server.close()


async def test_the_webhook_body_has_the_keywords_transcript_and_automatic_tags(
    tmp_path: Path,
    receiver: tuple[Receiver, TestServer],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    got, server = receiver
    hook = {
        "name": "crm",
        "url": str(server.make_url(PATH)),
        "secret": "whsec-speech-tests-0123",
        "events": ["call.completed", "call.updated"],
    }
    settings = settings_for(tmp_path, webhooks=[hook])
    await migrate(settings)
    client = await aiohttp_client(build_app(settings))
    report = CallReport("L1", "+79161234567", "+74990000101", AT, AT + 60, AT + 5, "ANSWER")
    assert await client.app[CALLS].store(report)
    await got.wait_for(1)
    completed = json.loads(got.got[0].body)["call"]
    assert (completed["keywords"], completed["transcript"], completed["automatic_tags"]) == (
        [],
        None,
        [],
    )
    _total, [call] = await client.app[CALLS].list(CallFilter())
    async with client.app[ENGINE].begin() as conn:  # what the speech worker writes
        await conn.execute(
            insert(call_speech).values(
                call_id=call["id"], engine="pocketsphinx", analysed_at=AT + 90, transcript="price?"
            )
        )
        await conn.execute(
            insert(call_keywords).values(
                call_id=call["id"], phrase="price", tag="lead", at_seconds=7.5, channel="caller"
            )
        )
        await conn.execute(insert(call_tags).values(call_id=call["id"], tag="lead", automatic=True))
    # staff score the call: call.updated, with the tag kept
    await client.app[CALLS].amend(call["id"], ReviewChanges(score=4), "ada")
    await got.wait_for(2)
    body = json.loads(got.got[1].body)
    assert body["event"] == "call.updated"
    updated = body["call"]
    assert updated["keywords"] == [
        {"phrase": "price", "tag": "lead", "at_seconds": 7.5, "channel": "caller"}
    ]
    assert updated["transcript"] == "price?"
    assert (updated["tags"], updated["automatic_tags"]) == (["lead"], ["lead"])
