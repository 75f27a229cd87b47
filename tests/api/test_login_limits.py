"""The login limits under attack, through a real server: parallel guesses, lock-outs of a known
user from other addresses, and an event loop that stays responsive while passwords are hashed."""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from pbx import auth
from pbx.app import build_app
from pbx.keys import LOGIN_GUARD
from pbx.ratelimit import LoginGuard
from tests.helpers import PASSWORD, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
# cheap to verify, so the attack tests measure the limits, not argon2's cost
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


async def _client(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    users: list[dict[str, str]],
    guard: LoginGuard | None = None,
) -> Client:
    settings = settings_for(tmp_path, users=users, http={"trusted_proxies": ["127.0.0.1"]})
    await migrate(settings)
    app = build_app(settings, clock=FakeClock())
    if guard is not None:
        app[LOGIN_GUARD] = guard
    return await aiohttp_client(app)


@pytest.fixture
async def cheap(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    return await _client(tmp_path, aiohttp_client, [{"name": "ada", "password_argon2": CHEAP_HASH}])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """No cookie jar and no connection cap: every request carries exactly the cookie it is given."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        yield http


async def login_csrf(client: Client) -> str:
    match = CSRF_FIELD.search(await (await client.get("/login")).text())
    assert match
    return match.group(1)


async def attempt(
    client: Client,
    session: aiohttp.ClientSession,
    csrf: str,
    password: str,
    *,
    name: str = "ada",
    address: str = "192.0.2.1",
) -> int:
    """One login from `address` (as the trusted proxy reports it); the answer's status."""
    async with session.post(
        client.make_url("/login"),
        data={"csrf": csrf, "name": name, "password": password},
        headers={"Cookie": f"calltrack_login_csrf={csrf}", "X-Forwarded-For": address},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status


async def test_parallel_guesses_are_counted_before_the_password_is_checked(
    cheap: Client, session: aiohttp.ClientSession
) -> None:
    """300 guesses at once, the right password in the middle: it must not get in."""
    csrf = await login_csrf(cheap)
    passwords = [f"guess {i}" for i in range(300)]
    passwords[150] = PASSWORD
    statuses = await asyncio.gather(*(attempt(cheap, session, csrf, p) for p in passwords))
    counts = Counter(statuses)
    assert counts[303] == 0, "the right password got in after the limit"
    assert counts[401] <= 10, f"more passwords were checked than the limit allows: {counts}"
    assert counts[429] >= 290


async def test_the_limit_holds_even_when_every_guess_gets_a_hashing_slot(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    session: aiohttp.ClientSession,
) -> None:
    """The count, not the hashing bound, is what stops the guesses: with room for every hash at
    once, still only 10 passwords are checked."""
    users = [{"name": "ada", "password_argon2": CHEAP_HASH}]
    guard = LoginGuard(FakeClock(), hash_slots=500, hash_queue=0)
    client = await _client(tmp_path, aiohttp_client, users, guard)
    csrf = await login_csrf(client)
    passwords = [f"guess {i}" for i in range(300)]
    passwords[150] = PASSWORD
    counts = Counter(await asyncio.gather(*(attempt(client, session, csrf, p) for p in passwords)))
    assert counts == Counter({401: 10, 429: 290})


async def test_failures_from_other_addresses_do_not_lock_the_user_out(
    cheap: Client, session: aiohttp.ClientSession
) -> None:
    csrf = await login_csrf(cheap)
    for _ in range(10):
        assert await attempt(cheap, session, csrf, "guess", address="198.51.100.7") == 401
    assert await attempt(cheap, session, csrf, PASSWORD, address="198.51.100.7") == 429
    assert await attempt(cheap, session, csrf, PASSWORD, address="192.0.2.1") == 303


async def test_ipv6_addresses_of_one_network_share_a_limit(
    cheap: Client, session: aiohttp.ClientSession
) -> None:
    """A /64 is one subscriber: 2^64 addresses must not mean 2^64 fresh limits."""
    csrf = await login_csrf(cheap)
    for i in range(10):
        assert (
            await attempt(cheap, session, csrf, "guess", name=f"u{i}", address=f"2001:db8::{i}")
            == 401
        )
    assert await attempt(cheap, session, csrf, "guess", name="v", address="2001:db8::ff") == 429
    assert await attempt(cheap, session, csrf, "guess", name="v", address="2001:db8:1::1") == 401


async def _healthz_ms(client: Client, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        assert (await client.get("/healthz")).status == 200
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return times


async def _hash_ms() -> float:
    """What one argon2 hash takes (in a thread, as the login guard runs them)."""
    started = time.perf_counter()
    await asyncio.to_thread(PasswordHasher().hash, "guess")
    return (time.perf_counter() - started) * 1000


async def test_a_flood_of_logins_does_not_stall_the_event_loop(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """400 logins with real argon2 hashes, each from its own address as a new name, so no
    failure limit stops them: the excess is refused at once, no hash runs in the event loop's
    thread, and /healthz stays quick."""
    checked_in: list[int] = []  # the thread of each password check
    real = auth.verify_password

    def verify_password(hashed: str, password: str) -> bool:
        checked_in.append(threading.get_ident())
        return real(hashed, password)

    monkeypatch.setattr(auth, "verify_password", verify_password)
    client = await _client(tmp_path, aiohttp_client, staff_users())
    csrf = await login_csrf(client)
    one_hash = min([await _hash_ms() for _ in range(3)])  # here, now, one at a time
    idle = statistics.median(await _healthz_ms(client, 30))
    flood = asyncio.gather(
        *(
            attempt(
                client,
                session,
                csrf,
                "guess",
                name=f"user{i}",
                address=f"10.0.{i // 250}.{i % 250}",
            )
            for i in range(400)
        )
    )
    busy = statistics.median(await _healthz_ms(client, 30))
    counts = Counter(await flood)
    assert checked_in, "no password was checked"
    assert threading.get_ident() not in checked_in, "a password was checked in the event loop"
    assert counts[429] > 300, f"excess hashing must be refused: {counts}"
    assert set(counts) <= {401, 429}
    # what a monitor sees; its bound grows with the machine's load, as a hash's time does (the
    # other pytest worker may be busy beside it). It cannot show a hash run in the loop: the
    # test's own client runs in the same loop, so its clock starts once such a stall is over
    bound = max(5 * idle, idle + 25, idle + one_hash / 3)
    assert busy < bound, (
        f"healthz p50 {idle:.1f} ms idle, {busy:.1f} ms busy (a hash: {one_hash:.0f} ms)"
    )


async def test_a_forwarded_for_line_of_the_clients_own_does_not_change_its_address(
    cheap: Client, session: aiohttp.ClientSession
) -> None:
    """HAProxy's `option forwardfor` adds a line of its own after the client's instead of
    appending to it; only the first line was read, the client's, so each guess from a made-up
    address had a limit of its own (and a victim's address could be locked out at will)."""
    from multidict import CIMultiDict

    csrf = await login_csrf(cheap)
    statuses = []
    for i in range(12):
        headers = CIMultiDict(
            [
                ("Cookie", f"calltrack_login_csrf={csrf}"),
                ("X-Forwarded-For", f"203.0.113.{i}"),  # the client's own, made up each time
                ("X-Forwarded-For", "198.51.100.9"),  # the proxy's: where it came from
            ]
        )
        async with session.post(
            cheap.make_url("/login"),
            data={"csrf": csrf, "name": "ada", "password": f"guess {i}"},
            headers=headers,
            allow_redirects=False,
        ) as response:
            await response.read()
            statuses.append(response.status)
    assert Counter(statuses) == Counter({401: 10, 429: 2}), statuses
