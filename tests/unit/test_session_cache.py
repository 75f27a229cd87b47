"""The visitor API's session cache stays the size of the live sessions: a session idle for
CACHE_IDLE_PINGS ping intervals is dropped (and read back from the database if it pings again),
one being renewed is kept, and CACHE_LIMIT bounds the rest, least recently active first. Without
this the cache, and the daemon's memory, grew with every visit (the soak's RSS slope)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from pbx.storage import visits as visits_module
from pbx.storage.tables import leases
from tests.unit.test_visit_numbers import big_pool_site
from tests.unit.test_visit_store import harness

IDLE = 4 * 10.0  # CACHE_IDLE_PINGS × http.ping_interval in these tests


async def test_an_idle_session_is_dropped_and_read_back_with_its_number() -> None:
    async for h in harness(sites=[big_pool_site(5)], http={"ping_interval": "10s"}):
        idle = await h.visit(ip="10.0.0.1")
        active = await h.visit(ip="10.0.0.2")
        h.clock.advance(30)
        assert await h.store.ping(active.session_id, active.visitor_id, None) is not None
        h.clock.advance(IDLE + 1 - 30)  # `idle` is past the limit; `active` is not
        new = await h.visit(ip="10.0.0.3")
        assert list(h.store._cache) == [active.session_id, new.session_id]
        again = await h.store.ping(idle.session_id, idle.visitor_id, None)
        assert again is not None and again.shown == idle.shown  # its number, read back
        assert list(h.store._cache)[-1] == idle.session_id
        async with h.engine.connect() as conn:  # and no second lease for it
            assert await conn.scalar(select(func.count()).select_from(leases)) == 3


async def test_a_session_being_renewed_is_kept() -> None:
    async for h in harness(sites=[big_pool_site(5)], http={"ping_interval": "10s"}):
        renewing = await h.visit(ip="10.0.0.1")
        cached = h.store._cache[renewing.session_id]
        cached.renewing = asyncio.Lock()
        await cached.renewing.acquire()
        h.clock.advance(IDLE + 1)
        await h.visit(ip="10.0.0.2")
        assert renewing.session_id in h.store._cache
        cached.renewing.release()
        h.clock.advance(1)
        await h.visit(ip="10.0.0.3")
        assert renewing.session_id not in h.store._cache


async def test_the_limit_drops_the_least_recently_active(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(visits_module, "CACHE_LIMIT", 3)
    async for h in harness(sites=[big_pool_site(10)]):
        first, second, third = [await h.visit(ip=f"10.0.0.{i}") for i in range(3)]
        assert await h.store.ping(first.session_id, first.visitor_id, None) is not None
        fourth = await h.visit(ip="10.0.0.9")
        assert list(h.store._cache) == [third.session_id, first.session_id, fourth.session_id]
        assert second.session_id not in h.store._cache
