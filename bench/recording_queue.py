"""The recording queues' reads on a large SQLite calls table, with and without their partial
indexes (migration 0018), in one run.

The conversion queue (`CallStore.unconverted_recordings`) and retention
(`CallStore.recordings_before`) read the calls table every few minutes, on SQLite in the event
loop: while a read runs, FastAGI answers wait. This fills a database with `--calls` calls as a
long-lived install has them: the older half past retention (their recordings already deleted),
the newer half with converted recordings; none is waiting for conversion, none has a recording
to expire (the common case, where an unindexed read scans to find nothing). It times each read
in the daemon's own store (its in-loop engine) while a 5 ms ticker measures the event loop's
longest stall; then drops the two indexes and times the same reads again.

Usage: .venv/bin/python -m bench.recording_queue [--calls 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).absolute().parents[1]
RETENTION = 90 * 86400.0  # recordings.keep_days: the older half is past it
sys.path.insert(0, str(REPO))


def fill(database: Path, count: int) -> None:
    peaks = json.dumps([i % 100 for i in range(120)])
    expired, now = count // 2, time.time()
    step = 30 * 86400 / count  # the older half a year ago, the newer in the last 15 days

    def started(i: int) -> float:
        return now - (365 if i < expired else 15) * 86400 + (i % expired) * step

    rows = (
        (
            f"1700.{i}",
            f"+7916{i:07d}",
            "+74990000101",
            started(i),
            started(i) + 60,
            "answered",
            "ANSWER",
            5.0,
            55.0,
            None if i < expired else f"1700.{i}.mp3",
            0,
            "session",
            "google",
            "cpc",
            55.0,
            peaks,
        )
        for i in range(count)
    )
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.executemany(
            "INSERT INTO calls (linkedid, caller, did, started_at, ended_at, status, dial_status,"
            " ring_seconds, talk_seconds, recording, repeat_caller, attribution, source, medium,"
            " recording_seconds, recording_peaks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.commit()
        conn.execute("ANALYZE")


async def timed_reads(database: Path, rounds: int) -> dict[str, float]:
    from pbx.settings import load_settings
    from pbx.storage.calls import CallStore
    from pbx.storage.db import open_engine
    from pbx.storage.inline_sqlite import open_inline_engine
    from pbx.storage.visits import VisitStore
    from tests.helpers import FakeClock

    settings = load_settings(database.parent / "calltrack.yaml")
    engine = open_engine(settings.database)
    clock = FakeClock(time.time())
    visits = VisitStore(engine, settings, clock)
    inline = open_inline_engine(str(database))  # as the daemon's (pbx.app): in the event loop
    store = CallStore(engine, settings, visits, clock, inline=inline)
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - began - 0.005)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    queue, retention = [], []
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            assert await store.unconverted_recordings(None, 100) == []
            queue.append(time.perf_counter() - began)
            began = time.perf_counter()
            assert await store.recordings_before(clock() - RETENTION, 100) == []
            retention.append(time.perf_counter() - began)
    finally:
        ticking.cancel()
        visits.close()
        await inline.dispose()
        await engine.dispose()
    return {
        "queue_ms": statistics.median(queue) * 1000,
        "retention_ms": statistics.median(retention) * 1000,
        "stall_ms": max(stalls) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests.helpers import migrate, settings_for

    with tempfile.TemporaryDirectory(prefix="recording-queue-") as name:
        folder = Path(name)
        (folder / "rec").mkdir()
        settings = settings_for(folder, recordings={"dir": "rec"})
        await migrate(settings)
        database = folder / "calltrack.db"
        began = time.perf_counter()
        fill(database, args.calls)
        print(f"{args.calls:,} calls written in {time.perf_counter() - began:.0f} s", flush=True)
        indexed = await timed_reads(database, args.rounds)
        with contextlib.closing(sqlite3.connect(database)) as conn:
            conn.execute("DROP INDEX ix_calls_as_recorded")
            conn.execute("DROP INDEX ix_calls_recorded_started")
        unindexed = await timed_reads(database, args.rounds)
    print(f"| reads of {args.calls:,} calls | conversion queue | retention | longest loop stall |")
    print("|---|---:|---:|---:|")
    for label, result in (("with 0018's indexes", indexed), ("without", unindexed)):
        print(
            f"| {label} | {result['queue_ms']:.2f} ms | {result['retention_ms']:.2f} ms"
            f" | {result['stall_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    asyncio.run(main())
