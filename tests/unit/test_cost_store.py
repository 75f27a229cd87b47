"""The replace rule of cost imports on a real SQLite file: a file replaces its days × sources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.costs import CostFile, CostRow, layout_for, read_costs
from pbx.storage.costs import daily_costs, monthly_totals, replace_costs
from pbx.storage.db import open_engine, upgrade


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'costs.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


def google(*rows: tuple[int, str, int]) -> CostFile:
    return CostFile("g.csv", tuple(CostRow(d, "google", "cpc", c, cents) for d, c, cents in rows))


YANDEX = CostFile(
    "y.csv",
    (
        CostRow(20240301, "yandex", "cpc", "a", 700),
        CostRow(20240305, "yandex", "cpc", "a", 900),
    ),
)
MARCH = google((20240301, "brand", 100), (20240303, "brand", 300), (20240305, "x", 500))


async def test_importing_twice_leaves_the_same_rows(engine: AsyncEngine) -> None:
    await replace_costs(engine, MARCH, 1.0)
    first = await daily_costs(engine, 20240101, 20241231)
    await replace_costs(engine, MARCH, 2.0)
    assert (
        await daily_costs(engine, 20240101, 20241231)
        == first
        == [
            (20240301, "google", "cpc", "brand", 100),
            (20240303, "google", "cpc", "brand", 300),
            (20240305, "google", "cpc", "x", 500),
        ]
    )


async def test_a_narrower_file_replaces_only_its_days_and_its_sources(engine: AsyncEngine) -> None:
    await replace_costs(engine, MARCH, 1.0)
    await replace_costs(engine, YANDEX, 1.0)
    # 2024-03-02..04: brand on the 3rd is gone (a gap inside the range is replaced too)
    await replace_costs(engine, google((20240302, "new", 42), (20240304, "new", 58)), 2.0)
    assert await daily_costs(engine, 20240101, 20241231) == [
        (20240301, "google", "cpc", "brand", 100),
        (20240301, "yandex", "cpc", "a", 700),
        (20240302, "google", "cpc", "new", 42),
        (20240304, "google", "cpc", "new", 58),
        (20240305, "google", "cpc", "x", 500),
        (20240305, "yandex", "cpc", "a", 900),
    ]
    assert await daily_costs(engine, 20240302, 20240304) == [
        (20240302, "google", "cpc", "new", 42),
        (20240304, "google", "cpc", "new", 58),
    ]


async def test_monthly_totals_per_source_newest_first(engine: AsyncEngine) -> None:
    assert await monthly_totals(engine) == []
    await replace_costs(engine, MARCH, 1.0)
    await replace_costs(engine, YANDEX, 1.0)
    assert await monthly_totals(engine) == [(202403, "google", 900), (202403, "yandex", 1600)]
    # its range (2023-12-31..2024-04-01) holds all of google's March: replaced, gone
    await replace_costs(engine, google((20231231, "old", 1), (20240401, "new", 2)), 1.0)
    assert await monthly_totals(engine) == [
        (202404, "google", 2),
        (202403, "yandex", 1600),
        (202312, "google", 1),
    ]
    assert await monthly_totals(engine, months=2) == [
        (202404, "google", 2),
        (202403, "yandex", 1600),
    ]


async def test_a_file_replaces_only_its_own_channels_of_a_source(engine: AsyncEngine) -> None:
    display = read_costs(
        b"date,source,medium,campaign,cost\n2024-03-01,google,display,banners,5.00\n",
        "display.csv",
        layout_for(),
    )
    await replace_costs(engine, display, 1.0)
    await replace_costs(engine, MARCH, 1.0)  # google/cpc
    stored = await daily_costs(engine, 20240301, 20240301)
    assert (20240301, "google", "display", "banners", 500) in stored


async def test_a_file_imported_before_reserved_names_were_renamed_is_replaced_not_doubled(
    engine: AsyncEngine,
) -> None:
    """Before 2026-12-03 a source "(other)" was stored as written; read again it is
    utm:(other), and the replace by days × (source, medium) left the old rows beside the new."""
    data = b"date,source,medium,campaign,cost\n2024-03-01,(other),cpc,a,7\n"
    old = CostFile("ga4.csv", (CostRow(20240301, "(other)", "cpc", "a", 700),))
    await replace_costs(engine, old, 1.0)  # as stored then
    await replace_costs(engine, read_costs(data, "ga4.csv", layout_for()), 2.0)
    assert await daily_costs(engine, 20240101, 20241231) == [
        (20240301, "utm:(other)", "cpc", "a", 700)
    ]
