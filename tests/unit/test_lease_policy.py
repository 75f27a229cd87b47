"""The per-client caps of the lease rules (attribution.leasing.LeasePolicy): in all pools, and a
share of each pool, so that one address cannot drain a small pool."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeasePolicy

CLIENT = "198.51.100.7"


@given(
    share=st.fractions(min_value=Fraction(1, 1000), max_value=1, max_denominator=1000),
    size=st.integers(min_value=1, max_value=5000),
)
def test_a_clients_share_of_a_pool_is_rounded_up_never_below_one_nor_above_the_pool(
    share: Fraction, size: int
) -> None:
    cap = LeasePolicy(60.0, max_pool_share_per_client=float(share)).pool_cap(size)
    exact = share * size  # exact arithmetic, not the float the policy uses
    assert 1 <= cap <= size
    assert cap == max(1, -(-exact.numerator // exact.denominator))


@pytest.mark.parametrize(
    ("held_in_pool", "size", "allowed"),
    [
        *[(0, 2, True), (1, 2, False), (1, 8, True), (2, 8, False)],
        *[(4, 13, False), (3, 13, True)],
        (1, 1, True),  # a pool of one: its share is the whole pool, which runs out first
    ],
)
def test_a_client_may_take_numbers_of_a_pool_up_to_its_share(
    held_in_pool: int, size: int, allowed: bool
) -> None:
    policy = LeasePolicy(60.0, max_per_client=200, max_pool_share_per_client=0.25)
    assert policy.may_take(CLIENT, held_in_pool, held_in_pool, size) is allowed


def test_the_cap_over_all_pools_holds_whatever_the_share() -> None:
    policy = LeasePolicy(60.0, max_per_client=3, max_pool_share_per_client=1.0)
    assert policy.may_take(CLIENT, 2, 0, 100)
    assert policy.may_take(CLIENT, 2, 2, 2)  # the whole pool, share 1: the pool runs out first
    assert not policy.may_take(CLIENT, 3, 0, 100)  # 3 held in other pools
    assert policy.may_take(None, 3, 100, 100)  # no address known: nothing to count against
