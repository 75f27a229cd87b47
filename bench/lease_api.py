"""Lease-API benchmark: calltrack's visitor API against a bare aiohttp JSON endpoint, same run.

Two scenarios (issue 15), both driven by bench/lease_mix.lua and both starting with --held
visits already on the site: `pings`, pings of those held numbers only, and `mix`, 1 lease : 9
pings, the held visits pinged 9 times like the new ones. The held visits keep the mix's leases
at exactly one request in ten: without them the script ran out of sessions to ping whenever
the leases' answers lagged, and then every connection leased at once (bursts of 25 to 50, which
SQLite's group commit then wrote together, far cheaper than visitors arriving one by one do).
Besides req/s, each run records the server's CPU time (utime + stime from /proc), so the CPU
cost of a request is compared too: on a machine shared with other work, CPU per request moves
much less than req/s, which drops whenever another process takes the server's core.

A machine's absolute requests/s say little (this one has two noisy cores), so the figure that
matters is the ratio of calltrack's leases+pings per second to what aiohttp itself does when it
only parses and answers JSON (bench/bare_app.py), measured in the same run with runs interleaved
A/B/A/B so that noise hits both. Both servers are driven by one wrk script (bench/lease_mix.lua):
visitors that each take a lease and then ping it 9 times, ids taken from the answers.

calltrack runs as `calltrack serve` on a fresh SQLite database per run (so every run starts
from the same state) with a pool large enough that no visitor gets the fallback, and after each
run the database is checked: every lease stored, no number leased twice at once, page views kept.

With --pinning split the server gets core 0 and wrk core 1 (taskset); with none the kernel
places them. Both are measured by default, because on two cores neither is the whole truth.

Usage: .venv/bin/python bench/lease_api.py [--duration 10] [--connections 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).absolute().parent
REPO = BENCH.parent  # the checkout whose calltrack is measured (PYTHONPATH, not the installed one)
LUA = BENCH / "lease_mix.lua"
#: visitors already on the site when a run starts (--held), pinged like any visit
HELD_VISITS = 1000
ORIGIN = "http://127.0.0.1:8000"
SITE = "bench"
#: scenario -> the req/s ratio to the bare endpoint it must reach (issue 15)
TARGET_RATIO = {"pings": 0.8, "mix": 0.6}
TARGET_P99_MS = 25.0


@dataclass
class Run:
    """One wrk run against one server, with what the database says about it afterwards."""

    server: str  # "bare", "calltrack", or "before" (the --before checkout)
    scenario: str  # "pings" or "mix"
    pinning: str
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    leases: int
    pings: int
    fallbacks: int
    unparsed: int
    cpu_s: float  # the server process's CPU time during the measured run
    db: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_us(self) -> float:
        """CPU per request, in microseconds."""
        return self.cpu_s / self.requests * 1e6 if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mix(self) -> str:
        return f"1:{self.pings / self.leases:.2f}" if self.leases else "-"


#: where free_port looks when the kernel does not say its ephemeral range
EPHEMERAL_LOW = 32768


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now, for a server started next, taken below the
    kernel's ephemeral range. A port the kernel picks (bind to port 0) is one it also gives to
    outgoing connections as their own: between this choice and the server's bind, a test or a
    load generator opening connections took it, and the server failed with EADDRINUSE (in CI,
    beside the soak's thousands of connections)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = EPHEMERAL_LOW
    for _attempt in range(200):
        port = random.randrange(10000, max(10001, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def pinned(core: str | None, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if core is not None else list(argv)


def write_config(
    directory: Path, numbers: int, database: str = "sqlite+aiosqlite:///calltrack.db"
) -> Path:
    """A site with two pools (paid clicks, everything else) sharing `numbers` numbers."""
    half = numbers // 2
    paid = [f"+7499{1000000 + i:07d}" for i in range(half)]
    other = [f"+7499{2000000 + i:07d}" for i in range(numbers - half)]
    config = {
        "freeze_time": "15m",
        "forward_to": "PJSIP/realline",
        "sites": [
            {
                "name": SITE,
                "origins": [ORIGIN],
                "replace": ["+7 (495) 123-45-67"],
                "pools": [
                    {"name": "paid", "when": {"utm_medium": ["cpc", "ppc"]}, "numbers": paid},
                    {"name": "other", "numbers": other},
                ],
                "fallback": "+74990000099",
            }
        ],
        "database": database,
        "recordings": {"dir": "recordings"},
        "http": {"trusted_proxies": ["127.0.0.1"], "ping_interval": "30s"},
    }
    path = directory / "calltrack.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()}")
        url = f"http://127.0.0.1:{port}/healthz"
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"server on port {port} not ready in 60 s:\n{log.read_text()}")


def server_env(repo: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def server(
    argv: list[str], port: int, log: Path, repo: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=server_env(repo)
        )
        try:
            wait_ready(port, proc, log)
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)  # calltrack flushes its write-behind on the way out
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_visits(port: int, count: int, out: Path) -> None:
    """Start `count` visits before wrk runs (the pings scenario pings only these): one line
    "session_id visitor_id" each, each visitor from an address of its own."""
    lines = []
    for i in range(count):
        body = json.dumps(
            {"site": SITE, "url": f"https://bench.example/landing/{i % 50}?utm_medium=cpc"}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/visits",
            data=body,
            headers={
                "Content-Type": "application/json",
                "Origin": ORIGIN,
                "X-Forwarded-For": f"10.1.{i // 250}.{i % 250 + 1}",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            visit = json.load(answer)
        lines.append(f"{visit['session_id']} {visit['visitor_id']}\n")
    out.write_text("".join(lines))


def run_wrk(
    args: argparse.Namespace,
    core: str | None,
    port: int,
    seconds: float,
    sessions: Path,
    scenario: str,
) -> dict[str, Any]:
    script = [str(LUA), f"http://127.0.0.1:{port}", "--", str(args.pings), ORIGIN, SITE]
    script += [str(args.think_ms), str(sessions), scenario, str(args.threads)]
    argv = pinned(
        core,
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            *script,
        ],
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no BENCH_JSON line:\n{out}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    return result


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the server while wrk runs (--nonblocking: the server is not paused)."""
    argv = ["py-spy", "record", "-p", str(pid), "-d", str(max(1, int(seconds) - 1))]
    argv += ["-r", "250", "-f", "raw", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


#: where a sample's innermost frame is, by file: what is calltrack's own work and what is not
PROFILE_KINDS = (
    ("SQLite, run by calltrack (pbx/storage/db.py)", ("pbx/storage/db.py",)),
    ("calltrack's Python", ("pbx/", "web_widget/", "attribution/", "integrations/")),
    ("socket send (the kernel's loopback, as bare)", ("_SelectorSocketTransport.write",)),
    ("aiohttp, asyncio, yarl, multidict (as bare)", ("aiohttp/", "asyncio/", "yarl/", "selectors")),
    ("JSON (json, pydantic)", ("json/", "pydantic")),
)


def _frame(frame: str) -> tuple[str, str]:
    """("path/file.py:function", "function (path/file.py)") of a py-spy raw frame."""
    function, _, where = frame.partition(" (")
    path = where.split(":")[0].split("site-packages/")[-1].removeprefix(str(REPO) + "/")
    return f"{path}:{function}", f"{function} ({path})"


def profile_table(raw: Path) -> list[str]:
    """Self time by kind of work and the top functions, from py-spy's raw (folded) output."""
    kinds: dict[str, int] = {}
    functions: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        key, name = _frame(stack.split(";")[-1])
        total += int(count)
        functions[name] = functions.get(name, 0) + int(count)
        kind = next((k for k, marks in PROFILE_KINDS if any(m in key for m in marks)), "other")
        kinds[kind] = kinds.get(kind, 0) + int(count)
    if not total:
        return ["(no samples)"]
    lines = ["| where the server's time went (self time) | share |", "|---|---:|"]
    lines += [
        f"| {kind} | {count / total:.0%} |"
        for kind, count in sorted(kinds.items(), key=lambda x: -x[1])
    ]
    lines += ["", "| top functions (self time) | share |", "|---|---:|"]
    top = sorted(functions.items(), key=lambda x: -x[1])[:15]
    lines += [f"| `{name}` | {count / total:.1%} |" for name, count in top]
    return lines


# What calltrack stored: all of it must be there, and no number leased twice at once. Plain
# SQL that SQLite and PostgreSQL both run (bench/soak.py reads them on either).
STATS = {
    "sessions": "SELECT count(*) FROM sessions",
    "tracked": "SELECT count(*) FROM sessions WHERE tracking = 'tracked'",
    "leases": "SELECT count(*) FROM leases",
    "page_views": "SELECT count(*) FROM page_views",
    "extended": "SELECT count(*) FROM leases WHERE last_activity > started_at",
    "overlaps": "SELECT count(*) FROM leases a JOIN leases b ON a.number = b.number"
    " AND a.id < b.id AND a.started_at <= b.held_until AND b.started_at <= a.held_until",
}


def db_stats(path: Path) -> dict[str, int]:
    """STATS of a SQLite database."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {name: int(db.execute(sql).fetchone()[0]) for name, sql in STATS.items()}


def measure(
    args: argparse.Namespace, kind: str, scenario: str, pinning: str, round_no: int, workdir: Path
) -> Run:
    server_core, wrk_core = ("0", "1") if pinning == "split" else (None, None)
    port = free_port()
    run_dir = workdir / f"{kind}-{scenario}-{pinning}-{round_no}"
    run_dir.mkdir()
    repo = args.before if kind == "before" else REPO
    if kind == "bare":
        argv = [sys.executable, str(BENCH / "bare_app.py"), str(port)]
    else:
        config = write_config(run_dir, args.numbers)
        subprocess.run(
            [sys.executable, "-m", "pbx.cli", "db", "upgrade", "-c", str(config)],
            check=True,
            capture_output=True,
            cwd=repo,
            env=server_env(repo),
        )
        argv = [sys.executable, "-m", "pbx.cli", "serve", "-c", str(config), "--port", str(port)]
    with server(pinned(server_core, argv), port, run_dir / "server.log", repo) as proc:
        # both scenarios start with visitors already on the site (see lease_mix.lua's MIX)
        sessions = run_dir / "sessions.txt"
        start_visits(port, args.held, sessions)
        if args.warmup > 0:
            run_wrk(args, wrk_core, port, args.warmup, sessions, scenario)
        cpu_before = cpu_seconds(proc.pid)
        spy = None
        if args.profile and kind == "calltrack" and round_no == 1:
            spy = start_profile(proc.pid, args.duration, run_dir / "profile.txt")
        raw = run_wrk(args, wrk_core, port, args.duration, sessions, scenario)
        cpu = cpu_seconds(proc.pid) - cpu_before
        if spy is not None:
            spy.wait(timeout=60)
            args.profiles[scenario] = profile_table(run_dir / "profile.txt")
    run = Run(
        server=kind,
        scenario=scenario,
        pinning=pinning,
        round=round_no,
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non2xx=raw["non2xx"],
        socket_errors=raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        leases=raw["leases"],
        pings=raw["pings"],
        fallbacks=raw["fallbacks"],
        unparsed=raw["unparsed"],
        cpu_s=cpu,
    )
    if kind != "bare":
        run.db = db_stats(run_dir / "calltrack.db")
    print(
        f"  {kind:<9} {scenario:<5} {pinning:<5} round {round_no}: {run.rps:8.0f} req/s"
        f"  CPU {run.cpu_us:6.1f} us/req"
        f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  non-2xx {run.non2xx}"
        f"  mix {run.mix}" + (f"  db {run.db}" if run.db else ""),
        flush=True,
    )
    return run


@dataclass
class Summary:
    scenario: str
    pinning: str
    bare_rps: float
    calltrack_rps: float
    ratio: float
    pair_ratios: list[float]
    p50_ms: float
    p99_ms: float  # the worst calltrack run's p99
    bare_p99_ms: float
    non2xx: int
    problems: list[str]
    bare_cpu_us: float  # CPU per request, mean of the runs
    calltrack_cpu_us: float
    before_rps: float | None = None  # the --before checkout's calltrack, same rounds

    @property
    def cpu_ratio(self) -> float:
        """bare's CPU per request / calltrack's: the req/s ratio a core of its own would give."""
        return self.bare_cpu_us / self.calltrack_cpu_us

    @property
    def versus_before(self) -> float | None:
        return self.calltrack_rps / self.before_rps if self.before_rps else None

    @property
    def passed(self) -> bool:
        return (
            self.ratio >= TARGET_RATIO[self.scenario]
            and self.p99_ms < TARGET_P99_MS
            and not self.problems
        )


def summarise(scenario: str, pinning: str, runs: list[Run], held: int) -> Summary:
    def of(server: str) -> list[Run]:
        return [r for r in runs if (r.server, r.scenario, r.pinning) == (server, scenario, pinning)]

    bare, ours, before = of("bare"), of("calltrack"), of("before")
    problems: list[str] = []
    for run in ours:
        db = run.db
        where = f"calltrack {scenario} {pinning} round {run.round}"
        if run.fallbacks:
            problems.append(f"{where}: {run.fallbacks} visits got the fallback (pool too small)")
        if db["overlaps"]:
            problems.append(f"{where}: {db['overlaps']} overlapping leases")
        if db["leases"] != db["tracked"] or db["leases"] < run.leases:
            problems.append(f"{where}: leases stored {db['leases']}, answered {run.leases}")
        if scenario == "pings" and (db["leases"] != held or run.leases):
            problems.append(f"{where}: {db['leases']} leases stored, {held} visits started")
    for run in bare + ours:
        if run.non2xx or run.socket_errors or run.unparsed:
            problems.append(
                f"{run.server} {pinning} round {run.round}: non-2xx {run.non2xx},"
                f" socket errors {run.socket_errors}, unparsed {run.unparsed}"
            )
    bare_rps = statistics.mean(r.rps for r in bare)
    our_rps = statistics.mean(r.rps for r in ours)
    return Summary(
        before_rps=statistics.mean(r.rps for r in before) if before else None,
        scenario=scenario,
        pinning=pinning,
        bare_rps=bare_rps,
        calltrack_rps=our_rps,
        ratio=our_rps / bare_rps,
        pair_ratios=[o.rps / b.rps for b, o in zip(bare, ours, strict=True)],
        p50_ms=statistics.median(r.p50_ms for r in ours),
        p99_ms=max(r.p99_ms for r in ours),
        bare_p99_ms=max(r.p99_ms for r in bare),
        non2xx=sum(r.non2xx for r in bare + ours),
        problems=problems,
        bare_cpu_us=statistics.mean(r.cpu_us for r in bare),
        calltrack_cpu_us=statistics.mean(r.cpu_us for r in ours),
    )


def versions() -> str:
    import aiohttp
    import sqlalchemy

    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return (
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__},"
        f" SQLAlchemy {sqlalchemy.__version__}, SQLite {sqlite3.sqlite_version}, {wrk};"
        f" {os.cpu_count()} CPUs ({platform.machine()}), Linux {platform.release()}"
    )


def markdown(args: argparse.Namespace, runs: list[Run], summaries: list[Summary]) -> str:
    lines = [
        "# Lease API benchmark",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/lease_api.py', *args.argv])}`"
        f" — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{versions()}.",
        f"wrk: {args.threads} thread(s), {args.connections} connections, {args.duration:g} s per"
        f" run after {args.warmup:g} s of warm-up; {args.rounds} rounds of bare/calltrack"
        f" interleaved; calltrack on a fresh SQLite database per run, {args.numbers} numbers in"
        " two pools.",
        f"Scenarios: `pings`: pings of held numbers only, {args.held} visits started before wrk"
        " runs, each pinged round-robin, a new page every third ping; `mix`: each visitor 1"
        f" lease + {args.pings} pings, the {args.held} held visits too, leases exactly one"
        " request in ten.",
        "Pinning `split`: server on core 0, wrk on core 1 (taskset); `none`: not pinned.",
        (
            f"Offered load: each connection waits {args.think_ms} ms before each request, so"
            " the latencies are at that fixed load and the req/s ratio says nothing."
            if args.think_ms
            else "Offered load: saturation (no wait between requests): the req/s ratio is the"
            " throughput ratio; latencies are those of a saturated server."
        ),
        "",
        "## Summary",
        "",
        "| scenario | pinning | bare req/s | calltrack req/s | ratio (pairs) | CPU µs/req bare"
        " / calltrack (ratio) | calltrack p50 | calltrack p99 (worst run) | bare p99 | non-2xx"
        " | targets | before req/s | now / before |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for s in summaries:
        pairs = ", ".join(f"{r:.2f}" for r in s.pair_ratios)
        verdict = "met" if s.passed else "NOT met"
        versus = (
            f"{s.before_rps:.0f} | **{s.versus_before:.2f}**"
            if s.before_rps and s.versus_before
            else "- | -"
        )
        lines.append(
            f"| {s.scenario} | {s.pinning} | {s.bare_rps:.0f} | {s.calltrack_rps:.0f} |"
            f" **{s.ratio:.2f}** ({pairs}) | {s.bare_cpu_us:.1f} / {s.calltrack_cpu_us:.1f}"
            f" ({s.cpu_ratio:.2f}) | {s.p50_ms:.2f} ms | {s.p99_ms:.2f} ms |"
            f" {s.bare_p99_ms:.2f} ms | {s.non2xx} | {verdict} | {versus} |"
        )
    if args.before:
        lines += [
            "",
            f"`before`: calltrack from `{args.before}` (`--before`), run in the same rounds"
            " (bare, before, calltrack; the two calltracks swap places every other round): a"
            " regression check of a change, side by side.",
        ]
    lines += [
        "",
        "Targets: req/s ratio ≥ "
        + ", ".join(f"{ratio} ({scenario})" for scenario, ratio in TARGET_RATIO.items())
        + f", calltrack p99 < {TARGET_P99_MS:g} ms, no non-2xx, no fallback, no overlapping"
        " lease. The CPU ratio is bare's CPU per request over calltrack's: what the req/s ratio"
        " would be if each server had a core to itself.",
    ]
    for s in summaries:
        lines += [f"- {s.scenario} {s.pinning}: {p}" for p in s.problems]
    lines += [
        "",
        "## Runs",
        "",
        "| # | server | scenario | pinning | req/s | CPU µs/req | p50 | p90 | p99 | max | non-2xx"
        " | leases | pings | lease:ping | stored: sessions / leases / extended / page views /"
        " overlaps |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        db = r.db
        stored = (
            f"{db['sessions']} / {db['leases']} / {db['extended']} / {db['page_views']}"
            f" / {db['overlaps']}"
            if db
            else "-"
        )
        lines.append(
            f"| {i} | {r.server} | {r.scenario} | {r.pinning} | {r.rps:.0f} | {r.cpu_us:.1f}"
            f" | {r.p50_ms:.2f} | {r.p90_ms:.2f}"
            f" | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.non2xx} | {r.leases} | {r.pings} |"
            f" {r.mix} | {stored} |"
        )
    lines += [
        "",
        "Latencies in ms, from wrk. `leases`/`pings`: answers to new and to known sessions as"
        " counted by the wrk script (the mix actually served, including the warm-up-free"
        " measured run only); `stored`: rows in the run's database after the server stopped"
        " (includes the warm-up). `extended`: leases whose last activity moved past their start.",
        "",
    ]
    for scenario, table in args.profiles.items():
        lines += [f"## Profile: {scenario} (py-spy, calltrack's first run)", "", *table, ""]
    return "\n".join(lines)


def run_order(round_no: int, before: bool) -> tuple[str, ...]:
    """The servers of one round. With --before, the two calltracks swap places every round
    (A B / B A): on these machines a run's speed drifts within a round, and a fixed order would
    lay that drift on one of them."""
    if not before:
        return ("bare", "calltrack")
    return ("bare", "before", "calltrack") if round_no % 2 else ("bare", "calltrack", "before")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="bare/calltrack pairs per pinning")
    parser.add_argument("--pings", type=int, default=9, help="pings per visit")
    parser.add_argument("--numbers", type=int, default=20000, help="tracking numbers in the pool")
    parser.add_argument("--pinning", choices=["split", "none", "both"], default="both")
    parser.add_argument("--scenario", choices=["pings", "mix", "both"], default="both")
    parser.add_argument(
        "--held",
        type=int,
        default=HELD_VISITS,
        help="visits started before each run, both scenarios",
    )
    parser.add_argument(
        "--think-ms",
        type=int,
        default=0,
        help="each connection waits this long before each request: a fixed offered load"
        " (latency at that load) instead of saturation (throughput)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample calltrack's first run of each scenario with py-spy (on PATH) and add where"
        " its time went to the report",
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "lease_api.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier calltrack (git worktree add DIR REV): measured in the"
        " same rounds, for a side-by-side regression check",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.profiles = {}
    if args.profile and shutil.which("py-spy") is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install wrk util-linux)")
    pinnings = ["split", "none"] if args.pinning == "both" else [args.pinning]
    scenarios = ["pings", "mix"] if args.scenario == "both" else [args.scenario]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="calltrack-bench-") as tmp:
        for scenario in scenarios:
            for pinning in pinnings:
                for round_no in range(1, args.rounds + 1):
                    for kind in run_order(round_no, bool(args.before)):
                        runs.append(measure(args, kind, scenario, pinning, round_no, Path(tmp)))
    summaries = [summarise(sc, p, runs, args.held) for sc in scenarios for p in pinnings]
    report = markdown(args, runs, summaries)
    print()
    print(report)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(f"written to {args.out}")
    return 0 if all(s.passed for s in summaries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
