"""The soak benchmark (bench/soak.py) in its short form: a real `calltrack serve` on SQLite under
an open-loop load of sessions pinging and new visits arriving, with no error, everything stored,
no number held twice at once, and memory that does not run away (issue 15, "Soak and faults").

The stored data are read back here with the test's own queries, and
test_the_soak_reports_refusals_and_fallbacks shows the soak's own checks failing on a daemon
that refuses visitors and a pool that is too small: a clean report means something."""

from __future__ import annotations

import contextlib
import math
import sqlite3
from pathlib import Path

from bench.soak import Report, Shape, soak
from tests.postgres.test_two_daemons import Span, overlaps

SHORT = Shape(minutes=0.25, sessions=1000, visits_per_s=20, visit_minutes=0.5, ping_s=5, ramp_s=3)
RSS_GROWTH_MB = 40  # measured: +7 MB for ~1,300 sessions; a leak per request would pass 40


def base_pings(shape: Shape) -> int:
    """Pings the sessions of the ramp send at least: session i starts at ramp·i/n and pings every
    ping_s until the end of the run."""
    total = 0
    for i in range(shape.sessions):
        start = shape.ramp_s * i / shape.sessions
        total += math.ceil((shape.ramp_s + shape.minutes * 60 - start) / shape.ping_s) - 1
    return total


def assert_clean(report: Report, sessions: int, page_views: int, spans: list[Span]) -> None:
    assert report.failures == 0, report.errors
    assert report.fallbacks == 0
    # every visit answered is stored, and only those; some new visits came after the ramp
    assert sessions == report.visits_answered > SHORT.sessions
    assert report.pings_answered >= base_pings(SHORT)
    assert page_views == report.visits_answered + report.pings_answered  # a new page each time
    assert len(spans) == report.visits_answered  # every visit holds a number, once
    assert overlaps(spans) == []
    assert report.problems == []
    for start, end in zip(report.rss_start_mb, report.rss_end_mb, strict=True):
        assert 0 < end - start < RSS_GROWTH_MB, (start, end)


def read_sqlite(db: Path) -> tuple[int, int, list[Span]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (sessions,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
        (page_views,) = conn.execute("SELECT count(*) FROM page_views").fetchone()
        rows = conn.execute("SELECT number, session_id, started_at, held_until FROM leases")
        return sessions, page_views, [Span(*row) for row in rows]


def test_a_short_soak_on_sqlite_is_clean(tmp_path: Path) -> None:
    report = soak(SHORT, tmp_path)
    assert report.daemons == 1 and report.database == "sqlite"
    assert_clean(report, *read_sqlite(tmp_path / "calltrack.db"))
    assert sum(m["requests"] for m in report.minutes.values()) > SHORT.sessions + base_pings(SHORT)
    assert report.db_bytes > (tmp_path / "calltrack.db").stat().st_size // 2 > 0


def test_the_soak_reports_refusals_and_fallbacks(tmp_path: Path) -> None:
    """All visitors from one address (the proxy is not trusted), allowed 30 new visits, and a
    pool of 10 numbers: 20 of the 30 get the fallback, every later visit is refused."""
    shape = Shape(minutes=0.05, sessions=60, visits_per_s=10, visit_minutes=0.1, ping_s=2, ramp_s=2)
    report = soak(
        shape,
        tmp_path,
        numbers=10,
        config_changes={"http": {"trusted_proxies": [], "max_new_visits_per_ip": 30}},
    )
    assert report.visits_answered == 30
    assert report.fallbacks == 20
    refused = sum(m["non2xx"] for m in report.minutes.values())
    assert refused >= 30 and report.failures == refused
    problems = " | ".join(report.problems)
    assert f"{refused} requests failed: visit: 429" in problems
    assert "20 visitors got the fallback" in problems
