"""`calltrack costs import` as an admin runs it, on a temporary config and SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.api.test_cli import calltrack
from tests.helpers import config_dict, write_config

FIXTURES = Path(__file__).parents[1] / "fixtures" / "costs"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(
        tmp_path / "calltrack.yaml",
        config_dict("sqlite+aiosqlite:///calltrack.db", currency="RUB"),
    )
    assert calltrack("db", "upgrade", "-c", str(path)).returncode == 0
    return path


def stored(config: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(config.parent / "calltrack.db") as db:
        return db.execute(
            "SELECT day, source, medium, campaign, cost_cents FROM costs"
            " ORDER BY day, source, campaign"
        ).fetchall()


def test_google_and_yandex_exports_load_side_by_side_and_reload_idempotently(
    config: Path,
) -> None:
    google = str(FIXTURES / "google-ads.csv")
    result = calltrack("costs", "import", "-c", str(config), google, "--preset", "google-ads")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"imported {google}: 4 rows, 3 days (2024-03-01..2024-03-03), sources google,"
        " total 3245.06 RUB\n"
    )
    yandex = str(FIXTURES / "yandex-direct.csv")
    loaded = calltrack("costs", "import", "-c", str(config), yandex, "--preset", "yandex-direct")
    assert loaded.returncode == 0, loaded.stderr
    expected = [
        (20240301, "google", "cpc", "Brand — search", 123456),
        (20240301, "google", "cpc", "Generic", 1000),
        (20240301, "yandex", "cpc", "Имплантация | поиск", 321040),
        (20240301, "yandex", "cpc", "РСЯ ретаргетинг", 87000),
        (20240302, "google", "cpc", "Brand — search", 50),
        (20240302, "yandex", "cpc", "Имплантация | поиск", 299960),
        (20240303, "google", "cpc", "Brand — search", 200000),
    ]
    assert stored(config) == expected
    again = calltrack("costs", "import", "-c", str(config), google, "--preset", "google-ads")
    assert again.returncode == 0 and stored(config) == expected


def test_a_bad_file_names_its_lines_and_leaves_the_table_unchanged(
    config: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("date,source,medium,campaign,cost\n2024-03-01,google,cpc,a,10\n")
    assert calltrack("costs", "import", "-c", str(config), str(good)).returncode == 0
    before = stored(config)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date,source,medium,campaign,cost\n"
        "2024-03-01,google,cpc,a,99\n"
        "2024-03-02,google,cpc,a,ten\n"
        "03/04/2024,google,cpc,a,1\n"
    )
    result = calltrack("costs", "import", "-c", str(config), str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: cost: expected an amount" in result.stderr
    assert f"{bad}:4: date: expected YYYY-MM-DD or DD.MM.YYYY, got '03/04/2024'" in result.stderr
    assert f"{bad}: nothing imported" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert stored(config) == before == [(20240301, "google", "cpc", "a", 1000)]


def test_dry_run_prints_the_rows_and_stores_nothing(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "vk.csv"
    path.write_text("Day;Spent;Ad\n01.03.2024;1 500,50;spring\n")
    result = calltrack(
        "costs",
        "import",
        "-c",
        str(config),
        str(path),
        "--map",
        "date=Day,cost=Spent,campaign=Ad",
        "--source",
        "vk",
        "--medium",
        "social",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2024-03-01\tvk\tsocial\tspring\t1500.50",
        f"dry run, nothing stored: {path}: 1 rows, 1 days (2024-03-01..2024-03-01),"
        " sources vk, total 1500.50 RUB",
    ]
    assert stored(config) == []
