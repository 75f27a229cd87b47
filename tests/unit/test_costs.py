"""Reading cost files (the plain shape, Google Ads' and Yandex Direct's exports, bad rows) and
spreading fixed monthly costs per day."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.costs import (
    MAX_PROBLEMS,
    CostFileError,
    CostRow,
    MonthlyCost,
    day_share,
    layout_for,
    monthly_spread,
    read_costs,
    spread_costs,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "costs"


def read(data: bytes | str, **layout: str) -> list[CostRow]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_costs(raw, "f.csv", layout_for(**layout)).rows)


def problems(data: bytes | str, **layout: str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(CostFileError) as caught:
        read_costs(raw, "f.csv", layout_for(**layout))
    return caught.value.problems


def test_the_plain_shape_with_duplicates_added_up() -> None:
    costs = read_costs((FIXTURES / "plain.csv").read_bytes(), "plain.csv", layout_for())
    assert list(costs.rows) == [
        CostRow(20240301, "facebook", "paid_social", "", 5000),
        CostRow(20240301, "google", "cpc", "brand", 10000),
        CostRow(20240302, "google", "cpc", "brand", 150 + 50),  # "1,5" and "0.50"
    ]
    assert costs.read == 4 and costs.sources == ("facebook", "google")
    assert costs.summary("USD") == (
        "plain.csv: 3 rows, 2 days (2024-03-01..2024-03-02), sources facebook, google,"
        " total 152.00 USD"
    )


def test_google_ads_export_utf16_tabs_title_lines_totals_and_thousands() -> None:
    costs = read_costs(
        (FIXTURES / "google-ads.csv").read_bytes(), "g.csv", layout_for(preset="google-ads")
    )
    assert list(costs.rows) == [
        CostRow(20240301, "google", "cpc", "Brand — search", 123456),
        CostRow(20240301, "google", "cpc", "Generic", 1000),
        CostRow(20240302, "google", "cpc", "Brand — search", 50),
        CostRow(20240303, "google", "cpc", "Brand — search", 200000),
    ]
    assert costs.totals_skipped == 2


def test_yandex_direct_export_dotted_dates_semicolons_decimal_comma_and_itogo() -> None:
    costs = read_costs(
        (FIXTURES / "yandex-direct.csv").read_bytes(), "y.csv", layout_for(preset="yandex-direct")
    )
    assert list(costs.rows) == [
        CostRow(20240301, "yandex", "cpc", "Имплантация | поиск", 321040),
        CostRow(20240301, "yandex", "cpc", "РСЯ ретаргетинг", 87000),
        CostRow(20240302, "yandex", "cpc", "Имплантация | поиск", 299960),
    ]
    assert costs.totals_skipped == 1


def test_yandex_reports_api_tsv_with_its_title_and_total_rows_lines() -> None:
    text = (
        "costs (2024-03-01 - 2024-03-01)\nDate\tCampaignName\tCost\n"
        "2024-03-01\tbrand\t12.30\nTotal rows: 1\n"
    )
    assert read(text, preset="yandex-direct") == [CostRow(20240301, "yandex", "cpc", "brand", 1230)]


def test_a_column_map_and_constants_for_missing_columns() -> None:
    text = "Week day;Spend;Name;source\n2024-03-01;7,5;spring;ignored\n"
    layout = {"column_map": "date=Week day, cost=Spend,campaign=Name", "medium": "social"}
    assert read(text, **layout, source="vk") == [CostRow(20240301, "vk", "social", "spring", 750)]
    assert read(text, **layout) == [CostRow(20240301, "ignored", "social", "spring", 750)]


def test_utf8_bom_and_utf16_without_bom_read_like_plain_text() -> None:
    text = "date,source,medium,campaign,cost\n2024-03-01,google,cpc,x,1\n"
    expected = [CostRow(20240301, "google", "cpc", "x", 100)]
    assert read(b"\xef\xbb\xbf" + text.encode()) == expected
    assert read(text.encode("utf-16-le")) == expected
    assert read(text.encode("utf-16")) == expected  # with its BOM
    assert read(text.replace(",", "\t")) == expected


def test_every_bad_row_is_named_by_its_line_and_nothing_is_read() -> None:
    text = (
        "date,source,medium,campaign,cost\n"
        "2024-03-01,google,cpc,x,1\n"
        "2024-02-30,google,cpc,x,1\n"  # line 3
        "2024-03-01,,cpc,x,1\n"  # line 4
        "2024-03-01,google,cpc,x,-5\n"  # line 5
        "2024-03-01,google,cpc,x,1.2345\n"  # line 6
        "\n"
        "2024-03-01,google,cpc,x,many\n"  # line 8
    )
    found = problems(text)
    assert [p.split(": ")[0] for p in found] == [
        "f.csv:3",
        "f.csv:4",
        "f.csv:5",
        "f.csv:6",
        "f.csv:8",
    ]
    assert found[0] == "f.csv:3: date: expected YYYY-MM-DD or DD.MM.YYYY, got '2024-02-30'"
    assert "source: expected a name" in found[1]
    assert "zero or more" in found[2] and "two decimals" in found[3]
    assert "expected an amount" in found[4]


def test_a_total_word_in_a_row_with_a_real_date_is_still_a_row() -> None:
    text = "date,source,medium,campaign,cost\n2024-03-01,google,cpc,Total brand,1\n"
    assert read(text) == [CostRow(20240301, "google", "cpc", "Total brand", 100)]


def test_a_cell_split_in_two_is_refused_not_read_as_its_first_half() -> None:
    """Comma-separated with a decimal comma unquoted (12,50), or a comma in a campaign's name:
    the row had a cell more than the header and the cost column read the wrong one (12.00
    imported for 12.50; 5.00 for 100), without a word."""
    header = "date,source,medium,campaign,cost\n"
    found = problems(
        header + "2024-03-01,google,cpc,brand,12,50\n2024-03-02,google,cpc,Sale, 1,5\n"
    )
    assert found == [
        "f.csv:2: expected 5 cells as the header has, got 6 (an unquoted ',' in a cell? quote"
        " the cell, or save with another separator)",
        "f.csv:3: expected 5 cells as the header has, got 6 (an unquoted ',' in a cell? quote"
        " the cell, or save with another separator)",
    ]
    # quoted, or padded with empty cells by a spreadsheet, it is read
    assert read(header + '2024-03-01,google,cpc,"Sale, 1","12,50",,\n') == [
        CostRow(20240301, "google", "cpc", "Sale, 1", 1250)
    ]


def test_a_total_word_in_another_cell_of_a_mistyped_row_is_an_error_not_totals() -> None:
    text = "date,source,medium,campaign,cost\n2024-03-0x,google,cpc,Total brand,99\n"
    assert problems(text) == ["f.csv:2: date: expected YYYY-MM-DD or DD.MM.YYYY, got '2024-03-0x'"]


def test_many_problems_are_capped_with_a_count_of_the_rest() -> None:
    text = "date,source,medium,campaign,cost\n" + "nope,google,cpc,x,1\n" * (MAX_PROBLEMS + 7)
    with pytest.raises(CostFileError) as caught:
        read_costs(text.encode(), "f.csv", layout_for())
    lines = str(caught.value).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == "and 7 more"
    assert lines[0].startswith("f.csv:2: date") and lines[-2].startswith(
        f"f.csv:{MAX_PROBLEMS + 1}:"
    )


def test_a_file_without_the_header_says_which_columns_it_expected() -> None:
    found = problems("Day,Cost\n2024-03-01,1\n")
    assert found == [
        "f.csv:1: expected a header row naming the columns (date: date; cost: cost) within"
        " the first 30 lines; use --preset or --map for other names"
    ]


def test_missing_source_or_medium_names_the_flag() -> None:
    found = problems("date,cost\n2024-03-01,1\n")
    assert found == [
        "f.csv:1: expected a source column, or --source VALUE",
        "f.csv:1: expected a medium column, or --medium VALUE",
    ]


def test_bad_map_and_preset_are_refused() -> None:
    with pytest.raises(CostFileError, match="--map: expected role=Header"):
        layout_for(column_map="price=Cost")
    with pytest.raises(CostFileError, match="--preset: expected one of google-ads, yandex-direct"):
        layout_for(preset="bing")


def test_not_utf8_is_refused_with_its_line() -> None:
    assert problems(b"date,source,medium,campaign,cost\n2024-03-01,g\xe9,cpc,x,1\n") == [
        "f.csv:2: expected UTF-8 or UTF-16 text"
    ]


def test_a_nul_is_refused_with_its_line() -> None:
    """Python's csv reads a NUL as text, and PostgreSQL refuses it in text: the import was a
    500 on the admin page and a traceback from the command."""
    assert problems("date,source,medium,campaign,cost\n2024-03-01,g\x00,cpc,x,1\n") == [
        "f.csv:2: expected text, found a NUL character (a spreadsheet's own file rather than"
        " CSV? save it as CSV)"
    ]


def test_oversized_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("attribution.costs.MAX_FILE_BYTES", 100)
    found = problems("date,source,medium,campaign,cost\n" + "2024-03-01,g,cpc,x,1\n" * 10)
    assert found[0].startswith("f.csv: expected at most")


def test_too_many_rows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("attribution.costs.MAX_ROWS", 3)
    found = problems("date,source,medium,campaign,cost\n" + "2024-03-01,g,cpc,x,1\n" * 5)
    assert found == ["f.csv:5: expected at most 3 rows"]


# -- fixed monthly costs ---------------------------------------------------------------------


@given(
    year=st.integers(1970, 2100),
    month=st.integers(1, 12),
    cents=st.integers(0, 10**13),
)
def test_a_monthly_cost_spreads_to_the_cent(year: int, month: int, cents: int) -> None:
    days = monthly_spread(cents, year, month)
    assert len(days) == calendar.monthrange(year, month)[1]
    assert sum(days) == cents
    assert max(days) - min(days) <= 1


def test_the_remainder_goes_to_the_first_days() -> None:
    assert monthly_spread(3002, 2024, 2) == [104] * 15 + [103] * 14  # 29 days, 3002 = 29*103+15
    assert day_share(3002, 20240215) == 104 and day_share(3002, 20240216) == 103


def test_spread_costs_over_a_range_across_months() -> None:
    billboard = MonthlyCost("billboard", "offline", "", 3100)  # 100 a day in March
    rows = spread_costs([billboard], 20240330, 20240401)
    april_day = 3100 // 30 + 1  # 3100 = 30*103 + 10: April 1st gets a remainder cent
    assert rows == [
        CostRow(20240330, "billboard", "offline", "", 100),
        CostRow(20240331, "billboard", "offline", "", 100),
        CostRow(20240401, "billboard", "offline", "", april_day),
    ]


def test_a_russian_google_ads_export_reads_its_decimal_comma() -> None:
    """Google Ads in a Russian locale writes "1 234,56": 1234.56, not 123456.00."""
    data = 'День,Кампания,Стоимость\n2024-03-01,Бренд,"1 234,56"\n'.encode()
    [row] = read_costs(data, "ads.csv", layout_for("google-ads")).rows
    assert row.cost_cents == 123456


def test_names_that_spell_a_reports_own_row_are_kept_apart_as_a_visitors_tag_is() -> None:
    assert read("date,source,medium,campaign,cost\n2024-03-01,(unattributed),cpc,(other),1\n") == [
        CostRow(20240301, "utm:(unattributed)", "cpc", "utm:(other)", 100)
    ]
