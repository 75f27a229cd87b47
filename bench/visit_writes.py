"""What a new visit writes to SQLite, and its CPU, committed alone or in a group (issue 15).

A new visit's transaction touches a page of every table and index it inserts into or updates,
and SQLite's WAL gets each such page whole at the commit: a commit's cost follows the pages it
writes, and visits committed together (Transactions' group commit) share the pages they have in
common (the newest leaf of a time-ordered index, a rollup row). So this counts, for visits
committed one per transaction and in groups of `--group`, the WAL frames per visit, which table
or index each frame belongs to (SQLite's dbstat), and the process's CPU per visit.

In process: `VisitStore.start_visit` on a fresh SQLite file with bench/lease_api.py's config
(two pools of 10,000 numbers), `--visits` visits after 200 to warm up, paid clicks with
distinct addresses, each measurement in a fresh process. With `--before DIR` (a checkout:
`git worktree add DIR REV`) the same measurement runs on that code too, in alternating rounds.

Usage: .venv/bin/python -m bench.visit_writes [--visits 2000] [--group 16] [--rounds 3]
       [--before /tmp/old] [--out bench/results/visit_writes.md | --no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).absolute().parents[1]
WARM_UP = 200
WAL_HEADER = 32
FRAME_HEADER = 24


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wal_commits(wal: bytes) -> list[list[int]]:
    """The page numbers of each commit in a WAL file (a frame whose header has a non-zero
    database size ends a commit), up to the first frame of an earlier generation."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    salt = wal[16:24]
    commits: list[list[int]] = []
    current: list[int] = []
    offset = WAL_HEADER
    while offset + FRAME_HEADER + page_size <= len(wal):
        if wal[offset + 8 : offset + 16] != salt:  # left from before the WAL was restarted
            break
        page, ends_commit = struct.unpack(">II", wal[offset : offset + 8])
        current.append(page)
        if ends_commit:
            commits.append(current)
            current = []
        offset += FRAME_HEADER + page_size
    return commits


async def _measure(visits: int, group: int) -> dict[str, Any]:
    """One measurement on the code importable here (this checkout or --before's)."""
    with tempfile.TemporaryDirectory(prefix="visit-writes-") as name:
        return await _measure_in(Path(name), visits, group)


async def _measure_in(folder: Path, visits: int, group: int) -> dict[str, Any]:
    from bench.lease_api import write_config
    from pbx.settings import load_settings
    from pbx.storage.db import open_engine, upgrade
    from pbx.storage.visits import VisitRequest, VisitStore

    database = folder / "calltrack.db"
    settings = load_settings(write_config(folder, 20_000, f"sqlite+aiosqlite:///{database}"))
    engine = open_engine(settings.database)
    await upgrade(engine)
    store = VisitStore(engine, settings, time.time)
    await store.sync_numbers()
    site = settings.sites[0]

    async def visit(i: int) -> None:
        await store.start_visit(
            VisitRequest(
                site=site,
                url=f"https://bench.example/landing/{i % 50}?utm_medium=cpc&gclid=g{i}",
                referrer="https://www.google.com/",
                visitor_id=None,
                session_id=None,
                client_ip=f"10.{i // 62_500}.{i // 250 % 250}.{i % 250 + 1}",
            )
        )

    for i in range(WARM_UP):
        await visit(i)
    wal = Path(f"{database}-wal")
    warm_up_commits = len(wal_commits(await asyncio.to_thread(wal.read_bytes)))
    cpu, wall = _cpu(), time.perf_counter()
    end = WARM_UP + visits
    for start in range(WARM_UP, end, group):
        await asyncio.gather(*(visit(i) for i in range(start, min(start + group, end))))
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    commits = wal_commits(await asyncio.to_thread(wal.read_bytes))[warm_up_commits:]
    with sqlite3.connect(database) as db:
        names = dict(db.execute("SELECT pageno, name FROM dbstat").fetchall())
    pages: collections.Counter[str] = collections.Counter()
    for commit in commits:
        pages.update(names.get(page, "(a page since freed)") for page in commit)
    store.close()
    await engine.dispose()
    return {
        "cpu_us": cpu / visits * 1e6,
        "wall_us": wall / visits * 1e6,
        "commits": len(commits),
        "frames": sum(pages.values()) / visits,
        "pages": {name: n / visits for name, n in pages.most_common()},
    }


def measure(repo: Path, visits: int, group: int) -> dict[str, Any]:
    """One measurement in a fresh process on `repo`'s code (both sides alike: a process that
    ran earlier rounds would carry their heap and caches)."""
    # this file, on that checkout's pbx and bench (an earlier one may not have this file)
    argv = [sys.executable, __file__, "--one", str(visits), str(group)]
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def markdown(args: argparse.Namespace, runs: dict[tuple[str, int], list[dict[str, Any]]]) -> str:
    lines = [
        "# What a new visit writes (SQLite)",
        "",
        f"`{' '.join(sys.argv)}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"{args.visits} new visits after {WARM_UP} to warm up, committed alone and in groups of"
        f" {args.group}; {args.rounds} rounds, medians (the CPU range in brackets).",
        "",
        "| code | visits a commit | WAL frames a visit | CPU µs a visit | wall µs a visit |",
        "|---|---:|---:|---|---:|",
    ]
    for (code, group), results in runs.items():
        cpu = [r["cpu_us"] for r in results]
        lines.append(
            f"| {code} | {group} | {statistics.median(r['frames'] for r in results):.1f}"
            f" | {statistics.median(cpu):.0f} ({min(cpu):.0f}–{max(cpu):.0f})"
            f" | {statistics.median(r['wall_us'] for r in results):.0f} |"
        )
    for (code, group), results in runs.items():
        lines += ["", f"Pages a visit, {code}, {group} a commit (first round):", ""]
        lines += [f"- {name}: {n:.2f}" for name, n in results[0]["pages"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=2000)
    parser.add_argument("--group", type=int, default=16, help="visits committed together")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier calltrack")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/visit_writes.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # --before's side
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(_measure(*args.one))))
        return
    codes = [("now", REPO)] + ([("before", args.before.absolute())] if args.before else [])
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_no in range(1, args.rounds + 1):
        for group in (1, args.group):
            for code, repo in codes:
                result = measure(repo, args.visits, group)
                runs.setdefault((code, group), []).append(result)
                print(
                    f"round {round_no} {code:6} {group:3} a commit: {result['frames']:5.1f}"
                    f" frames, CPU {result['cpu_us']:6.0f} µs, wall {result['wall_us']:6.0f} µs"
                    " a visit",
                    flush=True,
                )
    report = markdown(args, runs)
    print(report)
    if not args.no_write:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
