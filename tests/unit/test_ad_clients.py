"""The ad platforms' ids: only their own shapes are kept, and they map onto the session's columns."""

from __future__ import annotations

import dataclasses

from attribution.ad_clients import AdClientIds
from pbx.storage.tables import sessions


def test_columns_name_every_id_and_only_session_columns() -> None:
    ids = AdClientIds.read("1234567890.1700000000", "1700000000123456789")
    assert ids.columns() == dataclasses.asdict(ids)  # spelled out: a new id must be added there
    assert set(ids.columns()) <= set(sessions.c.keys())


def test_only_the_platforms_shapes_are_kept() -> None:
    assert AdClientIds.read("GA1.1.123.456", "abc").columns() == {
        "ga_client_id": None,
        "ym_client_id": None,
    }
    assert AdClientIds.read("123.456", "789") == AdClientIds("123.456", "789")
