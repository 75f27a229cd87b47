"""Webhooks: stored-to-delivered latency while the receiver is up (issue 14: p99 < 1 s).

The daemon's app (build_app, its cleanup contexts: the database on a fresh SQLite file, the
delivery worker with the real composer: json body, journey, recording link) stores N calls
through its CallStore, as the AMI bridge does after a hangup, at a steady rate; a local
receiver on 127.0.0.1 answers 200 and notes when each event arrived. Latency = arrival time -
the call's `stored_at`, per event id. Receiver and daemon share one process and event loop (no
lab, no network): the loop's contention is counted in, so this is pessimistic for the worker.

    .venv/bin/python -m bench.webhooks [--calls 500] [--rate 20] [--out bench/results/webhooks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from attribution.calls import CallReport
from bench.call_load import percentile
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE
from pbx.storage.tables import calls, outbox
from tests.helpers import migrate, settings_for
from tests.webhooks.receiver import PATH, Receiver, serve

SECRET = "bench-webhook-secret-0123"


async def run(count: int, rate: float) -> tuple[list[float], int]:
    """(latencies in seconds, event ids received more than once)."""
    got = Receiver()
    server = await serve(got)
    with tempfile.TemporaryDirectory() as tmp:
        hook = {"name": "crm", "url": str(server.make_url(PATH)), "secret": SECRET}
        settings = settings_for(Path(tmp), webhooks=[hook])
        await migrate(settings)
        runner = web.AppRunner(build_app(settings))
        await runner.setup()  # starts the cleanup contexts: database, delivery worker
        app = runner.app
        try:
            start = time.monotonic()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                now = time.time()
                call = CallReport(
                    f"bench-{i}", "+79161234567", "+74990000101", now - 60, now, now - 55, "ANSWER"
                )
                assert await app[CALLS].store(call)
            await got.wait_for(count, within=60)
            async with app[ENGINE].connect() as conn:
                stored = dict(
                    (
                        await conn.execute(
                            select(outbox.c.event_id, calls.c.stored_at).join(
                                calls, calls.c.id == outbox.c.call_id
                            )
                        )
                    ).all()
                )
        finally:
            await runner.cleanup()
            await server.close()
    twice = sum(1 for n in got.by_event_id().values() if n > 1)
    return [g.at - stored[g.headers["X-Calltrack-Event-Id"]] for g in got.got], twice


def report(latencies: list[float], twice: int, count: int, rate: float) -> str:
    ms = [x * 1000 for x in latencies]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    verdict = "met" if p99 < 1000 else "NOT met"
    return "\n".join(
        [
            "# Webhooks: stored-to-delivered latency",
            "",
            f"{time.strftime('%Y-%m-%d')}, {platform.node()} ({platform.machine()}),"
            f" `python -m bench.webhooks --calls {count} --rate {rate:g}`",
            "",
            f"- deliveries: {len(ms)} for {count} events, {twice} received more than once",
            f"- p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(ms):.1f} ms,"
            f" mean {statistics.fmean(ms):.1f} ms",
            f"- target p99 < 1 s: {verdict}",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="calls stored per second")
    parser.add_argument("--out", type=Path, default=Path("bench/results/webhooks.md"))
    args = parser.parse_args()
    latencies, twice = asyncio.run(run(args.calls, args.rate))
    text = report(latencies, twice, args.calls, args.rate)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
