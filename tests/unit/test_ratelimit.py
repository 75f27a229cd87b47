"""The failure counters behind the login limits."""

from __future__ import annotations

from attribution.clients import client_network
from pbx.ratelimit import FailureLimit
from tests.helpers import FakeClock


def test_a_flood_of_junk_keys_does_not_erase_a_guessed_keys_count() -> None:
    clock = FakeClock()
    limit = FailureLimit(clock, limit=10, window=300.0, max_keys=1000)
    limit.failed(["user:ada@192.0.2.1"] * 10)
    assert limit.retry_after(["user:ada@192.0.2.1"]) > 0
    for i in range(5000):  # five times the room, one failure each
        limit.failed([f"user:junk{i}@192.0.2.1"])
    assert limit.retry_after(["user:ada@192.0.2.1"]) > 0, "the guessed key's count survived"
    assert len(limit._failures) <= 1000


def test_expired_keys_make_room_before_any_live_one_goes() -> None:
    clock = FakeClock()
    limit = FailureLimit(clock, limit=2, window=60.0, max_keys=10)
    limit.failed([f"old{i}" for i in range(10)])
    clock.advance(61)
    limit.failed(["live", "live"])
    limit.failed(["new"])
    assert limit.retry_after(["live"]) > 0
    assert set(limit._failures) == {"live", "new"}


def test_a_success_takes_back_its_counted_attempt() -> None:
    limit = FailureLimit(FakeClock(), limit=2, window=60.0)
    limit.failed(["ip:a"])
    limit.failed(["ip:a"])
    limit.cancel(["ip:a"])
    assert limit.retry_after(["ip:a"]) == 0


def test_an_ipv6_network_is_one_address() -> None:
    assert client_network("2001:db8::1") == client_network("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_network("192.0.2.1") == "192.0.2.1"
    assert client_network("::ffff:192.0.2.1") == "192.0.2.1"  # not every IPv4 client at once
    assert client_network(None) == "None"
