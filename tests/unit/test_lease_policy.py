"""The per-client caps of the lease rules (attribution.leasing.LeasePolicy): in all pools, and a
share of each pool, so that one address cannot drain a small pool."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution.leasing import LeasePolicy

CLIENT = "93.184.216.34"  # a public address: the share cap is for those


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


@pytest.mark.parametrize(
    "client", ["10.0.0.5", "172.17.0.1", "192.168.1.10", "100.64.0.9", "127.0.0.1", "fd00::/64"]
)
def test_a_private_address_is_the_sites_own_proxy_and_gets_no_share_cap(client: str) -> None:
    """Docker's gateway, a Kubernetes node, a layer-4 balancer: every visitor comes from it, and
    a quarter of a 4-number pool would have been one number for them all."""
    policy = LeasePolicy(60.0, max_per_client=200, max_pool_share_per_client=0.25)
    assert policy.may_take(client, 3, 3, 4)
    assert not policy.may_take(client, 200, 0, 4)  # the cap over all pools still holds
    assert not policy.may_take("2a00:1450:4001::/64", 1, 1, 4)  # a public /64: capped
