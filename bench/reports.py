"""Report benchmark: every report kind on a year of a busy site, p50/p95 per kind (issue 12).

The data (bench/report_data.py, seeded: 1,000,000 visits over 400 days, 100,000 calls, costs,
sales) is generated once and cached: SQLite as a file under /tmp, PostgreSQL as a throwaway
cluster's data directory under /tmp (initdb/pg_ctl from the installed binaries, as
tests/postgres/conftest.py does), started for the run and stopped after. Then, for a 30-day
and a 365-day range ending on the data's last day, each grouping under each model, a few
filtered reports and the CSV form are built with `build_report` directly, each repeated until
it has `--repeat` timings (or `--budget` seconds); a subset is also fetched through
GET /api/v1/reports from a real `calltrack serve` on the same database.

Usage:
  .venv/bin/python -m bench.reports                          # SQLite (cached in /tmp)
  .venv/bin/python -m bench.reports --database postgresql    # a throwaway PostgreSQL in /tmp
  .venv/bin/python -m bench.reports --database postgresql+asyncpg://user@host:5432/db
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

from attribution.reports import GroupBy, Model, ReportQuery
from bench import report_data
from bench.lease_api import free_port, server
from pbx.reports_api import report_csv
from pbx.settings import Settings
from pbx.storage.db import open_engine, upgrade
from pbx.storage.report_queries import build_report

END = date(2027, 3, 31)
TIMEZONE = "Europe/Moscow"
TOKEN = "bench-token"
TARGET_MS = 200.0
PG_USER = "postgres"
TOP_SOURCE = "google"  # the biggest source of the generated data
FILTERED = (GroupBy.CAMPAIGN, GroupBy.DAY, GroupBy.LANDING, GroupBy.TERM)
HTTP_KINDS = (GroupBy.SOURCE, GroupBy.CAMPAIGN, GroupBy.LANDING, GroupBy.DAY)


@dataclass(frozen=True)
class Kind:
    days: int
    group_by: GroupBy
    model: Model
    filters: tuple[tuple[GroupBy, str], ...] = ()
    csv: bool = False

    def query(self) -> ReportQuery:
        return ReportQuery(
            END - timedelta(days=self.days - 1),
            END,
            self.group_by,
            self.model,
            dict(self.filters),
        )

    @property
    def name(self) -> str:
        name = f"{self.days}d {self.group_by} {self.model}"
        name += "".join(f" {k}={v}" for k, v in self.filters)
        return name + (" csv" if self.csv else "")


def kinds() -> list[Kind]:
    found = [Kind(d, g, m) for d in (30, 365) for g in GroupBy for m in Model]
    found = [k for k in found if k.group_by is not GroupBy.CONTENT or k.model is Model.LAST]
    found += [
        Kind(d, g, Model.LAST, ((GroupBy.SOURCE, TOP_SOURCE),)) for d in (30, 365) for g in FILTERED
    ]
    found += [Kind(d, GroupBy.SOURCE, Model.LAST, csv=True) for d in (30, 365)]
    return found


def settings_for(database: str) -> Settings:
    config = report_data.config(database, TIMEZONE) | {
        "forward_to": "PJSIP/realline",
        "api_tokens": [{"name": "bench", "token_sha256": _sha256(TOKEN)}],
    }
    return Settings.model_validate(config)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- the data ------------------------------------------------------------------------------------


async def _generate(database: str, shape: report_data.Shape) -> dict[str, float]:
    settings = settings_for(database)
    engine = open_engine(database)
    try:
        await upgrade(engine)
        started = time.monotonic()
        await report_data.write(engine, settings, shape)
        written = time.monotonic()
        await report_data.build_rollups(engine, settings)
        built = time.monotonic()
        if engine.dialect.name == "postgresql":  # as autovacuum would have on an install
            async with engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
        # SQLite: no ANALYZE, as calltrack runs none, so the plans are an install's (the
        # ANALYZE this ran through the engine before left no sqlite_stat1 in the file anyway)
    finally:
        await engine.dispose()
    return {"write_s": written - started, "rollups_s": built - written}


def sqlite_data(shape: report_data.Shape) -> tuple[str, dict[str, float]]:
    """The cached SQLite file of `shape` (generated when missing); its URL and how long the
    generation took (read back from the file kept beside it)."""
    path = Path(tempfile.gettempdir()) / f"calltrack-bench-reports-{_tag(shape)}.db"
    timing = path.with_suffix(".json")
    if not path.exists():
        partial = path.with_suffix(".partial")
        for leftover in glob.glob(f"{partial}*"):
            os.unlink(leftover)
        result = asyncio.run(_generate(f"sqlite+aiosqlite:///{partial}", shape))
        os.replace(partial, path)
        timing.write_text(json.dumps(result))
    return f"sqlite+aiosqlite:///{path}", json.loads(timing.read_text())


def _tag(shape: report_data.Shape) -> str:
    return f"{shape.seed}-{shape.visits}-{shape.calls}-{shape.days}-{shape.end}"


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_data(shape: report_data.Shape) -> Iterator[tuple[str, dict[str, float]]]:
    """A throwaway PostgreSQL whose data directory (with the generated database) is kept under
    /tmp between runs; started for the run, stopped after."""
    bindir = _pg_bindir()
    root = Path(tempfile.gettempdir()) / f"calltrack-bench-pg-{_tag(shape)}"
    data, log, timing = root / "data", root / "server.log", root / "generation.json"
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", PG_USER, "--"]
    if not (root / "ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        if prefix:
            owner = pwd.getpwnam(PG_USER)
            os.chown(root, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
    port = free_port()
    options = f"-p {port} -h 127.0.0.1 -k {root} -c shared_buffers=256MB -c fsync=off"
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    url = f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{port}/postgres"
    try:
        if not (root / "ready").exists():
            timing.write_text(json.dumps(asyncio.run(_generate(url, shape))))
            (root / "ready").touch()
        yield url, json.loads(timing.read_text())
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )


# -- timing --------------------------------------------------------------------------------------


@dataclass
class Timing:
    kind: str
    rows: int
    runs: list[float]  # ms

    def quantile(self, q: float) -> float:
        ordered = sorted(self.runs)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def time_direct(database: str, repeat: int, budget: float) -> list[Timing]:
    """Each kind through `build_report` as GET /api/v1/reports runs it: read through a reader
    (the app's READER), closed months kept through the writer. The first run of a kind starts
    with nothing kept (it computes and keeps its months: a report's cost right after a write to
    those months); the rest read the kept months, as every later request does."""
    settings = settings_for(database)
    writer = open_engine(database)
    await upgrade(writer)  # a cached file made before the latest migration
    async with writer.begin() as conn:
        await conn.execute(text("DELETE FROM report_months"))
    engine = open_engine(database, read_only=True)  # the app's READER: what reports read through
    today = END + timedelta(days=2)  # the day after the data's last: its months are over
    results = []
    try:
        for kind in kinds():
            query, rows = kind.query(), 0
            runs: list[float] = []
            deadline = time.monotonic() + budget
            while len(runs) < repeat and (len(runs) < 3 or time.monotonic() < deadline):
                started = time.perf_counter()
                report = await build_report(engine, settings, query, today=today, keeper=writer)
                if kind.csv:
                    report_csv(report)
                runs.append((time.perf_counter() - started) * 1000)
                rows = len(report.rows)
            results.append(Timing(kind.name, rows, runs))
            print(
                f"{kind.name:45} rows {rows:5}  first {runs[0]:8.1f} ms"
                f"  p50 {statistics.median(runs):8.1f} ms",
                flush=True,
            )
    finally:
        await engine.dispose()
        await writer.dispose()
    return results


def time_http(database: str, repeat: int) -> list[Timing]:
    """The subset through a real `calltrack serve` on the same database."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = report_data.config(database, TIMEZONE) | {
            "forward_to": "PJSIP/realline",
            "api_tokens": [{"name": "bench", "token_sha256": _sha256(TOKEN)}],
            "http": {"port": port},
            "recordings": {"dir": "recordings"},
        }
        path = Path(tmp) / "calltrack.yaml"
        path.write_text(json.dumps(config))
        argv = [str(Path(sys.executable).parent / "calltrack"), "serve", "-c", str(path)]
        results = []
        with server(argv, port, Path(tmp) / "server.log"):
            for days in (30, 365):
                for group in HTTP_KINDS:
                    for output in ("json", "csv"):
                        kind = Kind(days, group, Model.LAST, csv=output == "csv")
                        # the server's today, not END: its clock says which months are over
                        until = datetime.now(ZoneInfo(TIMEZONE)).date()
                        since = until - timedelta(days=days - 1)
                        url = (
                            f"http://127.0.0.1:{port}/api/v1/reports?since={since}"
                            f"&until={until}&group_by={group}&format={output}"
                        )
                        request = urllib.request.Request(
                            url, headers={"Authorization": f"Bearer {TOKEN}"}
                        )
                        runs: list[float] = []
                        for _ in range(repeat):
                            started = time.perf_counter()
                            with urllib.request.urlopen(request, timeout=60) as answer:
                                body = answer.read()
                            runs.append((time.perf_counter() - started) * 1000)
                        results.append(Timing(f"HTTP {kind.name}", len(body), runs))
                        print(f"HTTP {kind.name:40} p50 {statistics.median(runs):8.1f} ms")
    return results


def table(title: str, timings: list[Timing], size: str = "rows") -> str:
    lines = [
        f"#### {title}",
        "",
        f"| report | {size} | runs | first ms | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        p95 = t.quantile(0.95)
        mark = " **over**" if p95 > TARGET_MS else ""
        lines.append(
            f"| {t.kind} | {t.rows} | {len(t.runs)} | {t.runs[0]:.1f} | {t.quantile(0.5):.1f}"
            f" | {p95:.1f}{mark} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql, or a URL")
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per kind at most")
    parser.add_argument("--http-repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, help="append the tables (markdown) to this file")
    args = parser.parse_args(argv)
    shape = report_data.Shape(args.visits, args.calls, args.days, END, args.seed)
    with contextlib.ExitStack() as stack:
        if args.database == "sqlite":
            database, generation = sqlite_data(shape)
        elif args.database == "postgresql":
            database, generation = stack.enter_context(postgres_data(shape))
        else:
            database, generation = args.database, {}
            if not os.environ.get("BENCH_REUSE"):
                generation = asyncio.run(_generate(database, shape))
        print(f"data: {database} generation {generation}", flush=True)
        direct = asyncio.run(time_direct(database, args.repeat, args.budget))
        http = time_http(database, args.http_repeat) if args.http_repeat else []
    backend = database.split(":", 1)[0]
    over = [t.kind for t in direct + http if t.quantile(0.95) > TARGET_MS]
    head = (
        f"### {backend}: {shape.visits} visits, {shape.calls} calls over {shape.days} days"
        f" (seed {shape.seed})\n\n{machine()}; generation: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in generation.items())
        + f"\n\np95 over {TARGET_MS:.0f} ms: {', '.join(over) if over else 'none'}\n\n"
    )
    output = (
        head + table("build_report", direct) + "\n" + (table("HTTP", http, "bytes") if http else "")
    )
    print(output)
    if args.out:
        with args.out.open("a") as out:
            out.write(output + "\n")


if __name__ == "__main__":
    main()
