"""The journey's arithmetic on hand-built rows (attribution.journey): gaps in days and the
channels that brought the visitor back."""

from __future__ import annotations

from attribution.journey import JourneyCall, JourneyVisit, assemble, channels_back

DAY = 86400.0
T0 = 1_800_000_000.0


def visit(at: float, source: str) -> JourneyVisit:
    return JourneyVisit("s" + source, at, "main", source, "x", None, None, "https://a/", None)


def call(call_id: int, at: float) -> JourneyCall:
    return JourneyCall(call_id, at, "+79160000001", "answered", "session", None, None, None)


def test_gaps_in_days_from_the_first_visit_and_between_calls() -> None:
    visits = [visit(T0 + 2 * DAY, "google"), visit(T0, "yandex")]  # any order in
    earlier = [call(2, T0 + 3 * DAY), call(1, T0 + DAY)]
    journey = assemble(call(3, T0 + 10 * DAY + 3 * 3600), visits, earlier)
    assert [v.source for v in journey.visits] == ["yandex", "google"]
    assert [c.id for c in journey.earlier_calls] == [1, 2]
    assert journey.first_visit_at == T0
    assert journey.days_since_first_visit == 10.1  # 10 days 3 hours
    assert journey.days_between_calls == [2.0, 7.1]  # 1 -> 2, 2 -> this call (7 d 3 h)
    assert journey.visits_total == 2


def test_a_first_call_without_visits_has_no_gaps() -> None:
    journey = assemble(call(1, T0), [], [])
    assert journey.days_since_first_visit is None
    assert journey.days_between_calls == []
    assert journey.channels_back == []


def test_channels_back_are_the_distinct_later_sources_in_order() -> None:
    visits = [
        visit(T0, "billboard"),
        visit(T0 + 1, "google"),
        visit(T0 + 2, "(direct)"),
        visit(T0 + 3, "google"),
        visit(T0 + 4, "billboard"),
    ]
    assert channels_back(visits, T0) == ["google", "(direct)", "billboard"]


def test_a_capped_read_keeps_the_true_first_visit() -> None:
    """Only the latest visits are listed; the first one (read apart) still counts."""
    journey = assemble(
        call(9, T0 + 30 * DAY),
        [visit(T0 + 20 * DAY, "google"), visit(T0 + 25 * DAY, "google")],
        [],
        first_visit_at=T0,
        visits_total=7,
        truncated={"visits": True},
    )
    assert journey.first_visit_at == T0
    assert journey.days_since_first_visit == 30.0
    assert journey.channels_back == ["google"]  # both listed visits came after the first
    assert journey.visits_total == 7 and journey.truncated == {"visits": True}
