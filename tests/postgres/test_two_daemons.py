"""Two `calltrack serve` daemons on one PostgreSQL never give one number to two sessions at once.

60 visitors arrive together, half at each daemon, for a pool of 5 numbers, then ping both
daemons alternately. Two of the first holders leave early, so their numbers expire and go to
visitors who waited with the fallback: numbers change hands while both daemons compete for them.
Two independent checks must find no overlap:

- the answers: every answer naming a number is a promise that the session holds it from the
  moment the answer arrived until at least FREEZE after the request was sent (the daemon took
  its clock in between), so such spans of different sessions for one number must not overlap;
- the history: the `leases` rows of each number, read after both daemons stopped (and wrote
  their batched extensions), must not overlap either.

test_the_checks_catch_a_double_lease shows both checks failing on a store whose allocation is
deliberately broken, so a pass here is not a check that cannot fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from bench.lease_api import free_port
from pbx.settings import Settings
from pbx.storage import number_claims
from pbx.storage.db import open_engine, upgrade
from pbx.storage.tables import leases, numbers
from pbx.storage.visits import VisitRequest, VisitStore

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "http://shop.test"
POOL = [f"+7499555000{i}" for i in range(1, 6)]
FREEZE = 6.0  # seconds: numbers of visitors who leave come back within the test
VISITORS = 60
LEAVERS = 2  # the first holders to leave after LEAVE_AFTER
FALLBACK = "+74990000099"  # shown when no number is free: not a lease
LEAVE_AFTER = 1.5
DURATION = 12.0  # of the pinging, for everyone else
PING_EVERY = 0.5


def config(database: str, recordings: Path) -> dict[str, Any]:
    return {
        "freeze_time": f"{FREEZE:g}s",
        "forward_to": "PJSIP/realline",
        "sites": [
            {
                "name": "shop",
                "origins": [ORIGIN],
                "replace": ["+7 (495) 123-45-67"],
                "pools": [{"name": "ads", "numbers": POOL}],
                "fallback": FALLBACK,
            }
        ],
        "database": database,
        "recordings": {"dir": str(recordings)},
        # each visitor has its own address, as behind a proxy
        "http": {"trusted_proxies": ["127.0.0.1"], "ping_interval": f"{PING_EVERY:g}s"},
    }


# -- the checks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """`session` holds `number` over [start, end]."""

    number: str
    session: str
    start: float
    end: float


def overlaps(spans: Iterable[Span]) -> list[tuple[Span, Span]]:
    """Pairs of spans of one number, held by different sessions, that share an instant."""
    by_number: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_number[span.number].append(span)
    found = []
    for group in by_number.values():
        group.sort(key=lambda s: s.start)
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if second.start > first.end:
                    break
                if second.session != first.session:
                    found.append((first, second))
    return found


@dataclass(frozen=True)
class Answer:
    visitor: int
    daemon: int
    session: str
    visitor_id: str
    number: str | None
    sent: float
    received: float


def promised_spans(answers: Iterable[Answer], freeze: float) -> list[Span]:
    """What the answers promised: the number is held from the answer until FREEZE after asking.

    The daemon read its clock between `sent` and `received` and held the number until at least
    that + freeze, so [received, sent + freeze] lies inside what it promised (same host, same
    clock). Answers without a number promise nothing.
    """
    return [
        Span(a.number, a.session, a.received, a.sent + freeze)
        for a in answers
        if a.number is not None
    ]


async def lease_history(database: str) -> list[Span]:
    engine = create_async_engine(database)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    leases.c.number, leases.c.session_id, leases.c.started_at, leases.c.held_until
                )
            )
            return [Span(r.number, r.session_id, r.started_at, r.held_until) for r in rows]
    finally:
        await engine.dispose()


# -- the daemons -------------------------------------------------------------------------------


def calltrack(*args: str) -> list[str]:
    return [sys.executable, "-m", "pbx.cli", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class Daemons:
    """`calltrack serve` processes on one config; stop() sends SIGINT, so they flush first."""

    def __init__(self, config_path: Path, count: int) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.urls: list[str] = []
        for i in range(count):
            port = free_port()
            log = config_path.parent / f"daemon{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    calltrack("serve", "-c", str(config_path), "--port", str(port)),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=environment(),
                )
            self.procs.append((proc, log))
            self.urls.append(f"http://127.0.0.1:{port}")

    def wait_healthy(self) -> None:
        for (proc, log), url in zip(self.procs, self.urls, strict=True):
            wait_healthy(url, proc, log)

    def stop(self) -> None:
        for proc, _log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, log in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"a daemon did not stop on SIGINT:\n{log.read_text()}")


@pytest.fixture
def two_daemons(postgres_url: str, tmp_path: Path) -> Iterator[Daemons]:
    config_path = tmp_path / "calltrack.yaml"
    config_path.write_text(json.dumps(config(postgres_url, tmp_path / "recordings")))
    subprocess.run(
        calltrack("db", "upgrade", "-c", str(config_path)),
        check=True,
        capture_output=True,
        cwd=REPO,
        env=environment(),
    )
    running = Daemons(config_path, 2)
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"daemon exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    pytest.fail(f"daemon at {url} not healthy within 60 s:\n{log.read_text()}")


# -- the visitors ------------------------------------------------------------------------------


class Visitors:
    def __init__(self, http: aiohttp.ClientSession, urls: list[str]) -> None:
        self.http = http
        self.urls = urls
        self.answers: list[Answer] = []
        self.first: dict[int, Answer] = {}
        self.leavers: set[int] = set()
        self.all_arrived = asyncio.Event()
        self.errors: list[str] = []

    async def post(self, visitor: int, daemon: int, path: str, body: dict[str, Any]) -> Answer:
        headers = {"Origin": ORIGIN, "X-Forwarded-For": f"10.1.{visitor // 250}.{visitor % 250}"}
        sent = time.time()
        async with self.http.post(self.urls[daemon] + path, json=body, headers=headers) as r:
            data = await r.json()
            received = time.time()
            if r.status != 200:
                raise AssertionError(f"visitor {visitor} {path}: {r.status} {data}")
        shown = data["numbers"][0]["number"] if data["numbers"] else None
        answer = Answer(
            visitor,
            daemon,
            data["session_id"],
            data["visitor_id"],
            None if shown == FALLBACK else shown,
            sent,
            received,
        )
        self.answers.append(answer)
        return answer

    async def visitor(self, i: int, start: asyncio.Event) -> None:
        await start.wait()
        home = i % 2
        first = await self.post(
            i, home, "/api/v1/visits", {"site": "shop", "url": f"https://shop.test/?v={i}"}
        )
        self.first[i] = first
        if len(self.first) == VISITORS:
            self.all_arrived.set()
        await self.all_arrived.wait()
        if first.number is not None and len(self.leavers) < LEAVERS:
            self.leavers.add(i)
        until = time.monotonic() + (LEAVE_AFTER if i in self.leavers else DURATION)
        ping = 0
        while time.monotonic() < until:
            await asyncio.sleep(PING_EVERY)
            ping += 1
            # alternate daemons: a lease taken by one daemon is extended by the other
            path = f"/api/v1/visits/{first.session}/ping"
            await self.post(i, (home + ping) % 2, path, {"visitor_id": first.visitor_id})

    async def run(self) -> None:
        start = asyncio.Event()
        tasks = [asyncio.create_task(self.visitor(i, start)) for i in range(VISITORS)]
        start.set()  # all at once: 60 visits racing for 5 numbers on two daemons
        await asyncio.gather(*tasks)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=VISITORS * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


# -- the tests ---------------------------------------------------------------------------------


async def test_two_daemons_never_double_lease(
    postgres_url: str, two_daemons: Daemons, http: aiohttp.ClientSession
) -> None:
    visitors = Visitors(http, two_daemons.urls)
    await visitors.run()
    await asyncio.to_thread(two_daemons.stop)  # they write their batched extensions
    answers = visitors.answers

    # the arrival: five visitors got the five numbers, the others the fallback (no number)
    firsts = list(visitors.first.values())
    given = [a.number for a in firsts if a.number is not None]
    assert sorted(given) == sorted(POOL), f"first answers gave {given}"
    assert sum(a.number is None for a in firsts) == VISITORS - len(POOL)

    # pings to either daemon keep a lease: every holder who stayed kept its number throughout
    stayers = [a for a in firsts if a.number is not None and a.visitor not in visitors.leavers]
    for first in stayers:
        mine = [a for a in answers if a.session == first.session]
        assert {a.number for a in mine} == {first.number}, f"visitor {first.visitor}: {mine}"
        assert {a.daemon for a in mine} == {0, 1}
        assert mine[-1].sent - first.sent > FREEZE  # so it was extended, not just not expired

    # the leavers' numbers went to visitors who had waited with the fallback
    released = {visitors.first[i].number for i in visitors.leavers}
    late = [a for a in answers if a.number in released and a.visitor not in visitors.leavers]
    assert late, "no released number was leased again: the test did not exercise reuse"

    # no number promised to two sessions at once, by the answers and by the history
    assert overlaps(promised_spans(answers, FREEZE)) == []
    history = await lease_history(postgres_url)
    assert overlaps(history) == []
    assert len(history) > len(POOL)  # numbers changed hands

    # the history has every promise: the lease rows reach as far as the answers promised
    last_promise: dict[tuple[str, str], float] = {}
    for a in answers:
        if a.number is not None:
            key = (a.session, a.number)
            last_promise[key] = max(last_promise.get(key, 0.0), a.sent + FREEZE)
    held: dict[tuple[str, str], float] = defaultdict(float)
    for span in history:
        key = (span.session, span.number)
        held[key] = max(held[key], span.end)
    for key, until in last_promise.items():
        assert held[key] >= until, f"{key}: promised until {until}, stored until {held[key]}"


async def test_the_checks_catch_a_double_lease(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Break the allocation (take a number whether it is free or not) and the checks fail."""
    settings = Settings.model_validate(config(postgres_url, Path("/nonexistent")))
    engine = open_engine(postgres_url)
    try:
        await upgrade(engine)
        # two stores on one database, as two daemons, both taking the pool's first number
        # whether it is free or not
        monkeypatch.setattr(
            number_claims,
            "_TAKE_LONGEST_FREE",
            update(numbers)
            .where(numbers.c.number == select(func.min(numbers.c.number)).scalar_subquery())
            .values(**number_claims._SET_LEASE)
            .returning(numbers.c.number),
        )
        stores = [VisitStore(engine, settings, time.time) for _ in range(2)]  # two "daemons"
        await stores[0].sync_numbers()
        site = settings.sites[0]
        answers = []
        for i, store in enumerate(stores):
            sent = time.time()
            visit = await store.start_visit(
                VisitRequest(site, "https://shop.test/", None, None, None, f"10.2.0.{i}")
            )
            answers.append(
                Answer(i, i, visit.session_id, visit.visitor_id, visit.number, sent, time.time())
            )
        assert answers[0].number == answers[1].number == POOL[0]  # the bug is in place
        assert len(overlaps(promised_spans(answers, FREEZE))) == 1
        assert len(overlaps(await lease_history(postgres_url))) == 1
        async with engine.connect() as conn:
            assert (await conn.scalar(text("SELECT count(*) FROM leases"))) == 2
    finally:
        await engine.dispose()


def test_overlaps_of_spans() -> None:
    """The sweep finds overlaps of one number between sessions, and nothing else."""
    spans = [
        Span("+1", "a", 0.0, 10.0),
        Span("+1", "b", 10.5, 20.0),  # after a: fine
        Span("+2", "c", 5.0, 15.0),  # another number: fine
        Span("+1", "a", 21.0, 30.0),  # a again, after b
        Span("+1", "d", 29.0, 31.0),  # overlaps a's second span
        Span("+1", "a", 29.5, 35.0),  # a with itself: not a double lease
    ]
    found = overlaps(spans)
    assert [(x.session, y.session) for x, y in found] == [("a", "d"), ("d", "a")]
