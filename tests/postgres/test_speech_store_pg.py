"""The speech worker's storage on a real PostgreSQL (ON CONFLICT, the boolean marker, the
report refresh and the outbox in one transaction): the same tests as on SQLite
(tests/unit/test_speech_store.py) with this module's `h`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import make_settings
from tests.unit.test_speech_store import (
    SPEECH_CONFIG,
    Harness,
    harness,
    test_a_failure_is_kept_once_and_stops_the_call_waiting,
    test_no_event_when_the_call_already_had_the_tags_or_nothing_was_heard,
    test_only_converted_unanalysed_recordings_wait_in_id_order,
    test_retention_forgets_old_transcripts_but_keeps_keywords_and_tags,
    test_save_stores_phrases_and_adds_automatic_tags_once,
)

pytestmark = pytest.mark.postgres

__all__ = [  # collected here again, with the `h` below
    "test_a_failure_is_kept_once_and_stops_the_call_waiting",
    "test_no_event_when_the_call_already_had_the_tags_or_nothing_was_heard",
    "test_only_converted_unanalysed_recordings_wait_in_id_order",
    "test_retention_forgets_old_transcripts_but_keeps_keywords_and_tags",
    "test_save_stores_phrases_and_adds_automatic_tags_once",
]


@pytest.fixture
async def h(postgres_url: str) -> AsyncIterator[Harness]:
    async for item in harness(make_settings(postgres_url, **SPEECH_CONFIG)):
        yield item
