"""The figures a call's credits carry are listed once for refresh_facts_in: what figures_of reads
is what _FIGURES_OF_CALL selects, and what it gives is FIGURES, each a call_credits column."""

from __future__ import annotations

from typing import Any

from pbx.storage.call_credits import _FIGURES_OF_CALL, FIGURES, figures_of
from pbx.storage.tables import call_credits

SAMPLE: dict[str, Any] = {
    "status": "answered",
    "caller": "+79161234567",
    "repeat_caller": 0,
    "talk_seconds": 12.5,
    "score": None,
    "sale_cents": 0,
    "crm_sales": 0,
    "crm_sale_cents": 0,
}


def test_figures_of_reads_only_what_is_selected_and_gives_what_is_refreshed() -> None:
    selected = {column.name for column in _FIGURES_OF_CALL.selected_columns}
    assert selected == set(SAMPLE)
    figures = figures_of(SAMPLE, ["lead"])  # a KeyError if it read a column not selected
    assert set(figures) == set(FIGURES)
    assert set(FIGURES) <= {column.name for column in call_credits.columns}
    assert figures["first_time"] is True and figures["tags"] == ",lead,"
