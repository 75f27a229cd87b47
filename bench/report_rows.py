"""Reports on a day with many distinct sources and terms: what anonymous visitors can make a
report hold by tagging their visits (`?utm_source=<random>`), one new row per visit.

For each `--sources` N this seeds a fresh SQLite database with N distinct sources and N distinct
terms (one visit each) on one day, starts the daemon's app in this process (aiohttp's test
server: the staff pages, the dashboard and the reports API), logs in, and times each page while
a 5 ms ticker measures the event loop's longest stall: every other request (visitor pings,
FastAGI answers) waits that long. Each page is requested `--rounds` times; the median and the
worst stall are reported.

Usage: .venv/bin/python -m bench.report_rows [--sources 20000 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).absolute().parents[1]
sys.path.insert(0, str(REPO))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from attribution.reports import day_at  # noqa: E402
from pbx.app import build_app  # noqa: E402
from pbx.keys import SETTINGS, VISITS  # noqa: E402
from pbx.storage.db import open_engine  # noqa: E402
from pbx.storage.tables import visit_channels, visit_facets  # noqa: E402
from pbx.storage.visits import VisitRequest  # noqa: E402
from tests.api.test_reports_api import SITE  # noqa: E402
from tests.api.test_staff_ui import log_in  # noqa: E402
from tests.helpers import (  # noqa: E402
    ORIGIN,
    STAFF_TOKEN,
    FakeClock,
    migrate,
    settings_for,
    staff_users,
)

PAGES = ("/reports?{range}&group_by=source", "/reports?{range}&group_by=term", "/")
API = "/api/v1/reports?{range}&group_by=source"
#: reports no rollup holds, which count the sessions one by one (at most 92 days)
SESSION_PAGES = (
    "/reports?{range}&group_by=source&landing=/p",
    "/reports?{range}&group_by=source&term=t",
    "/reports?{range}&group_by=landing&campaign=c",
    "/reports?{range}&group_by=day&referrer=r.test",
)


async def seed(folder: Path, sources: int, clock: FakeClock) -> TestClient:  # type: ignore[type-arg]
    settings = settings_for(folder, sites=[SITE], users=staff_users())
    await migrate(settings)
    day = day_at(clock.now, ZoneInfo(settings.ui.timezone))
    engine = open_engine(settings.database)
    async with engine.begin() as conn:
        for start in range(0, sources, 5000):
            ids = range(start, min(start + 5000, sources))
            channel = {"day": day, "site": "main", "pool": "", "medium": "", "campaign": ""}
            await conn.execute(
                insert(visit_channels),
                [{**channel, "source": f"s{i}", "shard": 0, "visits": 1} for i in ids],
            )
            facet = {"facet": "term", "day": day, "site": "main", "medium": ""}
            await conn.execute(
                insert(visit_facets),
                [
                    {**facet, "source": f"s{i}", "value": f"t{i}", "shard": 0, "visits": 1}
                    for i in ids
                ],
            )
    await engine.dispose()
    client = TestClient(TestServer(build_app(settings, clock=clock)))
    await client.start_server()
    response = await log_in(client, "sam")
    assert response.status == 303, await response.text()
    return client


async def seed_sessions(folder: Path, count: int, clock: FakeClock) -> TestClient:  # type: ignore[type-arg]
    """`count` visits through the visitor store (sessions and rollups as the daemon writes
    them), each with its own source and landing query, from its own address; every other one
    referred by r.test."""
    settings = settings_for(folder, sites=[SITE], users=staff_users())
    await migrate(settings)
    client = TestClient(TestServer(build_app(settings, clock=clock)))
    await client.start_server()
    site = client.app[SETTINGS].sites[0]
    for i in range(count):
        url = f"{ORIGIN}/p?utm_source=s{i}&utm_campaign=c&utm_term=t&x={i}"
        address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        referrer = f"https://r.test/{i}" if i % 2 else None  # half from one referring site
        request = VisitRequest(site, url, referrer, None, None, address)
        await client.app[VISITS].start_visit(request)
    await client.app[VISITS].flush()
    response = await log_in(client, "sam")
    assert response.status == 303, await response.text()
    return client


async def timed(client: TestClient, url: str, headers: dict[str, str]) -> tuple[float, float]:  # type: ignore[type-arg]
    """(seconds to the whole answer, the event loop's longest stall meanwhile)."""
    stall = 0.0
    running = True

    async def tick() -> None:
        nonlocal stall
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            stall = max(stall, now - last - 0.005)
            last = now

    ticker = asyncio.create_task(tick())
    start = time.perf_counter()
    response = await client.get(url, headers=headers)
    body = await response.read()
    took = time.perf_counter() - start
    running = False
    await ticker
    assert response.status == 200, body[:500]
    return took, stall


async def run(sources: int, rounds: int, sessions: bool) -> None:
    clock = FakeClock()
    day = datetime.fromtimestamp(clock.now, ZoneInfo("UTC")).date()
    folder = Path(tempfile.mkdtemp(prefix="calltrack-report-rows-"))
    try:
        if sessions:
            client = await seed_sessions(folder, sources, clock)
            urls: list[tuple[str, dict[str, str]]] = [(p, {}) for p in SESSION_PAGES]
        else:
            client = await seed(folder, sources, clock)
            urls = [(p, {}) for p in PAGES] + [(API, {"Authorization": f"Bearer {STAFF_TOKEN}"})]
        try:
            for pattern, headers in urls:
                url = pattern.format(range=f"since={day}&until={day}")
                results = [await timed(client, url, headers) for _ in range(rounds)]
                took = statistics.median(t for t, _ in results)
                stall = max(s for _, s in results)
                name = pattern.split("?")[0] + (
                    f" ({pattern.split('group_by=')[1].replace('&', ', ')})"
                    if "group_by" in pattern
                    else ""
                )
                ms = f"{took * 1000:.0f} ms | {stall * 1000:.0f} ms"
                print(f"| {sources:,} | {name} | {ms} |", flush=True)
        finally:
            await client.close()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sessions",
        action="store_true",
        help="seed real visits (N sessions, each its own source) and time the reports that"
        " count sessions one by one",
    )
    args = parser.parse_args()
    print("| distinct sources | page | median time | longest loop stall |")
    print("|---|---|---|---|")
    for sources in args.sources:
        asyncio.run(run(sources, args.rounds, args.sessions))


if __name__ == "__main__":
    main()
