"""`calltrack pools`: the numbers, who holds them and until when; with `--recommend`, how many
numbers each pool needs and what its freeze time buys (issue 13, `attribution/pool_advice.py`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from attribution.pool_advice import PoolAdvice
from pbx.pool_sizing import WEEKDAYS, SizingError, pool_advice, read_range, read_target, today
from pbx.settings import Settings


def add_commands(commands: Any) -> None:
    """The `pools` command, on calltrack's subcommand parser."""
    pools = commands.add_parser(
        "pools",
        help="numbers, who holds them, until when; --recommend: how many each pool needs",
    )
    pools.add_argument("-c", "--config", required=True)
    pools.add_argument("--json", action="store_true")
    pools.add_argument(
        "--recommend",
        action="store_true",
        help="replay the recorded visits at every pool size and advise the size and freeze time",
    )
    pools.add_argument(
        "--target",
        help="with --recommend: the share of visits to track (99, 99.5%% or 0.99; default 99%%)",
    )
    pools.add_argument(
        "--since", help="with --recommend: first local day (default: 28 days ago, today included)"
    )
    pools.add_argument("--until", help="with --recommend: last local day (default: today)")
    pools.set_defaults(run=cmd_pools)


def cmd_pools(args: argparse.Namespace) -> int:
    from pbx.cli import _load

    settings = _load(args.config)
    if args.recommend:
        return _recommend(args, settings)
    if args.target or args.since or args.until:
        print("calltrack pools: --target, --since and --until go with --recommend", file=sys.stderr)
        return 2
    return _leases(args, settings)


def _recommend(args: argparse.Namespace, settings: Settings) -> int:
    from pbx.storage.db import OutdatedSchema, current_engine

    try:
        target = read_target(args.target)
        first, last = read_range(
            args.since, args.until, today(settings, time.time()), settings.visits.keep_days
        )
    except SizingError as exc:
        print(f"calltrack pools: {exc}", file=sys.stderr)
        return 2

    async def run() -> list[PoolAdvice]:
        async with current_engine(settings.database, args.config, read_only=True) as engine:
            return await pool_advice(engine, settings, first, last, target)

    try:
        advice = asyncio.run(run())
    except OutdatedSchema as exc:
        print(f"calltrack: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"pools": [pool.as_json() for pool in advice]}, indent=2))
        return 0
    zone = ZoneInfo(settings.ui.timezone)
    for pool in advice:
        print(_text(pool, first, last, zone))
    return 0


def _text(advice: PoolAdvice, first: date, last: date, zone: ZoneInfo) -> str:
    replay = advice.replay
    visits = advice.visits
    lost = advice.visits_not_tracked
    exhausted = sum(day.exhausted for day in advice.lost_by_day.values())

    def when(at: float) -> str:
        return datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M")

    shared = (
        f" (the site's fallback, also shown by {', '.join(advice.fallback_shared_with)})"
        if advice.fallback_shared_with
        else ""
    )
    lines = [
        f"{advice.site}/{advice.pool}: {_count(advice.numbers, 'number')};"
        f" {first}..{last} ({_count((last - first).days + 1, 'day')}); the recorded visits"
        " replayed through the lease rules (arrival to last activity)",
        f"  visits {visits}, got no number {lost} ({lost / visits if visits else 0:.1%}):"
        f" pool exhausted {exhausted}, per-client cap {lost - exhausted}",
        f"  calls to the fallback {len(advice.fallback_calls)}{shared},"
        f" to pool numbers nobody held {len(advice.unheld_calls)}",
    ]
    busiest = sorted(
        (
            (-n, day, hour)
            for day, hours in enumerate(advice.ran_out)
            for hour, n in enumerate(hours)
            if n
        )
    )[:3]
    if busiest:
        lines.append(
            "  ran out most: "
            + ", ".join(
                f"{WEEKDAYS[day]} {hour:02d}:00 ({_count(-n, 'visit')})" for n, day, hour in busiest
            )
        )
    if not replay.visits:
        lines.append("  no visits asked this pool for a number in the period: nothing to replay")
        return "\n".join(lines) + "\n"
    if replay.held_peak_at is not None and replay.peak_at is not None:
        lines.append(
            f"  peak: {replay.held_peak} of {advice.numbers} held at once, first at"
            f" {when(replay.held_peak_at)}; an unlimited pool would have held"
            f" {replay.peak} at once ({when(replay.peak_at)})"
        )
    lines.append(
        f"  recommended: {_count(advice.recommended, 'number')}, the smallest pool that tracks"
        f" {advice.target:.1%} of the {replay.visits} visits that asked for one"
        f" ({replay.share(advice.recommended):.1%}; your {advice.numbers}:"
        f" {replay.share(advice.numbers):.1%})"
    )
    lines.append("  freeze  calls caught  numbers needed")
    for step in advice.freeze:
        share = "-" if step.caught_share is None else f"{step.caught_share:.0%}"
        if step.caught_share is not None and step.minutes > advice.calls_seen_within:
            share = f"at most {share}"
        lines.append(f"  {step.minutes:>4g}m  {share:>12}  {step.size_needed:>14}")
    lines.append(f"  {advice.freeze_advice}")
    if any(s.minutes > advice.calls_seen_within for s in advice.freeze):
        lines.append(
            f"  (calls later than {advice.calls_seen_within:g} minutes after a visit left are"
            " matched to no visit: the shares past that are upper bounds)"
        )
    return "\n".join(lines) + "\n"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' * (n != 1)}"


def _leases(args: argparse.Namespace, settings: Settings) -> int:
    from pbx.storage.db import open_engine
    from pbx.storage.reports import PoolCoverage, pool_coverage
    from pbx.storage.visits import VisitStore

    async def run() -> tuple[list[dict[str, object]], list[PoolCoverage]]:
        engine = open_engine(settings.database)
        try:
            store = VisitStore(engine, settings, time.time)
            await store.sync_numbers()  # show the numbers the config has now
            now = time.time()
            coverage = await pool_coverage(engine, settings, now - 86400, now)
            return list(await store.current_leases()), list(coverage)
        finally:
            await engine.dispose()

    rows, coverage = asyncio.run(run())
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'site/pool':<24} {'number':<16} {'state':<6} {'until':<9} source / medium  session")
    for row in rows:
        until = row["held_until"]
        held = bool(row["held"])
        when = (
            datetime.fromtimestamp(until, ZoneInfo(settings.ui.timezone)).strftime("%H:%M:%S")
            if isinstance(until, float) and held
            else ""
        )
        source = f"{row['source']} / {row['medium']}" if held else ""
        session = str(row["session_id"])[:8] if held else ""
        print(
            f"{row['site']}/{row['pool']:<{23 - len(str(row['site']))}} {row['number']:<16}"
            f" {'held' if held else 'free':<6} {when:<9} {source:<16} {session}"
        )
    print("\nlast 24 h: visits per pool and how many got no number (pool exhausted)")
    for pool in coverage:
        print(
            f"{pool.site}/{pool.pool:<{23 - len(pool.site)}} {pool.held_now}/{pool.size} held now,"
            f" {pool.visits} visits, {pool.not_tracked} not tracked ({pool.missed_share:.0%})"
        )
    return 0
