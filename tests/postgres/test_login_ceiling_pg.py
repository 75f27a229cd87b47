"""The ceiling on failed logins per user name, across two apps on one PostgreSQL: the scenarios of
tests/api/test_login_ceiling.py, where the database's own transactions decide the count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.api.test_login_ceiling import (
    CEILING,
    Client,
    Daemons,
    a_success_keeps_the_others_failures,
    failures_over_both_reach_the_ceiling,
    start_two,
)
from tests.helpers import PASSWORD

pytestmark = pytest.mark.postgres


@pytest.fixture
async def daemons(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> AsyncIterator[Daemons]:
    async for pair in start_two(tmp_path, aiohttp_client, postgres_url):
        yield pair


async def test_failures_over_both_daemons_reach_the_ceiling(daemons: Daemons) -> None:
    await failures_over_both_reach_the_ceiling(daemons)


async def test_a_success_on_one_daemon_keeps_the_others_failures(daemons: Daemons) -> None:
    await a_success_keeps_the_others_failures(daemons)


async def test_guesses_at_both_daemons_at_once_check_no_more_than_the_ceiling(
    daemons: Daemons,
) -> None:
    """Each attempt's failure is committed before it is counted, so concurrent daemons never
    both see room for one more: of many parallel guesses, at most the ceiling are checked."""
    statuses = await asyncio.gather(
        *(daemons.login(daemons.a if n % 2 else daemons.b, "guess") for n in range(4 * CEILING))
    )
    checked = statuses.count((401, "Wrong user name or password."))
    assert checked <= CEILING
    assert all(status in (401, 429) for status, _ in statuses)
    # only checked guesses count: when all arrive at once, some that would have been within the
    # ceiling may see the others' attempts and be refused too, leaving room for the real user
    expected = 429 if checked == CEILING else 303
    assert (await daemons.login(daemons.a, PASSWORD))[0] == expected
