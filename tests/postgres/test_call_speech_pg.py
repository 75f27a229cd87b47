"""Speech results (issue 16) on a real PostgreSQL: the call JSON's keywords and automatic tags,
the keyword filter and its distinct phrases, tag edits that keep the automatic marker and the
call page, through the same tests as on SQLite (tests/api/test_call_speech.py) with this
module's `client` on PostgreSQL (the boolean marker and DISTINCT differ by dialect)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pbx.app import build_app
from tests.api.test_call_speech import (
    NOW,
    Client,
    test_a_crm_patch_keeps_a_kept_automatic_tag_automatic_and_a_removed_one_gone,
    test_the_api_filters_calls_by_a_keyword_heard,
    test_the_call_json_has_keywords_in_time_order_the_transcript_and_automatic_tags,
    test_the_call_log_filters_by_keyword_and_lists_the_phrases_heard,
    test_the_call_page_shows_markers_keywords_and_the_escaped_transcript,
    test_the_review_form_keeps_a_kept_automatic_tag_and_drops_a_removed_one,
)
from tests.helpers import FakeClock, make_settings, migrate, staff_users

pytestmark = pytest.mark.postgres

__all__ = [  # collected here again, with the client below
    "test_a_crm_patch_keeps_a_kept_automatic_tag_automatic_and_a_removed_one_gone",
    "test_the_api_filters_calls_by_a_keyword_heard",
    "test_the_call_json_has_keywords_in_time_order_the_transcript_and_automatic_tags",
    "test_the_call_log_filters_by_keyword_and_lists_the_phrases_heard",
    "test_the_call_page_shows_markers_keywords_and_the_escaped_transcript",
    "test_the_review_form_keeps_a_kept_automatic_tag_and_drops_a_removed_one",
]


@pytest.fixture
async def client(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> Client:
    (tmp_path / "rec").mkdir()
    settings = make_settings(
        postgres_url, users=staff_users(), recordings={"dir": str(tmp_path / "rec")}
    )
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=FakeClock(NOW)))
