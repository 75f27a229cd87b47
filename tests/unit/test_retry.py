"""The retry schedule (issue 14): the first retry within 10 s, delays that grow on average up to
a cap, never a try after the row's give-up time (then it fails), and never sooner than a
receiver's Retry-After asks."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import formatdate
from random import Random
from statistics import mean

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.retry import DEFAULT, MAX_ASKED_WAIT, Backoff, asked_wait, next_try

seeds = st.integers(min_value=0, max_value=2**32)
NOW = 1_800_000_000.0
DAY = 86_400.0


@given(seeds)
def test_the_first_retry_comes_within_10_seconds(seed: int) -> None:
    rng = Random(seed)
    for _ in range(50):
        due = next_try(1, NOW, NOW + DAY, rng)
        assert due is not None and NOW + 1.0 <= due <= NOW + 10.0


@given(seeds, st.integers(min_value=1, max_value=9))  # 5 s x 2**9 = 2560 s: below the cap
def test_delays_grow_on_average_until_the_cap(seed: int, attempts: int) -> None:
    rng = Random(seed)
    now = mean(DEFAULT.delay(attempts, rng) for _ in range(400))
    later = mean(DEFAULT.delay(attempts + 1, rng) for _ in range(400))
    # the ceiling doubles, so the mean (half the ceiling) does: 1.5 x leaves room for chance
    assert later > 1.5 * now


@given(seeds, st.integers(min_value=1, max_value=10_000))
def test_no_two_attempts_are_further_apart_than_the_cap(seed: int, attempts: int) -> None:
    assert 1.0 <= DEFAULT.delay(attempts, Random(seed)) <= 3600.0


@given(
    seeds,
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0, max_value=3 * DAY),
    st.floats(min_value=1, max_value=3 * DAY),
)
def test_never_beyond_give_up_at(seed: int, attempts: int, elapsed: float, window: float) -> None:
    give_up_at = NOW + window
    last = NOW + elapsed
    due = next_try(attempts, last, give_up_at, Random(seed))
    if last >= give_up_at:
        assert due is None  # failed
    else:
        assert due is not None and last < due <= give_up_at


def test_a_schedule_retries_for_its_window_then_fails() -> None:
    rng, at, tries = Random(14), NOW, 0
    while (due := next_try(tries + 1, at, NOW + DAY, rng)) is not None:
        at, tries = due, tries + 1
    assert at == NOW + DAY  # the last try is at the give-up time
    # ~ 5 s, 10 s, ... doubling to 1 h apart: a day is a few dozen tries, not thousands
    assert 20 <= tries <= 80


def test_the_floor_keeps_a_refusing_receiver_from_being_hammered() -> None:
    class Zero(Random):
        def uniform(self, a: float, b: float) -> float:
            return a

    assert Backoff().delay(1, Zero()) == 1.0


# -- a receiver's Retry-After ---------------------------------------------------------------


@given(
    seeds,
    st.integers(min_value=1, max_value=200),
    st.floats(min_value=0, max_value=10 * DAY),
    st.floats(min_value=1, max_value=3 * DAY),
)
def test_never_sooner_than_asked_and_never_past_give_up_at(
    seed: int, attempts: int, asked: float, window: float
) -> None:
    give_up_at = NOW + window
    due = next_try(attempts, NOW, give_up_at, Random(seed), asked_wait=asked)
    if NOW + asked > give_up_at:
        assert due is None  # the receiver's wait ends past the window: failed now
    else:
        assert due is not None and NOW + asked <= due <= give_up_at


def test_the_asked_wait_is_spread_by_the_backoffs_jitter() -> None:
    """Every event a receiver refused with one Retry-After date would come back together."""
    rng = Random(5)
    dues = {next_try(1, NOW, NOW + DAY, rng, asked_wait=600.0) for _ in range(200)}
    assert all(d is not None and NOW + 601 <= d <= NOW + 605 for d in dues)
    assert len(dues) > 100  # the floor (1 s) takes a fifth of them


def test_retry_after_in_seconds() -> None:
    assert asked_wait("120", NOW) == 120.0
    assert asked_wait(" 0 ", NOW) == 0.0


def test_retry_after_as_an_http_date_is_read_against_now() -> None:
    assert asked_wait(formatdate(NOW + 90, usegmt=True), NOW) == 90.0
    assert asked_wait("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0  # past: no wait
    # RFC 9110's obsolete forms, which a recipient must read: RFC 850's and asctime's (GMT)
    later = datetime.fromtimestamp(NOW + 90, UTC)
    assert asked_wait(later.strftime("%A, %d-%b-%y %H:%M:%S GMT"), NOW) == 90.0
    assert asked_wait(later.strftime("%a %b %e %H:%M:%S %Y"), NOW) == 90.0


def test_a_retry_after_past_any_window_is_read_as_a_year() -> None:
    assert asked_wait("9" * 400, NOW) == MAX_ASKED_WAIT
    assert asked_wait("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == MAX_ASKED_WAIT


@pytest.mark.parametrize(
    "header",
    [None, "", "soon", "-5", "1.5", "١٢٠", "Mon, 99 Foo", "Sun, 06 Nov 1994 25:49:37 GMT"],
)
def test_a_retry_after_that_is_not_rfc_9110_asks_for_nothing(header: str | None) -> None:
    assert asked_wait(header, NOW) is None
