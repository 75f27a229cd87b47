"""On a real PostgreSQL: two daemons' link keys follow a rotation (its upsert is PostgreSQL's
own construct), and a revoked key opens nothing in either."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from integrations.recording_links import check, signature
from pbx.storage.link_keys import KEY_REFRESH, LinkKeys, rotate
from pbx.storage.tables import link_keys
from tests.helpers import FakeClock, visit_store

pytestmark = pytest.mark.postgres


async def test_both_daemons_take_a_rotated_key_and_drop_a_revoked_one(postgres_url: str) -> None:
    async with visit_store(postgres_url) as db:
        clock = FakeClock()
        first, second = (LinkKeys(db.engine, clock, 7 * 86400.0) for _ in "ab")
        old = await first.key()
        assert await second.key() == old
        expires = int(clock.now) + 3600
        sent = signature(old, 7, expires)
        await rotate(db.engine, clock.now, revoke=False)
        clock.advance(KEY_REFRESH)
        new = await second.key()
        assert new != old and await first.key() == new
        assert (
            check((await second.ring()).opening(expires), 7, str(expires), sent, clock.now) is None
        )
        await rotate(db.engine, clock.now, revoke=True)
        clock.advance(KEY_REFRESH)
        for daemon in (first, second):
            ring = await daemon.ring()
            assert ring.previous is None and ring.current not in (old, new)
            assert (
                check(ring.opening(expires), 7, str(expires), sent, clock.now)
                == "this link is not valid"
            )


async def test_rotations_at_once_follow_each_other(postgres_url: str) -> None:
    """Each rotation locks the current key's row: two at once neither fail on the previous
    key's row nor lose a key in between (the second keeps the first's as its previous)."""
    async with visit_store(postgres_url) as db:
        clock = FakeClock()
        keys = LinkKeys(db.engine, clock, 7 * 86400.0)
        await asyncio.gather(*(rotate(db.engine, clock.now, revoke=False) for _ in range(4)))
        async with db.engine.connect() as conn:
            names = sorted((await conn.execute(select(link_keys.c.name))).scalars())
        assert names == ["recordings", "recordings:previous"]
        ring = await keys.ring()
        assert ring.previous is not None and ring.previous != ring.current
