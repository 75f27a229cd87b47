"""The ceiling on failed logins per user name holds across daemons: two apps on one database
(SQLite here, PostgreSQL in tests/postgres/test_login_ceiling_pg.py) count the failures together,
refuse the name alike (known or not), keep the others' failures when one login succeeds, and let
the user in once the window has passed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from pbx.app import build_app
from pbx.keys import LOGIN_GUARD
from pbx.ratelimit import LoginGuard
from pbx.storage.db import open_engine
from pbx.storage.tables import login_failures
from tests.api.test_login_limits import CHEAP_HASH
from tests.helpers import PASSWORD, FakeClock, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
# failures per user name from all addresses per WINDOW: small, so that a name nobody has (checked
# against a real argon2 hash, 0.2 s each) reaches it quickly
CEILING = 10
WINDOW = 300.0
CSRF = "test-login-csrf"  # the form's token only has to match its cookie
ALERT = re.compile(r'role="alert">([^<]*)<')


@dataclass
class Daemons:
    a: Client
    b: Client
    clock: FakeClock
    http: aiohttp.ClientSession
    database: str
    addresses: int = 0

    async def login(self, daemon: Client, password: str, name: str = "ada") -> tuple[int, str]:
        """One login from an address not used before (so no per-address limit applies): the
        answer's status and the page's message."""
        self.addresses += 1
        address = (
            f"10.{self.addresses // 65536}.{self.addresses // 256 % 256}.{self.addresses % 256}"
        )
        async with self.http.post(
            daemon.make_url("/login"),
            data={"csrf": CSRF, "name": name, "password": password},
            headers={"Cookie": f"calltrack_login_csrf={CSRF}", "X-Forwarded-For": address},
            allow_redirects=False,
        ) as response:
            text = await response.text()
            alert = ALERT.search(text)
            return response.status, alert.group(1) if alert else ""

    async def fail(self, daemon: Client, times: int, name: str = "ada") -> None:
        for _ in range(times):
            assert (await self.login(daemon, "guess", name))[0] == 401

    async def stored_failures(self) -> int:
        engine = open_engine(self.database)
        try:
            async with engine.connect() as conn:
                return int(await conn.scalar(select(func.count()).select_from(login_failures)) or 0)
        finally:
            await engine.dispose()


async def start_two(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], database: str | None = None
) -> AsyncIterator[Daemons]:
    """Two apps (as two daemons) on one database, one clock."""
    settings = settings_for(
        tmp_path,
        users=[{"name": "ada", "password_argon2": CHEAP_HASH}],
        http={"trusted_proxies": ["127.0.0.1"]},
    )
    if database is not None:
        settings = settings.model_copy(update={"database": database})
    await migrate(settings)
    clock = FakeClock()
    apps = [build_app(settings, clock=clock) for _ in range(2)]
    for app in apps:
        app[LOGIN_GUARD] = LoginGuard(clock, ceiling=CEILING, window=WINDOW)
    a, b = [await aiohttp_client(app) for app in apps]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield Daemons(a, b, clock, http, settings.database)


@pytest.fixture
async def daemons(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> AsyncIterator[Daemons]:
    async for pair in start_two(tmp_path, aiohttp_client):
        yield pair


async def failures_over_both_reach_the_ceiling(d: Daemons) -> None:
    await d.fail(d.a, CEILING // 2)
    await d.fail(d.b, CEILING - CEILING // 2)
    refused_a = await d.login(d.a, PASSWORD)
    refused_b = await d.login(d.b, PASSWORD)
    assert refused_a[0] == refused_b[0] == 429, "each daemon alone saw fewer than the ceiling"
    assert "Too many failed attempts" in refused_a[1]
    # a name nobody has, guessed at as often, is answered alike: the answer does not tell
    await d.fail(d.a, CEILING // 2, name="nobody")
    await d.fail(d.b, CEILING - CEILING // 2, name="nobody")
    assert await d.login(d.b, "guess", name="nobody") == refused_b
    # the refused attempts were not counted: one window later the name is free again
    d.clock.advance(WINDOW)
    assert (await d.login(d.b, PASSWORD))[0] == 303


async def a_success_keeps_the_others_failures(d: Daemons) -> None:
    await d.fail(d.a, CEILING // 2)
    await d.fail(d.b, CEILING // 2 - 1)
    assert (await d.login(d.a, PASSWORD))[0] == 303  # the real user, under the ceiling
    await d.fail(d.b, 1)  # the ceiling is reached only if the success took back its own attempt
    assert (await d.login(d.a, PASSWORD))[0] == 429


async def old_failures_are_pruned(d: Daemons) -> None:
    await d.fail(d.a, 5)
    await d.fail(d.b, 5, name="bob")
    assert await d.stored_failures() == 10
    d.clock.advance(WINDOW)
    await d.fail(d.b, 1)  # kept a second window: another daemon's clock may be behind
    assert await d.stored_failures() == 11
    d.clock.advance(WINDOW)
    await d.fail(d.b, 1)
    assert await d.stored_failures() == 2


async def test_failures_over_both_daemons_reach_the_ceiling(daemons: Daemons) -> None:
    await failures_over_both_reach_the_ceiling(daemons)


async def test_a_success_on_one_daemon_keeps_the_others_failures(daemons: Daemons) -> None:
    await a_success_keeps_the_others_failures(daemons)


async def test_failures_older_than_two_windows_are_deleted(daemons: Daemons) -> None:
    await old_failures_are_pruned(daemons)


async def test_a_daemon_whose_clock_runs_ahead_does_not_wipe_the_others_failures(
    tmp_path: Path,
) -> None:
    """Each new failure deleted those older than the window by the daemon's own clock: one
    whose clock ran a window ahead deleted every other daemon's recent failures."""
    from pbx.storage.login_failures import LoginFailures

    settings = settings_for(tmp_path)
    await migrate(settings)
    engine = open_engine(settings.database)
    failures = LoginFailures(engine)
    try:
        for i in range(5):  # a daemon on time
            await failures.add("ada", 1000.0 + i, 300.0)
        await failures.add("ada", 1000.0 + 450, 300.0)  # a daemon 450 s ahead
        _id, counted = await failures.add("ada", 1010.0, 300.0)  # the first one again
    finally:
        await engine.dispose()
    assert counted == 7, "its failures all still counted where the clock is right"
