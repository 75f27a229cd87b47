"""Benchmark of `calltrack pools --recommend` (issue 13, "Performance": 28 days of 20,000
visits a day in under 10 s on SQLite).

The data (bench/pool_data.py, seeded raw rows, the pool a little too small so that afternoons
run out) is generated once and cached as a SQLite file under /tmp named by its parameters. Then,
in each of `--rounds` rounds (the machine is noisy: the median and the range are reported):

- the command as an admin runs it, `calltrack pools -c CONFIG --recommend --json --since ..
  --until ..`, in a subprocess: wall time, Python's start-up included; its JSON is checked
  against what the generator decided (visits, peak held, visits not tracked, calls);
- the same work in process, split: the read (`pool_records`) and the compute (`advise` per pool);
- the baseline the issue warns about: one direct simulation per pool size (a heap pass per
  size, as a naive implementation would run for each point of the curve), timed at a handful of
  sizes; the cost of the whole curve 1..peak for each freeze time the advice replays is
  extrapolated from it (and the tracked counts it finds are checked against the command's curve).

Usage:
  .venv/bin/python -m bench.pool_advice                      # 28 days x 20,000 visits a day
  .venv/bin/python -m bench.pool_advice --days 2 --visits-per-day 2000 --out /tmp/x.md
  .venv/bin/python -m bench.pool_advice --profile            # where the in-process time goes
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import heapq
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from attribution.pool_advice import DEFAULT_TARGET, FREEZE_STEPS, PoolRecord, advise
from bench import pool_data
from bench.reports import machine
from pbx.pool_sizing import pool_advice
from pbx.settings import Settings
from pbx.storage.db import open_engine, upgrade
from pbx.storage.pool_usage import pool_records

REPO = Path(__file__).absolute().parents[1]
TARGET_S = 10.0
#: the freeze times `advise` replays: the table's steps and the one the advice suggests (the
#: current freeze time, the default 15 minutes, is one of the steps)
FREEZE_REPLAYS = len(FREEZE_STEPS) + 1
NAIVE_SIZES = 5  # pool sizes the naive baseline is timed at, spread over 1..peak


# -- the data ------------------------------------------------------------------------------------


def data(shape: pool_data.Shape) -> tuple[Path, pool_data.Facts, float]:
    """The cached SQLite file of `shape` (generated when missing), what the generator decided and
    how long writing it took (kept beside the file)."""
    path = Path(tempfile.gettempdir()) / f"calltrack-bench-pool-advice-{shape.tag()}.db"
    kept = path.with_suffix(".json")
    if not path.exists():
        partial = path.with_suffix(".partial")
        for leftover in path.parent.glob(f"{partial.name}*"):
            leftover.unlink()
        started = time.monotonic()
        facts = asyncio.run(_generate(f"sqlite+aiosqlite:///{partial}", shape))
        kept.write_text(json.dumps(facts.as_json() | {"write_s": time.monotonic() - started}))
        os.replace(partial, path)
    asyncio.run(_upgrade(f"sqlite+aiosqlite:///{path}"))  # a file cached by older code
    stored = json.loads(kept.read_text())
    write_s = stored.pop("write_s")
    return path, pool_data.Facts(**stored), write_s


async def _upgrade(database: str) -> None:
    engine = open_engine(database)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _generate(database: str, shape: pool_data.Shape) -> pool_data.Facts:
    engine = open_engine(database)
    try:
        await upgrade(engine)  # the project's own migrations, as `calltrack db upgrade`
        return await pool_data.write(engine, shape)
    finally:
        await engine.dispose()


# -- what is timed -------------------------------------------------------------------------------


@dataclass
class Command:
    seconds: float
    #: the process's peak resident memory (the kernel's ru_maxrss): SQLite's pages of the
    #: database (mmap_size, cache_size) count in it as much as Python's objects
    max_rss_mb: float
    answer: dict[str, Any]


#: run in a process of its own from a checkout: the Python heap's peak (tracemalloc) over the
#: command's work, `pool_advice` (the read and the replays), which ru_maxrss cannot tell apart
#: from the database's pages
HEAP_SCRIPT = """
import asyncio, json, sys, tracemalloc
from datetime import date
from pbx.pool_sizing import pool_advice
from pbx.settings import Settings
from pbx.storage.db import open_engine

async def main():
    settings = Settings.model_validate(json.loads(sys.argv[1]))
    engine = open_engine(settings.database, read_only=True)
    tracemalloc.start()
    await pool_advice(engine, settings, date.fromisoformat(sys.argv[2]),
                      date.fromisoformat(sys.argv[3]), 0.99)
    print(tracemalloc.get_traced_memory()[1])
    await engine.dispose()

asyncio.run(main())
"""


def heap_peak_mb(config: dict[str, Any], shape: pool_data.Shape, repo: Path = REPO) -> float:
    """The Python heap's peak over `pool_advice` of the data's days, run from `repo`."""
    argv = [sys.executable, "-c", HEAP_SCRIPT, json.dumps(config), str(shape.first)]
    argv.append(str(shape.end))
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(argv, capture_output=True, text=True, cwd=repo, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"heap measurement failed:\n{done.stderr}")
    return int(done.stdout.split()[-1]) / 2**20


def run_command(config: Path, shape: pool_data.Shape, repo: Path = REPO) -> Command:
    """`calltrack pools --recommend --json` over the data's days, from the checkout `repo`:
    wall time, peak memory and its answer."""
    argv = [sys.executable, "-m", "pbx.cli", "pools", "-c", str(config), "--recommend", "--json"]
    argv += ["--since", str(shape.first), "--until", str(shape.end)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=repo, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"calltrack pools failed ({proc.returncode}):\n{err.read().decode()}")
        answer: dict[str, Any] = json.loads(out.read())
    return Command(elapsed, usage.ru_maxrss / 1024, answer)


def check(answer: dict[str, Any], facts: pool_data.Facts) -> dict[str, Any]:
    """The command's pool against what the generator decided; exits on a mismatch."""
    (pool,) = answer["pools"]
    expected = {
        "numbers": facts.size,
        "visits": facts.visits,
        "peak_demand": facts.peak,  # an unlimited pool's peak
        "peak_held": min(facts.size, facts.peak),  # the configured pool's, never above its size
        "visits_not_tracked": facts.exhausted + facts.ip_cap,
        "fallback_calls": facts.fallback_calls,
        "unheld_calls": facts.probable_calls + facts.unknown_calls,
    }
    wrong = {k: (pool[k], v) for k, v in expected.items() if pool[k] != v}
    if wrong:
        raise SystemExit(f"the command's answer disagrees with the data (got, expected): {wrong}")
    if not 1 <= pool["recommended"] <= pool["peak_demand"]:
        raise SystemExit(f"recommended {pool['recommended']}: expected 1..peak demand")
    return pool  # type: ignore[no-any-return]


async def split(
    database: str, settings: Settings, shape: pool_data.Shape
) -> tuple[float, float, list[PoolRecord]]:
    """The command's work in process: seconds reading (`pool_records`), seconds computing
    (`advise` for each pool), and the records read."""
    zone = ZoneInfo(settings.ui.timezone)
    since, until = day_range(shape, zone)
    engine = open_engine(database, read_only=True)
    try:
        started = time.perf_counter()
        records = await pool_records(engine, settings, since, until)
        read = time.perf_counter()
        for record in records:
            advise(record, settings.lease_policy, DEFAULT_TARGET, zone)
        computed = time.perf_counter()
    finally:
        await engine.dispose()
    return read - started, computed - read, records


def day_range(shape: pool_data.Shape, zone: ZoneInfo) -> tuple[float, float]:
    """[since, until) of the data's local days, as `pool_advice` reads them."""
    since = datetime.combine(shape.first, dtime(), zone).timestamp()
    return since, datetime.combine(shape.end + timedelta(days=1), dtime(), zone).timestamp()


def naive_tracked(arrivals: Sequence[tuple[float, float]], size: int, freeze: float) -> int:
    """A direct simulation of one pool size: the visits (in arrival order) that found one of
    `size` numbers free, each holding it until its last activity plus `freeze`."""
    held: list[float] = []
    tracked = 0
    for arrival, last_seen in arrivals:
        while held and held[0] < arrival:
            heapq.heappop(held)
        if len(held) < size:
            heapq.heappush(held, last_seen + freeze)
            tracked += 1
    return tracked


@dataclass
class Naive:
    sizes: list[int]
    seconds: list[float]  # per size
    tracked: list[int]


def naive(record: PoolRecord, peak: int, freeze: float) -> Naive:
    """The naive baseline at NAIVE_SIZES sizes spread over 1..peak (sorting once, not timed)."""
    arrivals = sorted((v.started_at, v.last_seen) for v in record.visits if v.replayed)
    sizes = sorted({max(1, round(peak * k / NAIVE_SIZES)) for k in range(1, NAIVE_SIZES + 1)})
    result = Naive(sizes, [], [])
    for size in sizes:
        started = time.perf_counter()
        result.tracked.append(naive_tracked(arrivals, size, freeze))
        result.seconds.append(time.perf_counter() - started)
    return result


def profile(database: str, settings: Settings, shape: pool_data.Shape) -> None:
    """Where the in-process time goes: `pool_advice` (read, then advise in a thread) under
    cProfile, the top functions by cumulative and by own time."""

    async def run() -> None:
        engine = open_engine(database, read_only=True)
        try:
            await pool_advice(engine, settings, shape.first, shape.end, DEFAULT_TARGET)
        finally:
            await engine.dispose()

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run())
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)


# -- the report ----------------------------------------------------------------------------------


def spread(values: Sequence[float], places: int = 2) -> str:
    """Median (range) of a few rounds."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{places}f} ({low:.{places}f}–{high:.{places}f})"


@dataclass
class Round:
    command_s: float
    max_rss_mb: float
    heap_mb: float
    read_s: float
    compute_s: float
    naive: Naive


def report(
    shape: pool_data.Shape,
    facts: pool_data.Facts,
    write_s: float,
    pool: dict[str, Any],
    rounds: list[Round],
    before: list[Command],
    before_heap: list[float],
    before_dir: Path | None,
) -> str:
    command = [r.command_s for r in rounds]
    per_size = [statistics.mean(r.naive.seconds) for r in rounds]
    naive_total = statistics.median(per_size) * facts.peak * FREEZE_REPLAYS
    median = statistics.median(command)
    verdict = "met" if max(command) < TARGET_S else "NOT met"
    sizes = rounds[0].naive
    lines = [
        f"### {shape.days} days × {shape.visits_per_day:,} visits a day (seed {shape.seed},"
        f" {date.today()})",
        "",
        f"{machine()}; data written in {write_s:.0f} s (raw rows, cached)",
        "",
        "| data | peak held | pool / recommended | command wall s, median (range)"
        " | read s | compute s | naive estimate s (extrapolated) | command / naive |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {facts.visits:,} visits, {facts.calls:,} calls | {facts.peak}"
        f" | {facts.size} / {pool['recommended']} | **{spread(command)}**"
        f" | {spread([r.read_s for r in rounds])} | {spread([r.compute_s for r in rounds])}"
        f" | {naive_total:,.0f} | {median / naive_total:.4f} |",
        "",
        "The command's peak resident memory (ru_maxrss, SQLite's mapped pages of the database"
        f" included): {spread([r.max_rss_mb for r in rounds], 0)} MB; the Python heap's peak"
        f" over the read and the replays (tracemalloc, a process of its own):"
        f" {spread([r.heap_mb for r in rounds], 0)} MB.",
        "",
        f"Target (< {TARGET_S:g} s for the command, every round): **{verdict}**."
        f" {len(rounds)} rounds. Visits: {facts.tracked:,} tracked, {facts.exhausted:,} got the"
        f" fallback (pool exhausted), {facts.ip_cap:,} per-client cap; calls:"
        f" {facts.session_calls:,} attributed to the session, {facts.probable_calls:,} probable,"
        f" {facts.unknown_calls:,} unknown, {facts.fallback_calls:,} to the fallback. The"
        " command's JSON matched the generator's own simulation (visits, peak held, visits not"
        " tracked, fallback and unheld calls).",
        "",
        f"Naive baseline (**extrapolated**): one heap pass per pool size, timed at sizes"
        f" {', '.join(map(str, sizes.sizes))}: {spread(per_size, 3)} s per size (median of the"
        f" rounds' means); the curve 1..{facts.peak} for each of the {FREEZE_REPLAYS} freeze"
        f" times the advice replays would take ≈ {statistics.median(per_size):.3f} ×"
        f" {facts.peak} × {FREEZE_REPLAYS} = {naive_total:,.0f} s. Its tracked counts at those"
        " sizes equal the command's curve.",
        "",
    ]
    if before:
        memory = statistics.median(r.max_rss_mb for r in rounds) / statistics.median(
            b.max_rss_mb for b in before
        )
        heap = statistics.median(r.heap_mb for r in rounds) / statistics.median(before_heap)
        lines += [
            f"Side by side, the code in `{before_dir}` run first in each round: command"
            f" {spread([b.seconds for b in before])} s, peak RSS"
            f" {spread([b.max_rss_mb for b in before], 0)} MB, heap peak"
            f" {spread(before_heap, 0)} MB; now / before: time"
            f" {median / statistics.median(b.seconds for b in before):.2f}, peak RSS"
            f" {memory:.2f}, heap peak {heap:.2f}.",
            "",
        ]
    return "\n".join(lines)


def curve_counts(pool: dict[str, Any], facts: pool_data.Facts, sizes: list[int]) -> list[int]:
    """The tracked visits the command's curve gives at `sizes`: its shares of the replayed
    visits are rounded to 6 places, which gives the count back exactly below 1,000,000 visits."""
    replayed = facts.tracked + facts.exhausted
    curve = dict((int(size), share) for size, share in pool["curve"])
    return [round(curve[size] * replayed) for size in sizes]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--visits-per-day", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile the in-process run")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pool_advice.md"))
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier calltrack (git worktree add DIR REV): its command is run"
        " in the same rounds, before this one's, for time and peak memory side by side",
    )
    args = parser.parse_args(argv)
    shape = pool_data.Shape(args.days, args.visits_per_day, seed=args.seed)
    path, facts, write_s = data(shape)
    database = f"sqlite+aiosqlite:///{path}"
    settings = Settings.model_validate(pool_data.config(database, facts.size))
    print(f"data: {path} {facts}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "calltrack.yaml"
        config.write_text(json.dumps(pool_data.config(database, facts.size)))
        if args.profile:
            profile(database, settings, shape)
            return
        rounds: list[Round] = []
        before: list[Command] = []
        before_heap: list[float] = []
        settings_json = pool_data.config(database, facts.size)
        pool: dict[str, Any] = {}
        for n in range(args.rounds):
            if args.before is not None:  # side by side: the same data, the code before
                earlier = run_command(config, shape, args.before)
                check(earlier.answer, facts)
                before.append(earlier)
                before_heap.append(heap_peak_mb(settings_json, shape, args.before))
                print(
                    f"round {n + 1}: before {earlier.seconds:.2f} s, peak RSS"
                    f" {earlier.max_rss_mb:.0f} MB, heap peak {before_heap[-1]:.0f} MB",
                    flush=True,
                )
            command = run_command(config, shape)
            pool = check(command.answer, facts)
            read_s, compute_s, records = asyncio.run(split(database, settings, shape))
            baseline = naive(records[0], facts.peak, settings.freeze_time)
            if baseline.tracked != curve_counts(pool, facts, baseline.sizes):
                raise SystemExit(f"naive {baseline} disagrees with the command's curve")
            heap = heap_peak_mb(settings_json, shape)
            rounds.append(
                Round(command.seconds, command.max_rss_mb, heap, read_s, compute_s, baseline)
            )
            print(
                f"round {n + 1}: command {command.seconds:.2f} s, peak RSS"
                f" {command.max_rss_mb:.0f} MB, heap peak {heap:.0f} MB, read {read_s:.2f} s,"
                f" compute {compute_s:.2f} s, naive"
                f" {statistics.mean(baseline.seconds):.3f} s per size",
                flush=True,
            )
    output = report(shape, facts, write_s, pool, rounds, before, before_heap, args.before)
    print(output)
    args.out.write_text(output)


if __name__ == "__main__":
    main()
