"""On a real PostgreSQL: an old failed delivery that an admin retries ("Retry now") while the
hourly upkeep forgets settled ones. The upkeep's SELECT picked it while it was failed; the
retry committed before the DELETE, which removed it anyway: the admin was told the retry was
accepted, and the delivery was gone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Delete

from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.deliveries import Deliveries, forget_settled_before
from pbx.storage.outbox import Outbox
from pbx.storage.tables import outbox
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, make_settings
from tests.unit.test_outbox import HOOKS, report

pytestmark = pytest.mark.postgres


async def test_a_delivery_retried_while_it_is_forgotten_is_kept(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(postgres_url)
    await upgrade(engine)
    settings = make_settings(postgres_url, webhooks=HOOKS)
    clock = FakeClock()
    box = Outbox(settings, clock)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock, box)
    assert await store.store(report("k1", clock.now))
    async with engine.begin() as conn:
        await conn.execute(update(outbox).values(state="failed"))
        retried = await conn.scalar(select(outbox.c.id).where(outbox.c.target == "crm"))
    deliveries = Deliveries(engine, clock)
    real_execute = AsyncConnection.execute

    async def retry_before_the_delete(
        self: AsyncConnection, statement: Any, *a: Any, **kw: Any
    ) -> Any:
        if isinstance(statement, Delete) and statement.table is outbox:
            monkeypatch.setattr(AsyncConnection, "execute", real_execute)
            assert await deliveries.retry_now(retried, ["crm", "all"])  # another connection
        return await real_execute(self, statement, *a, **kw)

    monkeypatch.setattr(AsyncConnection, "execute", retry_before_the_delete)
    try:
        assert await forget_settled_before(engine, clock.now + 1) == 1  # the other target's
        async with engine.connect() as conn:
            kept = dict((await conn.execute(select(outbox.c.id, outbox.c.state))).all())
        assert kept == {retried: "pending"}
    finally:
        await engine.dispose()
