"""A session pinged at the daemon that did not start it is read back whole
(tests/session_read_back.py has the scenario). That the read is one statement outside a
transaction was checked in the server's statement log (bench/README.md), not here."""

from __future__ import annotations

import pytest

from pbx.storage.db import open_engine, upgrade
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, make_settings
from tests.session_read_back import read_back, two_pings_at_once, two_pool_site

pytestmark = pytest.mark.postgres


async def test_the_other_daemon_reads_a_session_back_as_it_is_held(postgres_url: str) -> None:
    site = make_settings(postgres_url).sites[0].model_dump(mode="json")
    settings = make_settings(postgres_url, sites=[two_pool_site(site)])
    engines = [open_engine(postgres_url) for _ in range(2)]  # two daemons
    try:
        await upgrade(engines[0])
        clock = FakeClock()
        serving, other = (VisitStore(engine, settings, clock) for engine in engines)
        await serving.sync_numbers()
        await read_back(serving, other, settings.sites[0], clock)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_two_pings_at_once_of_a_session_read_back_take_one_number(postgres_url: str) -> None:
    """On PostgreSQL the read back yields to the loop, and the second ping's read with it."""
    await two_pings_at_once(postgres_url)
