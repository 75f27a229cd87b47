"""Soak: many website sessions pinging and new visits arriving for minutes, open loop (issue 15).

A benchmark at saturation (bench/lease_api.py) says how fast calltrack is; this one says whether
it stays well at a steady load a big site sends for a long time: no error, latency that does not
creep up minute after minute, memory that does not climb, and everything stored afterwards.

The load is open loop: each request is sent when its schedule says, whatever earlier answers
take, and its latency is counted from that scheduled moment (so a slow server cannot slow the
load down and hide its own slowness, and a load generator that falls behind shows up too).

- `--sessions` sessions start over `--ramp-s` seconds and then ping every `--ping-s` seconds to
  the end of the run;
- after the ramp, for `--minutes`, new visits arrive at `--visits-per-s` (Poisson arrivals), each
  pinging every `--ping-s` seconds for a visit of `--visit-minutes` on average (uniform between
  half and one and a half times that), so the sessions alive at once grow as on a real site;
- every session has its own address in X-Forwarded-For (the daemon trusts 127.0.0.1 as a
  proxy), as visitors behind a load balancer, so the per-address limits do not refuse them;
- with `--daemons 2` (PostgreSQL only) the requests go to the daemons in turn, so a session's
  pings alternate between them.

Reported per minute: requests, errors (non-2xx and socket errors), latency p50/p99/max; RSS and
CPU of each daemon (sampled every second from /proc) and of the load generator; after the run
(daemons stopped with SIGINT, so their write-behind is flushed) the database's size and checks
on what it holds: every answered visit stored, no number leased twice at once, every page view
kept, and how many visitors got the site's fallback number instead of a tracking number.

Usage:
  .venv/bin/python -m bench.soak                               # 5 min, SQLite, one daemon
  .venv/bin/python -m bench.soak --database postgresql --daemons 2
  .venv/bin/python -m bench.soak --minutes 0.5 --sessions 1000 --no-write   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import lease_api
from bench.pg_cluster import throwaway_postgres

FALLBACK = "+74990000099"  # lease_api.write_config's site fallback: shown when the pool is empty
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Shape:
    """What load the soak sends."""

    minutes: float = 5.0
    sessions: int = 10_000
    visits_per_s: float = 200.0
    visit_minutes: float = 3.0
    ping_s: float = 30.0
    ramp_s: float = 60.0
    seed: int = 15

    @property
    def seconds(self) -> float:
        """The whole run: the ramp, then the measured minutes."""
        return self.ramp_s + self.minutes * 60

    def numbers(self) -> int:
        """A pool no visitor of the run exhausts: numbers stay held for freeze_time (15 min)
        after the last ping, longer than the run, so every session of the run holds one."""
        return self.sessions + int(self.visits_per_s * self.minutes * 60 * 1.2) + 100


# -- the load --------------------------------------------------------------------------------


@dataclass
class Session:
    index: int
    ends: float  # run time after which it pings no more
    sid: str = ""
    vid: str = ""
    pings: int = 0


@dataclass
class Minute:
    """What happened to the requests scheduled in one minute of the run (minute 0: the ramp)."""

    latencies: list[float] = field(default_factory=list)  # ms, from the scheduled moment
    visits: int = 0
    pings: int = 0
    non2xx: int = 0
    socket_errors: int = 0
    lag_ms: float = 0.0  # the load generator's worst delay in sending one on schedule

    def row(self) -> dict[str, float]:
        lat = sorted(self.latencies) or [0.0]
        return {
            "requests": len(self.latencies),
            "visits": self.visits,
            "pings": self.pings,
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
            "p50_ms": lat[len(lat) // 2],
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "max_ms": lat[-1],
            "lag_ms": self.lag_ms,
        }


class Answer:
    """A daemon's answer: its status and JSON body."""

    __slots__ = ("data", "status")

    def __init__(self, status: int, data: Any) -> None:
        self.status, self.data = status, data


class HttpClient:
    """Keep-alive HTTP/1.1 connections to one daemon, at most `size` at once, one request each
    at a time: what the soak needs of a client and nothing else.

    The load generator shares the machine with the daemons (and PostgreSQL), so what it spends
    is taken from them. aiohttp's client spent about as much CPU per request as the daemon
    answering it (bench/README.md, "a lighter load generator"); this one writes the request's
    bytes and reads the status, Content-Length and body. `timeout` counts from the call,
    waiting for a free connection included, as aiohttp's total timeout did."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.hostname and parts.port, url
        self.host, self.port = parts.hostname, parts.port
        self._head = f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(size)
        self._timeout = timeout

    async def post(self, path: str, body: Any, headers: dict[str, str]) -> Answer:
        payload = json.dumps(body, separators=(",", ":")).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\n{self._head}{extra}"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        async with asyncio.timeout(self._timeout), self._slots:
            reader, writer = await self._connection()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length, keep = self._parse_head(head)
                body = await reader.readexactly(length)
                data = json.loads(body) if body else None
            except BaseException:
                writer.close()
                raise
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return Answer(status, data)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():  # the daemon kept it open
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    def _parse_head(head: bytes) -> tuple[int, int, bool]:
        """(status, Content-Length, whether the connection stays open)."""
        lines = head.decode("latin-1").lower().split("\r\n")
        version, _sp, rest = lines[0].partition(" ")
        if not version.startswith("http/") or not rest[:3].isdigit():
            raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        if "content-length" not in fields:
            raise ValueError(f"an answer without Content-Length: {lines[0]}")
        keep = fields.get("connection", "").strip() != "close"
        return status, int(fields["content-length"]), keep

    async def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


class Load:
    """The open-loop schedule and its answers."""

    def __init__(self, shape: Shape, urls: Sequence[str]) -> None:
        self.shape = shape
        self.urls = urls
        self.turn = itertools.cycle(range(len(urls)))
        self.rng = random.Random(shape.seed)
        self.heap: list[tuple[float, int, Session]] = []
        self.minutes: dict[int, Minute] = {}
        self.fallbacks = 0
        self.visits_answered: set[str] = set()
        self.pings_answered = 0
        self.errors: Counter[str] = Counter()  # what went wrong: path kind and status/exception
        self.inflight: set[asyncio.Task[None]] = set()
        self.start = 0.0
        self._schedule()

    def _schedule(self) -> None:
        """Every visit of the run, in the heap by its start time (pings are added as they come)."""
        s = self.shape
        sessions = [Session(i, s.seconds) for i in range(s.sessions)]
        for i, session in enumerate(sessions):
            self._push(s.ramp_s * i / max(1, s.sessions), session)
        if s.visits_per_s <= 0:
            return
        at, index = s.ramp_s + self.rng.expovariate(s.visits_per_s), s.sessions
        while at < s.seconds:
            length = s.visit_minutes * 60 * self.rng.uniform(0.5, 1.5)
            self._push(at, Session(index, min(s.seconds, at + length)))
            at += self.rng.expovariate(s.visits_per_s)
            index += 1

    def _push(self, at: float, session: Session) -> None:
        heapq.heappush(self.heap, (at, session.index * 1000 + session.pings, session))

    def minute(self, at: float) -> Minute:
        key = 0 if at < self.shape.ramp_s else 1 + int((at - self.shape.ramp_s) // 60)
        return self.minutes.setdefault(key, Minute())

    async def run(self, clients: Sequence[HttpClient]) -> None:
        self.start = time.monotonic()
        # a request in flight pushes its session's next ping when answered: with every session
        # waiting on a slow answer the heap is empty for a moment, and the run is not over
        while self.heap or self.inflight:
            if not self.heap:
                await asyncio.sleep(0.01)
                continue
            at, _, session = self.heap[0]
            wait = at - (time.monotonic() - self.start)
            if wait > 0:
                await asyncio.sleep(min(wait, 0.05))
                continue
            heapq.heappop(self.heap)
            bucket = self.minute(at)
            bucket.lag_ms = max(bucket.lag_ms, -wait * 1000)
            task = asyncio.create_task(self.send(clients, at, session))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    def _headers(self, session: Session) -> dict[str, str]:
        i = session.index + 1
        return {
            "Origin": lease_api.ORIGIN,
            "X-Forwarded-For": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        }

    def _request(self, session: Session) -> tuple[str, dict[str, Any]]:
        i = session.index
        if not session.sid:
            query = f"?utm_source=google&utm_medium=cpc&gclid=g{i}" if i % 2 else ""
            body = {"site": lease_api.SITE, "url": f"https://bench.example/landing/{i % 50}{query}"}
            return "/api/v1/visits", body
        page = f"https://bench.example/page/{session.pings}"  # every ping a new page: kept
        return f"/api/v1/visits/{session.sid}/ping", {"visitor_id": session.vid, "url": page}

    async def send(self, clients: Sequence[HttpClient], at: float, session: Session) -> None:
        bucket = self.minute(at)
        path, body = self._request(session)
        kind = "ping" if session.sid else "visit"
        try:
            answer = await clients[next(self.turn)].post(path, body, self._headers(session))
            data, status = answer.data, answer.status
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
            bucket.socket_errors += 1
            self._error(f"{kind}: {type(exc).__name__} {exc}".strip())
            return
        bucket.latencies.append((time.monotonic() - self.start - at) * 1000)
        if status != 200:
            bucket.non2xx += 1
            reason = data.get("error", "") if isinstance(data, dict) else ""
            self._error(f"{kind}: {status} {reason}".strip())
            return
        if session.sid:
            bucket.pings += 1
            self.pings_answered += 1
        elif not isinstance(data, dict) or "session_id" not in data:
            bucket.non2xx += 1  # a 200 that is not a visit's answer: counted, not a dead task
            self._error(f"{kind}: 200 without a session")
            return
        else:
            bucket.visits += 1
            session.sid, session.vid = data["session_id"], data["visitor_id"]
            self.visits_answered.add(session.sid)
            shown = [n["number"] for n in data["numbers"]]
            self.fallbacks += not shown or FALLBACK in shown
        next_at = at + self.shape.ping_s
        if next_at < session.ends:
            session.pings += 1
            self._push(next_at, session)

    def _error(self, message: str) -> None:
        self.errors[message] += 1


# -- the daemons' resources ------------------------------------------------------------------


def rss_mb(pid: int, kind: str = "VmRSS") -> float:
    """The process's resident memory; `RssAnon`: only its own (heap, stacks), without the
    database file SQLite maps in (mmap_size), which the kernel may drop at any time and which
    grows with the file, not with a leak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    # after the command's ")" : state is field 3, utime and stime fields 14 and 15
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU time all processes of the machine used (not idle, not waiting for disk), in s: the
    machine is shared, and a daemon that gets little CPU because others take it is not slow."""
    jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(jiffies[:8]) - jiffies[3] - jiffies[4]) / TICKS


@dataclass
class Sample:
    at: float  # run time, s
    rss_mb: list[float]  # per daemon
    anon_mb: list[float]  # per daemon: RssAnon
    cpu_s: list[float]  # cumulative: each daemon, then the load generator, then the machine


async def sample(pids: Sequence[int], load: Load, into: list[Sample]) -> None:
    """Every second until cancelled."""
    while True:
        at = time.monotonic() - load.start if load.start else 0.0
        cpu = [*(cpu_s(p) for p in pids), own_cpu_s(), machine_busy_s()]
        rss = [rss_mb(p) for p in pids]
        into.append(Sample(at, rss, [rss_mb(p, "RssAnon") for p in pids], cpu))
        await asyncio.sleep(1.0)


def slope_mb_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Report:
    shape: Shape
    database: str  # "sqlite" or "postgresql"
    daemons: int
    numbers: int
    minutes: dict[int, dict[str, float]]
    rss_start_mb: list[float]  # per daemon, ready and idle before the load
    rss_ramped_mb: list[float]  # after the ramp: all --sessions alive
    rss_end_mb: list[float]
    rss_slope_mb_per_min: list[float]  # over the measured minutes
    anon_start_mb: list[float]  # RssAnon, the same moments
    anon_ramped_mb: list[float]
    anon_end_mb: list[float]
    anon_slope_mb_per_min: list[float]
    anon_last_slope_mb_per_min: list[float]  # over the last two minutes
    # per minute: each daemon, the load generator, the whole machine (100 = one core)
    cpu_percent: dict[int, list[float]]
    visits_answered: int
    pings_answered: int
    fallbacks: int
    stored: dict[str, int]
    db_bytes: int
    errors: dict[str, int]  # kind of failure: how many
    load_average: tuple[str, str]  # 1/5/15-minute load averages before and after the run

    @property
    def requests(self) -> int:
        return int(sum(m["requests"] + m["socket_errors"] for m in self.minutes.values()))

    @property
    def failures(self) -> int:
        return int(sum(m["non2xx"] + m["socket_errors"] for m in self.minutes.values()))

    @property
    def problems(self) -> list[str]:
        """What must not happen; an empty list is a pass."""
        found = []
        if self.failures:
            kinds = ", ".join(
                f"{k} × {n}" for k, n in sorted(self.errors.items(), key=lambda e: -e[1])
            )
            found.append(f"{self.failures} requests failed: {kinds}")
        if self.fallbacks:
            found.append(f"{self.fallbacks} visitors got the fallback (pool too small)")
        db = self.stored
        if db["sessions"] != self.visits_answered:
            found.append(f"sessions stored {db['sessions']}, answered {self.visits_answered}")
        if db["leases"] != self.visits_answered - self.fallbacks:
            found.append(
                f"leases stored {db['leases']}, tracked answers"
                f" {self.visits_answered - self.fallbacks}"
            )
        if db["overlaps"]:
            found.append(f"{db['overlaps']} overlapping leases (a number held twice at once)")
        if db["page_views"] != self.visits_answered + self.pings_answered:
            found.append(
                f"page views stored {db['page_views']}, sent"
                f" {self.visits_answered + self.pings_answered} (a new page in each request)"
            )
        return found


async def stored(database: str) -> tuple[dict[str, int], int]:
    """lease_api.STATS and the database's size in bytes (SQLite: the file and its WAL)."""
    engine = create_async_engine(database)
    try:
        async with engine.connect() as conn:
            stats = {
                name: int(await conn.scalar(text(sql)) or 0)
                for name, sql in lease_api.STATS.items()
            }
            if engine.dialect.name == "postgresql":
                size = int(
                    await conn.scalar(text("SELECT pg_database_size(current_database())")) or 0
                )
            else:
                main = Path(engine.url.database or "")
                size = sum(p.stat().st_size for p in main.parent.glob(main.name + "*"))
    finally:
        await engine.dispose()
    return stats, size


@contextlib.contextmanager
def daemons(config: Path, count: int) -> Iterator[tuple[list[str], list[int]]]:
    """`calltrack serve` × count on one config (lease_api.server: ready on /healthz, SIGINT to
    stop so the write-behind is flushed); their URLs and process ids."""
    subprocess.run(
        [sys.executable, "-m", "pbx.cli", "db", "upgrade", "-c", str(config)],
        check=True,
        capture_output=True,
        cwd=config.parent,
        env=lease_api.server_env(),
    )
    with contextlib.ExitStack() as stack:
        urls, pids = [], []
        for i in range(count):
            port = lease_api.free_port()
            argv = [
                sys.executable,
                "-m",
                "pbx.cli",
                "serve",
                "-c",
                str(config),
                "--port",
                str(port),
            ]
            proc = stack.enter_context(
                lease_api.server(argv, port, config.parent / f"daemon{i}.log")
            )
            urls.append(f"http://127.0.0.1:{port}")
            pids.append(proc.pid)
        yield urls, pids


def cpu_per_minute(samples: Sequence[Sample], ramp_s: float) -> dict[int, list[float]]:
    """Per minute of the run (0: the ramp), Sample.cpu_s in % of one core."""
    edges: dict[int, tuple[Sample, Sample]] = {}
    for s in samples:
        key = 0 if s.at < ramp_s else 1 + int((s.at - ramp_s) // 60)
        first, _ = edges.get(key, (s, s))
        edges[key] = (first, s)
    out = {}
    for key, (a, b) in sorted(edges.items()):
        span = b.at - a.at
        if span > 0:
            out[key] = [100 * (y - x) / span for x, y in zip(a.cpu_s, b.cpu_s, strict=True)]
    return out


async def drive(shape: Shape, urls: list[str], pids: list[int]) -> tuple[Load, list[Sample]]:
    load = Load(shape, urls)
    samples: list[Sample] = []
    clients = [HttpClient(url, size=256, timeout=30.0) for url in urls]
    sampler = asyncio.create_task(sample(pids, load, samples))
    try:
        await load.run(clients)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        for client in clients:
            await client.close()
    return load, samples


def soak(
    shape: Shape,
    workdir: Path,
    database: str | None = None,
    count: int = 1,
    numbers: int | None = None,
    config_changes: dict[str, Any] | None = None,
) -> Report:
    """Start `count` daemons on `database` (default: a SQLite file in workdir), send the load,
    stop them, check what they stored."""
    database = database or f"sqlite+aiosqlite:///{workdir / 'calltrack.db'}"
    numbers = numbers or shape.numbers()
    config = lease_api.write_config(workdir, numbers, database)
    if config_changes:
        settings = json.loads(config.read_text())
        for section, values in config_changes.items():
            settings[section] = {**settings.get(section, {}), **values}
        config.write_text(json.dumps(settings))
    before = loadavg()
    with daemons(config, count) as (urls, pids):
        start_rss = [rss_mb(p) for p in pids]
        start_anon = [rss_mb(p, "RssAnon") for p in pids]
        load, samples = asyncio.run(drive(shape, urls, pids))
    stats, size = asyncio.run(stored(database))
    measured = [s for s in samples if s.at >= shape.ramp_s]
    ramped = measured[0] if measured else samples[-1]
    last = [s for s in measured if s.at >= samples[-1].at - 120]
    return Report(
        shape=shape,
        database="postgresql" if database.startswith("postgresql") else "sqlite",
        daemons=count,
        numbers=numbers,
        minutes={k: m.row() for k, m in sorted(load.minutes.items())},
        rss_start_mb=start_rss,
        rss_ramped_mb=ramped.rss_mb,
        rss_end_mb=samples[-1].rss_mb,
        rss_slope_mb_per_min=[
            slope_mb_per_min([(s.at, s.rss_mb[i]) for s in measured]) for i in range(count)
        ],
        anon_start_mb=start_anon,
        anon_ramped_mb=ramped.anon_mb,
        anon_end_mb=samples[-1].anon_mb,
        anon_slope_mb_per_min=[
            slope_mb_per_min([(s.at, s.anon_mb[i]) for s in measured]) for i in range(count)
        ],
        anon_last_slope_mb_per_min=[
            slope_mb_per_min([(s.at, s.anon_mb[i]) for s in last]) for i in range(count)
        ],
        cpu_percent=cpu_per_minute(samples, shape.ramp_s),
        visits_answered=len(load.visits_answered),
        pings_answered=load.pings_answered,
        fallbacks=load.fallbacks,
        stored=stats,
        db_bytes=size,
        errors=dict(load.errors),
        load_average=(before, loadavg()),
    )


# -- the report ------------------------------------------------------------------------------


def markdown(report: Report, argv: Sequence[str]) -> str:
    s = report.shape
    mb = ", ".join
    lines = [
        f"# Soak: {report.database}, {report.daemons} daemon(s)",
        "",
        f"`{' '.join(['.venv/bin/python', '-m', 'bench.soak', *argv])}`"
        f" — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{lease_api.versions()}.",
        f"Load average (1/5/15 min) before: {report.load_average[0]}; after:"
        f" {report.load_average[1]}.",
        f"Load: {s.sessions} sessions started over {s.ramp_s:g} s (minute 0), then pinging every"
        f" {s.ping_s:g} s to the end; for {s.minutes:g} min after the ramp {s.visits_per_s:g} new"
        f" visits/s (Poisson), each pinging every {s.ping_s:g} s for {s.visit_minutes:g} min on"
        f" average; open loop, latency from each request's scheduled moment; {report.numbers}"
        " numbers in the pool (freeze_time 15 min); each session its own X-Forwarded-For.",
        "",
        "| minute | requests | visits | pings | non-2xx | socket errors | p50 ms | p99 ms |"
        " max ms | generator lag ms | CPU %: daemon(s) / generator / machine |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, m in report.minutes.items():
        cpu = "/".join(f"{c:.0f}" for c in report.cpu_percent.get(key, []))
        lines.append(
            f"| {'ramp' if key == 0 else key} | {m['requests']:.0f} | {m['visits']:.0f} |"
            f" {m['pings']:.0f} | {m['non2xx']:.0f} | {m['socket_errors']:.0f} |"
            f" {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['max_ms']:.0f} | {m['lag_ms']:.0f} |"
            f" {cpu} |"
        )
    db = report.stored
    lines += [
        "",
        f"- RSS per daemon: idle {mb(f'{x:.0f}' for x in report.rss_start_mb)} MB, after the"
        f" ramp {mb(f'{x:.0f}' for x in report.rss_ramped_mb)} MB, at the end"
        f" {mb(f'{x:.0f}' for x in report.rss_end_mb)} MB; slope over the measured minutes"
        f" {mb(f'{x:+.1f}' for x in report.rss_slope_mb_per_min)} MB/min. Of it anonymous"
        f" (RssAnon: the heap, without the database file SQLite maps in): idle"
        f" {mb(f'{x:.0f}' for x in report.anon_start_mb)} MB, after the ramp"
        f" {mb(f'{x:.0f}' for x in report.anon_ramped_mb)} MB, at the end"
        f" {mb(f'{x:.0f}' for x in report.anon_end_mb)} MB; slope"
        f" {mb(f'{x:+.1f}' for x in report.anon_slope_mb_per_min)} MB/min, over the last two"
        f" minutes {mb(f'{x:+.1f}' for x in report.anon_last_slope_mb_per_min)} MB/min.",
        "- CPU in % of one core (the machine has 2: 200 % is all of it); `machine`: every"
        " process, other engineers' included; generator lag: how late the load generator sent"
        " a request at worst.",
        f"- Answered: {report.visits_answered} visits, {report.pings_answered} pings;"
        f" {report.fallbacks} visitors got the fallback number.",
        f"- Stored: {db['sessions']} sessions, {db['leases']} leases ({db['extended']} extended),"
        f" {db['page_views']} page views, {db['overlaps']} overlapping leases; database"
        f" {report.db_bytes / 2**20:.1f} MB.",
        "",
        "Problems: " + ("; ".join(report.problems) if report.problems else "none."),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Shape()
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--visits-per-s", type=float, default=defaults.visits_per_s)
    parser.add_argument("--visit-minutes", type=float, default=defaults.visit_minutes)
    parser.add_argument("--ping-s", type=float, default=defaults.ping_s)
    parser.add_argument("--ramp-s", type=float, default=defaults.ramp_s)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--daemons", type=int, default=1, help="PostgreSQL only")
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        help="name=value for the throwaway PostgreSQL, e.g. synchronous_commit=off (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/soak_<database>.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.daemons > 1 and args.database == "sqlite":
        parser.error("several daemons share a PostgreSQL database, not a SQLite file")
    shape = Shape(
        minutes=args.minutes,
        sessions=args.sessions,
        visits_per_s=args.visits_per_s,
        visit_minutes=args.visit_minutes,
        ping_s=args.ping_s,
        ramp_s=args.ramp_s,
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="calltrack-soak-")))
        postgres = args.database == "postgresql"
        url = stack.enter_context(throwaway_postgres(args.pg_setting)) if postgres else None
        report = soak(shape, workdir, url, args.daemons)
    text_ = markdown(report, sys.argv[1:] if argv is None else argv)
    print(text_)
    if not args.no_write:
        out = args.out or lease_api.BENCH / "results" / f"soak_{report.database}.md"
        out.write_text(text_)
        print(f"written to {out}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
