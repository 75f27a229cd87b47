"""The pool-advice benchmark's data (bench/pool_data.py) read back by `calltrack pools
--recommend` as the benchmark runs it (issue 13). A benchmark of a command that answered about
other data than the generator meant would time nothing: the rows must say what the generator's
simulation decided, the command must agree with it, and the naive baseline must give the
command's curve."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bench import pool_advice, pool_data
from pbx.settings import Settings
from pbx.storage.db import open_engine, upgrade

SHAPE = pool_data.Shape(days=2, visits_per_day=1500, seed=5, pool_share=0.8)


async def written(tmp_path: Path) -> tuple[Path, str, pool_data.Facts]:
    path = tmp_path / "pools.db"
    database = f"sqlite+aiosqlite:///{path}"
    engine = open_engine(database)
    try:
        await upgrade(engine)
        facts = await pool_data.write(engine, SHAPE)
    finally:
        await engine.dispose()
    return path, database, facts


def swept_peak(path: Path) -> int:
    """The most numbers held at once with an unlimited pool, by a sweep over sorted events (not
    the generator's heap): +1 at each arrival that asked the pool, -1 just after its last
    activity plus the freeze time (a number held until t is still held at t)."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT p.started_at, s.last_seen FROM session_pools p JOIN sessions s"
            " ON s.id = p.session_id WHERE p.tracking IN ('tracked', 'exhausted')"
        ).fetchall()
    events = sorted(
        [(arrival, 0, 1) for arrival, _ in rows]
        + [(last + pool_data.FREEZE, 1, -1) for _, last in rows]
    )
    held = peak = 0
    for _, _, change in events:
        held += change
        peak = max(peak, held)
    return peak


async def test_the_command_answers_what_the_bench_data_holds(tmp_path: Path) -> None:
    path, database, facts = await written(tmp_path)
    with sqlite3.connect(path) as db:
        counted = dict(db.execute("SELECT tracking, count(*) FROM session_pools GROUP BY 1"))
        kinds = dict(db.execute("SELECT attribution, count(*) FROM calls GROUP BY 1"))
        sessions, visitors = db.execute(
            "SELECT count(*), (SELECT sum(visits) FROM visitors) FROM sessions"
        ).fetchone()
        candidates = db.execute("SELECT count(DISTINCT call_id) FROM call_candidates").fetchone()
    assert sessions == visitors == 3000 == facts.visits
    assert counted == {
        "tracked": facts.tracked,
        "exhausted": facts.exhausted,
        "ip_cap": facts.ip_cap,
    }
    assert facts.exhausted > 0 and facts.ip_cap > 0  # the pool ran out, as the bench wants
    assert kinds == {
        "session": facts.session_calls,
        "probable": facts.probable_calls,
        "unknown": facts.unknown_calls,
        "fallback": facts.fallback_calls,
    }
    assert candidates == (facts.probable_calls,)
    assert facts.peak == swept_peak(path)
    assert facts.size == round(facts.peak * 0.8)

    config = tmp_path / "calltrack.yaml"
    config.write_text(json.dumps(pool_data.config(database, facts.size)))
    command = pool_advice.run_command(config, SHAPE)
    pool = pool_advice.check(command.answer, facts)  # exits on a mismatch
    assert command.max_rss_mb > 0
    assert 0 < pool_advice.heap_peak_mb(pool_data.config(database, facts.size), SHAPE) < 1000
    assert pool["numbers"] == facts.size and pool["peak_demand"] == swept_peak(path)
    assert pool["peak_held"] == min(facts.size, facts.peak)

    # the naive baseline: the tracked visits at a few sizes, as the command's curve says
    settings = Settings.model_validate(pool_data.config(database, facts.size))
    records = (await pool_advice.split(database, settings, SHAPE))[2]
    naive = pool_advice.naive(records[0], facts.peak, pool_data.FREEZE)
    assert naive.sizes == sorted({round(facts.peak * k / 5) for k in range(1, 6)})
    assert naive.tracked == pool_advice.curve_counts(pool, facts, naive.sizes)
    assert naive.tracked[-1] == facts.tracked + facts.exhausted  # the peak tracks every visit
