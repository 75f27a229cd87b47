"""Session, visitor and lease ids: unguessable, and made in time order (index locality)."""

from __future__ import annotations

import time

from pbx.storage.number_claims import new_id
from pbx.storage.visits import is_id


def test_ids_are_32_hex_digits_that_the_visitor_api_accepts() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(is_id(i) for i in ids)
    assert len(set(ids)) == 1000
    # 80 random bits after the time: within one millisecond the ids still differ in every
    # position of their random part
    tails = {i[12:] for i in ids}
    assert len(tails) == 1000
    assert all(len({t[k] for t in tails}) > 1 for k in range(20))


def test_ids_made_later_sort_after() -> None:
    earlier = [new_id() for _ in range(50)]
    time.sleep(0.002)
    later = [new_id() for _ in range(50)]
    assert max(earlier) < min(later)
    assert abs(int(later[0][:12], 16) / 1000 - time.time()) < 5  # the time in front, in ms
