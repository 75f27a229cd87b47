"""Two `calltrack serve` daemons on one PostgreSQL deliver each webhook event once (issue 14):
200 calls are stored while both run; both claim from the outbox (FOR UPDATE SKIP LOCKED) and
the receiver counts every event id exactly once, with each daemon having delivered some."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.outbox import Outbox
from pbx.storage.visits import VisitStore
from tests.helpers import config_dict, make_settings
from tests.postgres.test_two_daemons import Daemons
from tests.webhooks.receiver import PATH, Receiver, serve
from tests.webhooks.test_delivery import SECRET, report

pytestmark = pytest.mark.postgres
EVENTS = 200
DELIVERED = re.compile(
    r'calltrack_webhook_deliveries_total\{outcome="delivered",target="crm"\} (\S+)'
)


def delivered_by(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        found = DELIVERED.search(answer.read().decode())
    return float(found[1]) if found else 0.0


async def test_two_daemons_deliver_each_event_once(postgres_url: str, tmp_path: Path) -> None:
    got = Receiver(delay=0.02)  # a receiver that takes a moment: both daemons have work
    server = await serve(got)
    hook = {"name": "crm", "url": str(server.make_url(PATH)), "secret": SECRET}
    config = config_dict(postgres_url, webhooks=[hook], recordings={"dir": str(tmp_path)})
    config_path = tmp_path / "calltrack.yaml"
    config_path.write_text(json.dumps(config))
    engine = open_engine(postgres_url)
    await upgrade(engine)
    daemons = Daemons(config_path, 2)
    try:
        await asyncio.to_thread(daemons.wait_healthy)
        settings = make_settings(postgres_url, webhooks=[hook])
        box = Outbox(settings, time.time)
        store = CallStore(engine, settings, VisitStore(engine, settings, time.time), time.time, box)
        for i in range(EVENTS):
            assert await store.store(report(f"P{i}", time.time()))
        await got.wait_for(EVENTS, within=60)
        await asyncio.sleep(2)  # time for a duplicate to show up, if any
        counts = got.by_event_id()
        assert len(counts) == EVENTS and set(counts.values()) == {1}
        shares = [delivered_by(url) for url in daemons.urls]
        assert sum(shares) == EVENTS and all(share > 0 for share in shares), shares
    finally:
        await asyncio.to_thread(daemons.stop)
        await engine.dispose()
        await server.close()
