"""An install upgraded to the report rollups: `calltrack db upgrade` counts the visits and
credits the calls stored before them, and `calltrack reports rebuild` does it again, the same."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from pbx.storage import db
from tests.api.test_cli import calltrack, config

AT = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def _database_at(path: Path, revision: str) -> None:
    """A new SQLite database at `path`, migrated as far as `revision`."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        alembic = db._alembic_config()
        alembic.attributes["connection"] = conn
        command.upgrade(alembic, revision)
    engine.dispose()


def _database_at_0006_with_a_visit_and_its_call(path: Path, revision: str = "0006") -> None:
    _database_at(path, revision)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO visitors (id, created_at, visits, first_source, first_medium)"
            " VALUES ('v1', ?, 1, 'google', 'cpc')",
            (AT,),
        )
        conn.execute(
            "INSERT INTO sessions (id, visitor_id, site, visit_number, started_at, last_seen,"
            " landing_url, source, medium, campaign, click_ids, pool, tracking, pages_viewed,"
            " last_url) VALUES ('s1', 'v1', 'main', 1, ?, ?, 'http://shop.test/sale', 'google',"
            " 'cpc', 'spring', '{}', 'paid', 'tracked', 1, 'http://shop.test/sale')",
            (AT, AT),
        )
        conn.execute(
            "INSERT INTO calls (linkedid, caller, did, started_at, answered_at, ended_at, status,"
            " dial_status, ring_seconds, talk_seconds, repeat_caller, attribution, site, pool,"
            " session_id, visitor_id, source, medium, campaign, landing_url)"
            " VALUES ('l1', '+79160000001', '+74990000001', ?, ?, ?, 'answered', 'ANSWER', 5, 40,"
            " 0, 'session', 'main', 'paid', 's1', 'v1', 'google', 'cpc', 'spring',"
            " 'http://shop.test/sale')",
            (AT + 60, AT + 65, AT + 105),
        )


def _rollups(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        credits = conn.execute(
            "SELECT model, day, kind, source, campaign, landing, status, talk_seconds"
            " FROM call_credits ORDER BY model"
        ).fetchall()
        visits = conn.execute("SELECT day, source, visits FROM visit_channels").fetchall()
    return credits, visits


def test_db_upgrade_builds_the_rollups_of_what_was_stored_before(tmp_path: Path) -> None:
    path = config(tmp_path)
    database = tmp_path / "calltrack.db"
    _database_at_0006_with_a_visit_and_its_call(database)
    upgraded = calltrack("db", "upgrade", "-c", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "report rollups built: 1 visits, 1 calls" in upgraded.stdout
    credits, visits = _rollups(database)
    assert visits == [(20270115, "google", 1)]
    assert credits == [
        (model, 20270115, "session", "google", "spring", "/sale", "answered", 40.0)
        for model in ("first", "last", "last_non_direct")
    ]
    again = calltrack("reports", "rebuild", "-c", str(path))
    assert again.returncode == 0, again.stderr
    assert "report rollups rebuilt: 1 visits, 1 calls" in again.stdout
    assert _rollups(database) == (credits, visits)
    quiet = calltrack("db", "upgrade", "-c", str(path))  # built once: not again
    assert "report rollups" not in quiet.stdout


def test_db_upgrade_counts_the_visits_of_an_install_that_had_no_calls_yet(tmp_path: Path) -> None:
    path = config(tmp_path)
    database = tmp_path / "calltrack.db"
    _database_at_0006_with_a_visit_and_its_call(database)
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM calls")
    upgraded = calltrack("db", "upgrade", "-c", str(path))
    assert "report rollups built: 1 visits, 0 calls" in upgraded.stdout, upgraded.stderr
    assert _rollups(database) == ([], [(20270115, "google", 1)])


def test_a_rebuild_keeps_the_counts_of_days_whose_visits_retention_deleted(
    tmp_path: Path,
) -> None:
    path = config(tmp_path)
    database = tmp_path / "calltrack.db"
    _database_at_0006_with_a_visit_and_its_call(database)
    with sqlite3.connect(database) as conn:  # an older visit, and a visit a day later
        for sid, at in (("s0", AT - 86400 * 3), ("s2", AT + 86400)):
            conn.execute(
                "INSERT INTO sessions (id, visitor_id, site, visit_number, started_at, last_seen,"
                " landing_url, source, medium, click_ids, tracking, pages_viewed, last_url)"
                " VALUES (?, 'v1', 'main', 2, ?, ?, 'http://shop.test/', 'yandex', 'organic',"
                " '{}', 'tracked', 1, 'http://shop.test/')",
                (sid, at, at),
            )
    assert calltrack("db", "upgrade", "-c", str(path)).returncode == 0
    counted = sorted(_rollups(database)[1])
    assert counted == [
        (20270112, "yandex", 1),
        (20270115, "google", 1),
        (20270116, "yandex", 1),
    ]
    with sqlite3.connect(database) as conn:  # retention: the oldest visit is forgotten
        conn.execute("DELETE FROM page_views WHERE session_id = 's0'")
        conn.execute("DELETE FROM sessions WHERE id = 's0'")
    rebuilt = calltrack("reports", "rebuild", "-c", str(path))
    assert "report rollups rebuilt: 3 visits, 1 calls" in rebuilt.stdout, rebuilt.stderr
    assert sorted(_rollups(database)[1]) == counted


def test_db_upgrade_keeps_each_stored_sessions_landing_path_and_referrer_host(
    tmp_path: Path,
) -> None:
    """0020 fills the two columns the session-counting reports group by, for every session
    stored before it (more than one batch of them)."""
    path = config(tmp_path)
    database = tmp_path / "calltrack.db"
    _database_at(database, "0019")
    stored = {
        "a": ("https://shop.test/sale/?utm_source=x#top", "https://WWW.Search.test/q?x=1"),
        "b": ("https://shop.test", None),
        "c": ("https://shop.test/" + "p" * 300, "not a url"),
        "d": ("http://[bad/x", "http://[bad"),
    }
    filler = {f"z{n:05}": ("https://shop.test/many", "https://ref.test/") for n in range(5001)}
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO visitors (id, created_at, visits, first_source, first_medium)"
            " VALUES ('v1', ?, 1, 'google', 'cpc')",
            (AT,),
        )
        conn.executemany(
            "INSERT INTO sessions (id, visitor_id, site, visit_number, started_at, last_seen,"
            " landing_url, referrer, source, medium, click_ids, tracking, pages_viewed,"
            " last_url) VALUES (?, 'v1', 'main', 1, ?, ?, ?, ?, 'google', 'cpc', '{}',"
            " 'tracked', 1, '')",
            [(sid, AT, AT, url, ref) for sid, (url, ref) in (stored | filler).items()],
        )
    upgraded = calltrack("db", "upgrade", "-c", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    with sqlite3.connect(database) as conn:
        kept = dict(
            (sid, (landing, host))
            for sid, landing, host in conn.execute(
                "SELECT id, landing_path, referrer_host FROM sessions"
            )
        )
    assert {sid: kept[sid] for sid in stored} == {
        "a": ("/sale/", "search.test"),
        "b": ("/", ""),
        "c": ("/" + "p" * 199, ""),
        "d": ("/", ""),
    }
    assert {kept[sid] for sid in filler} == {("/many", "ref.test")}


def test_a_rebuild_keeps_the_counts_up_to_retentions_horizon_not_the_oldest_kept_visit(
    tmp_path: Path,
) -> None:
    """Retention keeps for ever a visit a call refers to: the oldest kept visit was the first
    that led to a call, a year and more back, and a rebuild counted every day after it again
    from the few visits retention had left (the others' counts gone)."""
    path = config(tmp_path)  # visits.keep_days: 400 (the default)
    database = tmp_path / "calltrack.db"
    assert calltrack("db", "upgrade", "-c", str(path)).returncode == 0
    now = time.time()
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO visitors (id, created_at, visits, first_source, first_medium)"
            " VALUES ('v1', ?, 3, 'google', 'cpc')",
            (now - 600 * 86400,),
        )
        for sid, days_ago in (("called", 600), ("forgotten", 500), ("recent", 10)):
            at = now - days_ago * 86400
            conn.execute(
                "INSERT INTO sessions (id, visitor_id, site, visit_number, started_at, last_seen,"
                " landing_url, source, medium, click_ids, tracking, pages_viewed, last_url)"
                " VALUES (?, 'v1', 'main', 1, ?, ?, 'http://shop.test/', ?, 'organic', '{}',"
                " 'tracked', 1, 'http://shop.test/')",
                (sid, at, at, sid),
            )
    assert calltrack("reports", "rebuild", "-c", str(path)).returncode == 0
    counted = sorted((source, visits) for _day, source, visits in _rollups(database)[1])
    assert counted == [("called", 1), ("forgotten", 1), ("recent", 1)]
    with sqlite3.connect(database) as conn:  # retention: 500 days old, no call refers to it
        conn.execute("DELETE FROM sessions WHERE id = 'forgotten'")
    rebuilt = calltrack("reports", "rebuild", "-c", str(path))
    assert "report rollups rebuilt: 3 visits" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert sorted((s, v) for _d, s, v in _rollups(database)[1]) == counted


def test_an_install_whose_staff_tagged_a_call_upgrades_from_before_0006(tmp_path: Path) -> None:
    """0006 copies calls to widen linkedid (SQLite rebuilds the table): with foreign keys on,
    dropping the old table failed while call_tags referred to it, and `db upgrade` could never
    get past 0006 for an install (or a backup) from 0003-0005 with one tag."""
    path = config(tmp_path)
    database = tmp_path / "calltrack.db"
    _database_at_0006_with_a_visit_and_its_call(database, "0005")
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO call_tags (call_id, tag) VALUES (1, 'lead')")
    upgraded = calltrack("db", "upgrade", "-c", str(path))
    assert upgraded.returncode == 0, upgraded.stderr
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT call_id, tag FROM call_tags").fetchall() == [(1, "lead")]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
