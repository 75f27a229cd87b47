"""The deliveries page's reads and its "retry now" (until the transport's
pbx/storage/deliveries.py, with `recent` and `retry_now` of the same meaning, takes them over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.outbox import FAILED, PENDING
from pbx.storage.tables import outbox

#: how long a delivery retried by hand is tried again before it is failed once more
RETRY_FOR = 24 * 3600.0


async def recent(
    engine: AsyncEngine, limit: int, state: str | None = None
) -> Sequence[dict[str, Any]]:
    """The latest deliveries, newest first, in `state` when given (without their bodies)."""
    columns = [c for c in outbox.c if c.name != "body"]
    query = select(*columns).order_by(outbox.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def retry_now(engine: AsyncEngine, outbox_id: int, now: float) -> bool:
    """Make a failed or pending delivery due now, for another RETRY_FOR; False when there is no
    such delivery or it was delivered or skipped (nothing to retry)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id, outbox.c.state.in_([FAILED, PENDING]))
            .values(state=PENDING, due_at=now, give_up_at=now + RETRY_FOR, claimed_until=None)
        )
    return bool(result.rowcount)
