"""fold_visit_rows: the report's rows with nothing but visits past the most visited become one
row, "(other)"; nothing else changes and no visit is lost."""

from __future__ import annotations

from dataclasses import fields, replace

from hypothesis import example, given
from hypothesis import strategies as st

from attribution.reports import OTHER, OWN_ROWS, UNATTRIBUTED, Tally, fold_visit_rows

KEYS = st.sampled_from([*"abcdefgh", UNATTRIBUTED, OTHER])
TALLIES = st.builds(
    Tally,
    visits=st.integers(0, 5),
    calls=st.sampled_from([0, 0, 0, 1]),
    cost_cents=st.sampled_from([0, 0, 0, 100]),
)


def visits_only(tallies: dict[str, Tally]) -> dict[str, int]:
    return {k: t.visits for k, t in tallies.items() if k not in OWN_ROWS and t.visits_only}


@given(st.dictionaries(KEYS, TALLIES), st.integers(0, 6))
@example({"e": Tally(visits=1), OTHER: Tally(calls=1)}, 0)  # an OTHER row with calls gains visits
def test_folding_keeps_the_totals_and_every_row_with_more_than_visits(
    tallies: dict[str, Tally], keep: int
) -> None:
    folded = fold_visit_rows(tallies, keep)
    assert sum(t.visits for t in folded.values()) == sum(t.visits for t in tallies.values())
    for key, tally in tallies.items():
        if key == OTHER:  # only its visits may grow
            assert replace(folded[key], visits=tally.visits) == tally
        elif key in OWN_ROWS or not tally.visits_only:
            assert folded[key] == tally
    before, after = visits_only(tallies), visits_only(folded)
    if len(before) <= keep:
        assert folded == tallies
        return
    assert len(after) == keep
    # the shown are the most visited, ties by key: no folded row comes before a shown one
    order = sorted(before, key=lambda k: (-before[k], k))
    assert list(after) == [k for k in tallies if k in order[:keep]]
    assert folded[OTHER].visits == tallies.get(OTHER, Tally()).visits + sum(
        before[k] for k in order[keep:]
    )


def test_a_row_with_calls_is_shown_however_few_its_visits() -> None:
    tallies = {"a": Tally(visits=9), "b": Tally(visits=8), "c": Tally(visits=1, calls=1)}
    assert fold_visit_rows(tallies, 1) == {
        "a": Tally(visits=9),
        "c": Tally(visits=1, calls=1),
        OTHER: Tally(visits=8),
    }


def test_a_row_is_visits_only_when_every_other_field_is_zero() -> None:
    """visits_only names Tally's fields one by one: a field added later must be named too."""
    for field in fields(Tally):
        one = Tally(**{field.name: 1})
        assert one.visits_only is (field.name == "visits"), field.name
    assert Tally().visits_only and Tally(visits=5).visits_only
    assert not Tally(visits=5, talk_seconds=0.5).visits_only
