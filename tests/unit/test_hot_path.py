"""The visitor API's hot path (issue 15): what makes a ping cheap must not change what is stored.

- writes within WRITE_STEP of what the database has are deferred, and still land: a lease end
  before the database's end comes near, a last-seen time WRITE_STEP after the last one written;
- a flush is written in parts, and a part that fails is put back alone (nothing doubled);
- the transactions of one turn of the loop commit together, a failing one rolled back alone;
- the encoded answer is used again only while the visit shows the same numbers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from pbx.storage.db import Transactions, Tx, open_engine, upgrade
from pbx.storage.health import WriteHealth
from pbx.storage.tables import leases, page_views, sessions, visitors
from pbx.storage.write_behind import ROWS_PER_TRANSACTION, WRITE_STEP
from tests.helpers import make_settings
from tests.unit.test_visit_numbers import count
from tests.unit.test_visit_store import Harness, harness
from web_widget.answers import VisitorAnswers

FREEZE = 60.0  # tests.helpers' freeze_time


async def lease_end(h: Harness, session_id: str) -> float:
    async with h.engine.connect() as conn:
        end = await conn.scalar(
            select(leases.c.held_until).where(leases.c.session_id == session_id)
        )
    assert end is not None
    return float(end)


async def last_seen(h: Harness, session_id: str) -> float:
    async with h.engine.connect() as conn:
        seen = await conn.scalar(select(sessions.c.last_seen).where(sessions.c.id == session_id))
    assert seen is not None
    return float(seen)


async def test_a_ping_soon_after_the_last_write_is_deferred_then_lands() -> None:
    async for h in harness():
        a = await h.visit()
        start = h.clock.now
        h.clock.advance(1.0)
        await h.store.ping(a.session_id, a.visitor_id, None)
        await h.store._writes.flush(everything=False)  # the flusher's turn: not due yet
        assert await lease_end(h, a.session_id) == start + FREEZE
        assert await last_seen(h, a.session_id) == start
        h.clock.advance(WRITE_STEP)  # due now
        await h.store._writes.flush(everything=False)
        assert await lease_end(h, a.session_id) == start + 1.0 + FREEZE
        assert await last_seen(h, a.session_id) == start + 1.0


async def test_a_ping_when_the_database_end_is_near_is_written_at_once() -> None:
    async for h in harness(freeze_time="12s"):
        a = await h.visit()
        start = h.clock.now
        h.clock.advance(4.0)  # the database's end, start + 12, is less than 2 steps away
        await h.store.flush()  # a flusher that keeps up (else pings go to the database)
        await h.store.ping(a.session_id, a.visitor_id, None)
        await h.store._writes.flush(everything=False)
        assert await lease_end(h, a.session_id) == start + 4.0 + 12.0


async def test_a_full_flush_writes_what_was_deferred() -> None:
    async for h in harness():
        a = await h.visit()
        h.clock.advance(1.0)
        await h.store.ping(a.session_id, a.visitor_id, None)
        await h.store.flush()  # on the way out: everything
        assert await lease_end(h, a.session_id) == h.clock.now + FREEZE
        assert await last_seen(h, a.session_id) == h.clock.now


async def test_a_part_that_fails_is_put_back_alone_so_nothing_is_doubled() -> None:
    views = ROWS_PER_TRANSACTION + 44  # two parts
    async for h in harness(visits={"max_page_views": 1000}):
        a = await h.visit()
        await h.store.flush()
        for i in range(views):
            await h.store.ping(a.session_id, a.visitor_id, f"https://shop.test/p{i}")
        writes = h.store._writes
        real_run = writes._transactions.run
        calls = 0

        async def second_part_fails(
            work: Callable[[Tx], Any], real_run: Callable[..., Any] = real_run
        ) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            return await real_run(work)

        writes._transactions.run = second_part_fails  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            await h.store.flush()
        writes._transactions.run = real_run  # type: ignore[method-assign]
        await h.store.flush()
        stored = await count(h, select(func.count()).select_from(page_views))
        viewed = await count(h, select(sessions.c.pages_viewed))
        assert (stored, viewed) == (1 + views, 1 + views)


VISITOR = {"created_at": 0.0, "visits": 1, "first_source": "(direct)", "first_medium": "(none)"}


def _insert_visitor(visitor_id: str) -> Callable[[Tx], str]:
    def work(tx: Tx) -> str:
        tx.run(insert(visitors), {**VISITOR, "id": visitor_id})
        return visitor_id

    return work


async def test_one_turns_transactions_commit_together_and_fail_alone(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'calltrack.db'}")
    await upgrade(engine)
    transactions = Transactions(engine, WriteHealth(time.time))
    groups: list[int] = []
    real_group = transactions._run_group

    def spy(works: Any, *, wait: bool) -> list[tuple[bool, Any]]:
        groups.append(len(works))
        return real_group(works, wait=wait)

    transactions._run_group = spy  # type: ignore[method-assign]
    try:
        outcomes = await asyncio.gather(
            transactions.run(_insert_visitor("a" * 32)),
            transactions.run(_insert_visitor("a" * 32)),  # the same id: refused
            transactions.run(_insert_visitor("b" * 32)),
            return_exceptions=True,
        )
        assert groups == [3]
        assert outcomes[0] == "a" * 32 and outcomes[2] == "b" * 32
        assert isinstance(outcomes[1], Exception) and "UNIQUE" in str(outcomes[1])
        async with engine.connect() as conn:
            stored = set(await conn.scalars(select(visitors.c.id)))
        assert stored == {"a" * 32, "b" * 32}
    finally:
        transactions.close()
        await engine.dispose()


async def test_an_answer_is_encoded_again_when_the_numbers_change() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    answers = VisitorAnswers(settings)
    async for h in harness():
        written = h.store.plan(h.site.name).own
        a = await h.visit()
        first = answers.body(a, written)
        again = await h.store.ping(a.session_id, a.visitor_id, None)
        assert again is not None and answers.body(again, written) is first  # the kept bytes
        await h.visit()  # the pool's other number
        h.clock.advance(FREEZE + 1)  # both lapse; a new visit takes the one free the longest
        c = await h.visit()
        assert c.number == a.number
        moved = await h.store.ping(a.session_id, a.visitor_id, None)
        assert moved is not None and moved.number not in (None, a.number)
        shown = [n["number"] for n in json.loads(answers.body(moved, written))["numbers"]]
        assert moved.number in shown and a.number not in shown


def test_origins_map_to_the_sites_that_list_them() -> None:
    answers = VisitorAnswers(make_settings("sqlite+aiosqlite:///:memory:"))
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0]
    origin = site.origins[0]
    assert answers.allowed(origin.upper()) and set(answers.sites_for(origin)) == {site.name}
    assert not answers.allowed("https://evil.test") and not answers.sites_for("https://evil.test")


async def test_a_full_database_fails_the_whole_group_with_its_own_error(tmp_path: Path) -> None:
    """SQLite rolls the whole transaction back when the disk fills (SQLITE_FULL), savepoints
    included: every work of the group is told "full", which /healthz and the retries read, not
    the "no such savepoint" of rolling back to one that is gone; and the connection goes on."""
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'calltrack.db'}")
    await upgrade(engine)
    transactions = Transactions(engine, WriteHealth(time.time))
    conn = transactions._connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk as good as full

    def too_big(tx: Tx) -> None:
        tx.run(insert(visitors), {**VISITOR, "id": "c" * 32, "first_source": "x" * 100_000})

    try:
        outcomes = await asyncio.gather(
            transactions.run(_insert_visitor("a" * 32)),
            transactions.run(too_big),
            return_exceptions=True,
        )
        assert all(isinstance(o, Exception) and "full" in str(o) for o in outcomes), outcomes
        conn.execute(f"PRAGMA max_page_count = {pages + 1000}")  # space again
        assert await transactions.run(_insert_visitor("b" * 32)) == "b" * 32
        async with engine.connect() as db:
            assert set(await db.scalars(select(visitors.c.id))) == {"b" * 32}
    finally:
        transactions.close()
        await engine.dispose()


async def test_an_extension_that_outlived_its_lease_in_an_outage_is_not_written() -> None:
    """A ping's extension waits in the batch while the database is away; the lease runs out
    meanwhile and a new visit takes the number. The old extension must not land on the old
    lease (two leases of one number at once: a call credited to either) nor confirm it in the
    cache (the old session would go on showing a number that is someone else's)."""
    async for h in harness():
        a = await h.visit()
        start = h.clock.now
        h.clock.advance(10.0)
        await h.store.flush()  # a flusher that keeps up (else pings go to the database)
        await h.store.ping(a.session_id, a.visitor_id, None)  # written behind
        writes = h.store._writes
        real_run = writes._transactions.run

        async def away(work: Callable[[Tx], Any]) -> Any:
            raise OperationalError("UPDATE", {}, Exception("unable to open database file"))

        writes._transactions.run = away  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            await writes.flush()  # put back, to be retried
        writes._transactions.run = real_run  # type: ignore[method-assign]
        h.clock.advance(FREEZE - 5.0)  # past the database's end of a's lease (start + 60)
        [held] = h.store._cache[a.session_id].held
        number = held.number
        b, c = await h.visit(ip="10.0.0.2"), await h.visit(ip="10.0.0.3")  # both numbers again
        assert number in {h.store._cache[v.session_id].held[0].number for v in (b, c)}
        await writes.flush()  # the database is back: the retry
        async with h.engine.connect() as conn:
            spans = (
                await conn.execute(
                    select(leases.c.session_id, leases.c.started_at, leases.c.held_until).where(
                        leases.c.number == number
                    )
                )
            ).all()
        assert len(spans) == 2
        (_, _, first_end), (_, second_start, _) = sorted(spans, key=lambda s: s.started_at)
        assert first_end == start + FREEZE, "the old lease was not extended"
        assert first_end <= second_start, "never two leases of one number at once"
        assert held.confirmed_until == start + FREEZE, "nor confirmed in the cache"
