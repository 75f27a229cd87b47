"""The in-memory allocation rule on hand-built histories, and its invariants."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from attribution.allocation import LongestFree, NumberPool, RandomFree
from attribution.leasing import LeasePolicy, holder_at

POLICY = LeasePolicy(freeze_time=60.0)


def pool(*numbers: str) -> NumberPool:
    return NumberPool(numbers, POLICY, LongestFree())


def test_never_leased_first_then_the_earliest_expired_then_by_number() -> None:
    p = pool("b", "a", "c")
    assert p.take("s1", 0.0) == "a"  # all never leased: by number
    assert p.take("s2", 10.0) == "b"
    assert p.take("s3", 20.0) == "c"
    # a held until 60, b until 70, c until 80; at 100 all are free: a ran out first
    assert p.take("s4", 100.0) == "a"
    assert p.take("s5", 101.0) == "b"


def test_a_never_leased_number_comes_before_one_freed_long_ago() -> None:
    p = pool("a", "z")
    assert p.take("s1", 0.0) == "a"
    assert p.take("s2", 1000.0) == "z"


def test_ties_in_expiry_go_by_number() -> None:
    p = pool("b", "a")
    p.take("s1", 0.0), p.take("s2", 0.0)
    assert p.take("s3", 61.0) == "a"


def test_a_held_number_is_not_handed_out_and_the_pool_runs_out() -> None:
    p = pool("a")
    assert p.take("s1", 0.0) == "a"
    assert p.take("s2", 60.0) is None  # held until 0 + 60 inclusive
    assert p.take("s2", 60.5) == "a"


def test_activity_extends_only_the_holders_lease_while_held() -> None:
    p = pool("a")
    p.take("s1", 0.0)
    assert not p.extend("a", "s2", 30.0)
    assert p.extend("a", "s1", 50.0)  # now held until 110
    assert p.take("s2", 100.0) is None
    assert not p.extend("a", "s1", 111.0)  # ran out: no extending a free number
    assert p.take("s2", 111.0) == "a"


def test_spans_answer_who_held_a_number_at_a_call() -> None:
    p = pool("a")
    p.take("s1", 0.0)
    p.extend("a", "s1", 40.0)  # held until 100
    p.take("s2", 150.0)  # held until 210
    spans = p.spans_of("a")
    assert [(s.session_id, s.started_at, s.held_until) for s in spans] == [
        ("s1", 0.0, 100.0),
        ("s2", 150.0, 210.0),
    ]
    assert holder_at(spans, 100.0).session_id == "s1"  # type: ignore[union-attr]
    assert holder_at(spans, 120.0) is None
    assert holder_at(spans, 200.0).session_id == "s2"  # type: ignore[union-attr]


def test_a_preferred_free_number_is_taken_back() -> None:
    p = pool("a", "b")
    p.take("s1", 0.0)  # a
    assert p.take("s1", 100.0, preferred="a") == "a"  # b was never leased, but a is preferred
    assert p.take("s2", 100.0, preferred="a") == "b"  # held: not handed to another session


def test_random_free_draws_only_free_numbers_and_repeats_for_a_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        p = NumberPool([f"n{i}" for i in range(10)], POLICY, RandomFree(random.Random(seed)))
        return [p.take(f"s{i}", float(i)) for i in range(11)]

    first = draws(7)
    assert first == draws(7)
    assert first[-1] is None and sorted(first[:-1]) == [f"n{i}" for i in range(10)]  # type: ignore[type-var]
    assert first != draws(8)


steps = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 30), st.booleans()),  # session, gap, ping?
    max_size=60,
)


@given(steps, st.integers(1, 4), st.booleans())
def test_a_held_number_is_never_handed_to_another_session(
    script: list[tuple[int, int, bool]], size: int, naive: bool
) -> None:
    free = RandomFree(random.Random(0)) if naive else LongestFree()
    policy = LeasePolicy(freeze_time=20.0)
    p = NumberPool([f"n{i}" for i in range(size)], policy, free)
    now = 0.0
    holds: dict[int, str] = {}
    for session, gap, ping in script:
        now += gap
        if ping and session in holds and p.extend(holds[session], str(session), now):
            continue
        number = p.take(str(session), now)
        if number is None:
            continue
        holds[session] = number
        # the new lease is the only one of the number covering this instant
        covering = [s for s in p.spans_of(number) if s.started_at <= now <= s.held_until]
        assert [s.session_id for s in covering] == [str(session)]
    for number in (f"n{i}" for i in range(size)):  # and no two leases of a number overlap
        spans = p.spans_of(number)
        assert all(a.held_until < b.started_at for a, b in pairwise(spans))


async def test_the_daemons_sql_hands_out_numbers_in_the_cores_order() -> None:
    """The rule is defined in the core (NumberPool with LongestFree) and implemented in SQL
    (pbx/storage/number_claims.py): a seeded script of visits through the real VisitStore on
    SQLite and through NumberPool gets the same number, or none, at every step."""
    from pbx.storage.db import open_engine, upgrade
    from pbx.storage.visits import VisitRequest, VisitStore
    from tests.helpers import ORIGIN, FakeClock, make_settings

    numbers = [f"+7499000{n:04d}" for n in range(11, 15)]
    site = {"name": "main", "origins": [ORIGIN], "replace": ["+7 (495) 123-45-67"]}
    settings = make_settings(
        "sqlite+aiosqlite:///:memory:",
        freeze_time="60s",
        sites=[{**site, "pools": [{"name": "all", "numbers": numbers}]}],
    )
    engine = open_engine(settings.database)
    await upgrade(engine)
    clock = FakeClock()
    store = VisitStore(engine, settings, clock)
    await store.sync_numbers()
    pool = NumberPool(numbers, settings.lease_policy, LongestFree())
    rng = random.Random(7)
    given = []
    for i in range(120):
        clock.advance(rng.choice([1, 5, 20, 40, 61, 90]))
        request = VisitRequest(settings.sites[0], f"{ORIGIN}/", None, None, None, f"10.1.0.{i}")
        visit = await store.start_visit(request)
        expected = pool.take(str(i), clock.now)
        assert visit.number == expected, (i, clock.now)
        given.append(expected)
    assert None in given and len(set(given) - {None}) == len(numbers)  # it ran out, used all
    await engine.dispose()
