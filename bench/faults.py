"""Fault recovery: the database lost under lease traffic and during a call, then given back.

Two faults, each against a real `calltrack serve` (the lab config) under steady visitor traffic
(new paid visits and pings of live sessions with a new page each, at --rate requests/s):

- `sqlite-full`: the SQLite database on a 64 MB tmpfs that is filled (needs root);
- `postgres-restart`: PostgreSQL stopped, then started (a throwaway cluster).

With the lab (unless --no-calls), a call to a held tracking number is placed while the database
is away. Reported per fault: answers while it was away (all must be 200: the site's own numbers
instead of a tracking one), what /healthz said, and from the database's return: the first
stored visit (a lease), /healthz 200 again, the call stored; and that nothing was lost: every
page view answered during the run is in the database, the call stored exactly once.

    .venv/bin/python -m bench.faults [--faults sqlite-full postgres-restart] [--down 10]
                                     [--rate 40] [--no-calls] [--out bench/results/faults.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from pbx.settings import load_settings
from pbx.storage.db import open_engine
from pbx.storage.tables import page_views
from tests.asterisk.conftest import LAB_CONFIG, load_lab_dialplan
from tests.asterisk.lablock import hold_lab
from tests.e2e.conftest import LAB_ORIGIN, Daemon, call, write_daemon_config
from tests.faults.conftest import fill, tmpfs
from tests.postgres.conftest import pg_bindir, temporary_cluster

CPC = "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc&utm_campaign=faults"
POOL = ("+74990000002", "+74990000003")  # the lab config's paid pool


@dataclass
class Traffic:
    """What the visitor side saw."""

    sessions: list[dict[str, Any]] = field(default_factory=list)  # stored visits
    answers: list[tuple[float, int, bool]] = field(default_factory=list)  # (t, status, stored)
    views: dict[str, int] = field(default_factory=dict)  # session -> pages answered 200
    pages: int = 0


async def run_traffic(http: aiohttp.ClientSession, url: str, rate: float, traffic: Traffic) -> None:
    """Every third request a new visit, the others a ping with a new page; until cancelled."""
    n = 0
    while True:
        started = time.monotonic()
        n += 1
        try:
            if n % 3 == 1 or not traffic.sessions:
                body = {"site": "lab", "url": CPC}
                path = "/api/v1/visits"
            else:
                visit = traffic.sessions[n % len(traffic.sessions)]
                traffic.pages += 1
                page = f"http://127.0.0.1:8080/page/{traffic.pages}"
                body = {"visitor_id": visit["visitor_id"], "url": page}
                path = f"/api/v1/visits/{visit['session_id']}/ping"
            async with http.post(url + path, json=body, headers={"Origin": LAB_ORIGIN}) as r:
                answer = await r.json()
                stored = bool(answer.get("numbers"))
                traffic.answers.append((time.monotonic(), r.status, stored))
                if r.status == 200 and path == "/api/v1/visits" and stored:
                    traffic.sessions.append(answer)
                    traffic.views[answer["session_id"]] = 1
                elif r.status == 200 and "ping" in path:
                    traffic.views[visit["session_id"]] += 1
        except aiohttp.ClientError as exc:
            traffic.answers.append((time.monotonic(), 0, False))
            print("request failed:", exc)
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


async def health(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url + "/healthz") as response:
        return response.status, str((await response.json())["database"])


async def stored_views(database: str, sessions: list[str]) -> int:
    engine = open_engine(database)
    try:
        async with engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).where(page_views.c.session_id.in_(sessions))
            )
            return int(count or 0)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Fault:
    name: str
    database: str
    begin: Callable[[], None]
    end: Callable[[], None]


@contextlib.contextmanager
def sqlite_full() -> Iterator[Fault]:
    with tmpfs() as folder:
        filler: list[Path] = []
        yield Fault(
            "sqlite-full",
            f"sqlite+aiosqlite:///{folder / 'calltrack.db'}",
            lambda: filler.append(fill(folder)),
            lambda: filler.pop().unlink(),
        )


@contextlib.contextmanager
def postgres_restart() -> Iterator[Fault]:
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found")
    with temporary_cluster(bindir) as cluster:
        yield Fault("postgres-restart", cluster.create_database(), cluster.stop, cluster.start)


@contextlib.asynccontextmanager
async def daemon_on(database: str, work: Path, calls: bool) -> AsyncIterator[Daemon]:
    config = write_daemon_config(work, database=database)
    daemon = Daemon(config, load_settings(config).http.port, work / "daemon.log")
    daemon.start()
    try:
        if calls:
            await daemon.wait_ready(30)
        else:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    with contextlib.suppress(aiohttp.ClientError):
                        if (await health(http, daemon.url))[0] == 200:
                            break
                    await asyncio.sleep(0.1)
        yield daemon
    finally:
        daemon.stop()


async def measure(fault: Fault, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with (
        daemon_on(fault.database, work, args.calls) as daemon,
        aiohttp.ClientSession() as http,
    ):
        traffic = Traffic()
        load = asyncio.create_task(run_traffic(http, daemon.url, args.rate, traffic))
        await asyncio.sleep(3.0)
        # a number of the paid pool, held by a session that goes on pinging
        did = next(
            number
            for visit in reversed(traffic.sessions)
            if (number := visit["numbers"][0]["number"]) in POOL
        )
        fault.begin()
        began = time.monotonic()
        calling = asyncio.create_task(call(did, work)) if args.calls else None
        await asyncio.sleep(1.0)
        down_health = await health(http, daemon.url)
        await asyncio.sleep(max(0.0, args.down - 1.0))
        if calling is not None:
            await calling  # the call ends while the database is still away
        fault.end()
        ended = time.monotonic()
        first_lease = healthy = stored_call = None
        while time.monotonic() - ended < 60 and None in (first_lease, healthy, stored_call):
            now = time.monotonic() - ended
            if first_lease is None and any(t > ended and ok for t, _s, ok in traffic.answers):
                first_lease = next(t for t, _s, ok in traffic.answers if t > ended and ok) - ended
            if healthy is None and (await health(http, daemon.url))[0] == 200:
                healthy = now
            if stored_call is None:
                if not args.calls:
                    stored_call = float("nan")
                elif [c for c in await daemon.calls() if c["did"] == did]:
                    stored_call = now
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # traffic goes on after the recovery
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
        await asyncio.sleep(1.0)  # the last pings' page views are written behind
        during = [(s, ok) for t, s, ok in traffic.answers if began <= t < ended]
        views = await stored_views(fault.database, list(traffic.views))
        calls = [c for c in await daemon.calls() if c["did"] == did] if args.calls else []
        log = daemon.log.read_text()
    return {
        "fault": fault.name,
        "down_s": round(ended - began, 1),
        "answers_during": len(during),
        "non_200": sum(1 for _t, s, _ok in traffic.answers if s != 200),
        "own_numbers_during": sum(1 for s, ok in during if s == 200 and not ok),
        "healthz_during": f"{down_health[0]} {down_health[1][:60]}",
        "first_lease_s": first_lease,
        "healthz_ok_s": healthy,
        "call_stored_s": stored_call,
        "calls_stored": len(calls) if args.calls else None,
        "page_views": f"{views} / {sum(traffic.views.values())}",
        "tracebacks": log.count("Traceback"),
        "dropped_batches": log.count("dropped a write-behind batch"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:.2f}"
        return "–" if value is None else str(value)

    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--faults",
        nargs="+",
        default=["sqlite-full", "postgres-restart"],
        choices=["sqlite-full", "postgres-restart"],
    )
    parser.add_argument("--down", type=float, default=10.0, help="seconds the database is away")
    parser.add_argument("--rate", type=float, default=40.0, help="visitor requests per second")
    parser.add_argument("--no-calls", dest="calls", action="store_false")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.calls:
        hold_lab()  # the lab's ports are shared with test runs
        load_lab_dialplan(load_settings(LAB_CONFIG))
    faults = {"sqlite-full": sqlite_full, "postgres-restart": postgres_restart}
    rows = []
    for name in args.faults:
        with faults[name]() as fault, tempfile.TemporaryDirectory() as work:
            rows.append(asyncio.run(measure(fault, args, Path(work))))
            print(rows[-1])
    report = (
        f"# Fault recovery ({time.strftime('%Y-%m-%d', time.gmtime())}, {platform.node()},"
        f" {args.rate:g} visitor requests/s, database away {args.down:g} s)\n\n{table(rows)}\n"
    )
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
