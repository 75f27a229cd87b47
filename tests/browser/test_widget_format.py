"""The widget's number matching and restyling, run in Chromium (calltrack.swap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import WIDGET, Watched

pytestmark = pytest.mark.browser


def entry(replace: str, own: str, number: str, display: str) -> dict[str, str]:
    """One `numbers` entry as the visitor API answers it."""
    return {"replace": replace, "own": own, "number": number, "display": display}


RU = [entry("+7 495 123-45-67", "+74951234567", "+74990000001", "+7 499 000-00-01")]
NBSP, NBHY = "\u00a0", "\u2011"

CASES: list[tuple[list[dict[str, str]], str, str]] = [
    (RU, "+7 (495) 123-45-67", "+7 (499) 000-00-01"),
    (RU, "8 495 1234567", "8 499 0000001"),
    (RU, "+74951234567", "+74990000001"),
    (RU, "84951234567", "84990000001"),
    (RU, "8 (495) 123-45-67", "8 (499) 000-00-01"),
    (RU, "8-495-123-45-67", "8-499-000-00-01"),
    (RU, "(495) 123-45-67", "(499) 000-00-01"),
    (RU, "495 123 45 67", "499 000 00 01"),
    (RU, "7 495 123 45 67", "7 499 000 00 01"),
    (RU, "+7 495 123.45.67", "+7 499 000.00.01"),
    (RU, f"+7{NBSP}(495){NBSP}123{NBHY}45{NBHY}67", f"+7{NBSP}(499){NBSP}000{NBHY}00{NBHY}01"),
    (RU, "8 495 123\u201345\u201367", "8 499 000\u201300\u201301"),
    (RU, "tel:+74951234567", "tel:+74990000001"),
    (RU, "tel:84951234567", "tel:84990000001"),
    (RU, "tel:+7-495-123-45-67", "tel:+7-499-000-00-01"),
    (RU, "Call us: 8 495 123-45-67.", "Call us: 8 499 000-00-01."),
    (RU, "+7 495 123-45-67, +7 (495) 123-45-67", "+7 499 000-00-01, +7 (499) 000-00-01"),
    # two numbers in one run of digits and spaces: only ours changes
    (RU, "8 495 123-45-67 8 800 555-35-35", "8 499 000-00-01 8 800 555-35-35"),
    (RU, "8 800 555 35 35 +7 495 123 45 67", "8 800 555 35 35 +7 499 000 00 01"),
    # not our number, or ours inside a longer one: unchanged
    (RU, "+7 (495) 765-43-21", "+7 (495) 765-43-21"),
    (RU, "order 184951234567", "order 184951234567"),
    (RU, "id 4951234567890", "id 4951234567890"),
    (RU, "51234567", "51234567"),
    (RU, "2026-11-27 12:00", "2026-11-27 12:00"),
    ([], "+7 (495) 123-45-67", "+7 (495) 123-45-67"),
    # a tracking number that cannot wear the occurrence's style is shown as the server formats it
    (
        [entry("+7 495 123-45-67", "+74951234567", "+442079460123", "+44 20 7946 0123")],
        "Call 8 (495) 123-45-67 now",
        "Call +44 20 7946 0123 now",
    ),
    # other countries: trunk prefix 0, (0), 00 and 1
    (
        [entry("+44 20 7946 0000", "+442079460000", "+442079460123", "+44 20 7946 0123")],
        "020 7946 0000 / +44 (0)20 7946 0000 / 0044 20 7946 0000",
        "020 7946 0123 / +44 (0)20 7946 0123 / 0044 20 7946 0123",
    ),
    (
        [entry("+49 30 1234567", "+49301234567", "+49301234999", "+49 30 1234999")],
        "030 1234567 or 030/123 45 67 or +49 (0)30 1234567",
        "030 1234999 or 030/123 45 67 or +49 (0)30 1234999",
    ),
    (
        [entry("+1 212 555 0100", "+12125550100", "+12125550199", "+1 212 555 0199")],
        "(212) 555-0100, 1-212-555-0100, 212.555.0100",
        "(212) 555-0199, 1-212-555-0199, 212.555.0199",
    ),
    # an own number written nationally (region DE in the config): the server's `own` says whose
    (
        [entry("030 1234567", "+49301234567", "+49301234999", "030 1234999")],
        "Berlin: 030 1234567 or +49 30 1234567",
        "Berlin: 030 1234999 or +49 30 1234999",
    ),
    # two own numbers
    (
        [
            *RU,
            entry("8 800 100-20-30", "+78001002030", "+78001002099", "8 800 100-20-99"),
        ],
        "Moscow +7 495 123-45-67, free 8-800-100-20-30",
        "Moscow +7 499 000-00-01, free 8-800-100-20-99",
    ),
]


def test_swap_formats(new_page: Callable[[], Watched]) -> None:
    watched = new_page()
    page: Any = watched.page
    page.set_content("<!doctype html><title>t</title><body></body>")
    page.add_script_tag(content=WIDGET.read_text())  # no src: it only defines calltrack.swap
    got = page.evaluate(
        "cases => cases.map(([numbers, text]) => calltrack.swap(text, numbers))",
        [[numbers, text] for numbers, text, _ in CASES],
    )
    wrong = [
        f"{text!r} -> {result!r}, expected {expected!r}"
        for (_, text, expected), result in zip(CASES, got, strict=True)
        if result != expected
    ]
    assert not wrong, "\n".join(wrong)
    assert watched.problems("-") == []
