"""`calltrack simulate`: its table, its --json shape, and its refusals of bad flags."""

from __future__ import annotations

import json
import math

import pytest

from pbx.cli import main

SMALL = ["simulate", "--days", "1", "--visits-per-day", "300", "--seed", "5"]


def test_json_gives_every_size_under_both_allocators(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--sizes", "0.5,1,2", "--freeze", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["days"] == 1 and report["visits_per_day"] == 300
    assert report["freeze_minutes"] == 10 and report["minimum"] > 0
    assert set(report["rules_of_thumb"]) == {"per_20_daily_visitors", "peak_hour_x_hold_time"}
    rows = report["results"]
    assert [(r["allocator"], r["relative"]) for r in rows] == [
        (a, x) for a in ("longest_free", "random_free") for x in (0.5, 1.0, 2.0)
    ]
    for row in rows:
        assert row["size"] == math.ceil(row["relative"] * report["minimum"])
        assert row["right"] + row["wrong"] + row["none"] == row["calls"] == report["calls"]
        assert row["visits"] == report["visits"]
        assert row["right_share"] == pytest.approx(row["right"] / row["calls"])
        assert (row["visits_not_tracked"] == 0) == (row["relative"] >= 1)


def test_the_table_has_a_row_per_size_and_allocator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "theoretical minimum pool:" in out
    assert sum(line.startswith(("longest_free", "random_free")) for line in out.splitlines()) == 16
    assert "1.1x" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--days", "0"], "--days: 0 is not between 1 and 366"),
        (["--visits-per-day", "many"], "'many' is not a whole number"),
        (["--freeze", "-5"], "--freeze: -5 is not between"),
        (["--call-share", "2"], "--call-share: 2 is not between 0 and 1"),
        (["--sizes", "1,x"], "expected a comma list of numbers"),
        (["--sizes", "0,1"], "each above 0"),
    ],
)
def test_a_bad_flag_exits_2_with_a_message(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", *flags])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_too_much_to_compute_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--days", "366", "--visits-per-day", "10000"]) == 2
    assert "at most 2000000" in capsys.readouterr().err
