"""The daemon with speech configured: a stored call's WAV is converted, the conversion nudges the
speech worker, and the call ends with its automatic tags; /metrics counts it (issue 16)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestClient

from pbx.app import build_app
from pbx.keys import CALLS, RECORDINGS
from tests.api.test_staff_ui import store_call
from tests.helpers import FakeClock, migrate, settings_for
from tests.speech_audio import KEYWORD_TEXT, need_espeak, speak

Client = TestClient  # type: ignore[type-arg]
KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}


async def test_a_recorded_call_gets_the_tags_of_the_phrases_said_in_it(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    need_espeak()
    (tmp_path / "rec").mkdir()
    wav = speak(KEYWORD_TEXT, tmp_path / "rec" / "call.wav")
    settled = time.time() - 60  # MixMonitor closed it a minute ago
    os.utime(wav, (settled, settled))
    settings = settings_for(
        tmp_path,
        recordings={"dir": "rec"},
        tags=["lead", "callback", "complaint", "spam"],
        speech={"keywords": KEYWORDS},
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    call_id = await store_call(client, "1800000000.1", recording=wav.name)
    client.app[RECORDINGS].call_stored()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        call = await client.app[CALLS].get(call_id)
        assert call is not None
        if call["tags"]:
            break
        await asyncio.sleep(0.2)
    assert call["recording"] == "call.mp3"
    assert call["tags"] == ["callback", "lead"]
    response = await client.get("/metrics")
    metrics = await response.text()
    assert 'calltrack_speech_calls_total{outcome="analysed"} 1.0' in metrics
    assert "calltrack_speech_backlog " in metrics
