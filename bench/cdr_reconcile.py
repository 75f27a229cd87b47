"""Reconciliation on a big CDR: a 1,000,000-line Master.csv, read incrementally.

Three passes of the daemon's reconciliation (pbx.pbx_link.reconcile_missed, a real migrated
SQLite database, the daemon's store): the first over the whole file (a day old, so nothing is
imported: the cost of reading and skipping it), one with nothing new, and one after 1,000 new
calls (one CDR row each) were appended, which stores them. Writes bench/results/cdr_reconcile.md.

    .venv/bin/python -m bench.cdr_reconcile [--lines 1000000]   (from the repository root)
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ami_bridge import ReportDelivery
from attribution.calls import CallReport
from pbx.pbx_link import reconcile_missed
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.errors import is_transient
from pbx.storage.visits import VisitStore
from tests.cdr_lines import many_calls
from tests.helpers import FakeClock, make_settings

AT = 1_800_000_000.0
RESULTS = Path(__file__).parent / "results" / "cdr_reconcile.md"


async def measure(lines: int, new: int, folder: Path) -> list[tuple[str, float, int]]:
    master = folder / "Master.csv"
    block = many_calls(0, 100_000, AT - 86_400).encode()
    with master.open("wb") as f:
        for _ in range(lines // 100_000):
            f.write(block)
    settings = make_settings(
        f"sqlite+aiosqlite:///{folder / 'db.sqlite'}",
        asterisk={"ami": {"secret": "x"}, "cdr_csv": str(master)},
    )
    engine = open_engine(settings.database)
    await upgrade(engine)
    clock = FakeClock(AT + 60)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)

    async def record(report: CallReport) -> bool:
        return await store.store(report) is not None

    deliver = ReportDelivery(record, is_transient)
    rows: list[tuple[str, float, int]] = []

    async def timed(name: str) -> None:
        started = time.perf_counter()
        # settle=0: the bench writes the file just before; a daemon's pass would wait a second
        stored = await reconcile_missed(
            settings, engine, deliver, clock, lost_at=AT - 600, settle=0.0
        )
        rows.append((name, time.perf_counter() - started, stored))

    try:
        await timed(f"first pass over {lines:,} lines (a day old: none imported)")
        await timed("nothing new")
        with master.open("a") as f:
            f.write(many_calls(lines, new, AT))
        await timed(f"{new:,} new lines (calls stored)")
    finally:
        await engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = asyncio.run(measure(args.lines, args.new, Path(folder)))
    day = datetime.now(UTC).date()
    table = "\n".join(f"| {name} | {seconds:.3f} s | {stored} |" for name, seconds, stored in rows)
    RESULTS.write_text(
        f"# Reconciliation on a {args.lines:,}-line CDR\n\n"
        f"{day}, {platform.node()} ({platform.machine()}), `python -m bench.cdr_reconcile`\n\n"
        "| pass (until caught up) | time | calls stored |\n|---|---:|---:|\n"
        f"{table}\n\n"
        "Target (issue 15): a pass with nothing new < 2 s.\n"
    )
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
