"""Issue 16 end to end: a real call through the lab Asterisk in which the caller says a configured
phrase (espeak-ng, sent as G.711 RTP) ends, after recording, conversion and the speech worker,
with the phrase's automatic tag on the call."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from tests.asterisk.sipp import place_call, real_line, workdir
from tests.e2e.conftest import Daemon, write_daemon_config
from tests.speech_audio import KEYWORD_TEXT, need_espeak, speech_pcap

# quiet: the phrase goes as RTP in real time; with other tests running beside it, late packets
# once garbled "price" (scripts/run-tests runs it after them)
pytestmark = [pytest.mark.asterisk, pytest.mark.quiet]

STATIC = "+74990000009"
KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    return write_daemon_config(
        tmp_path, tags=["lead", "callback", "complaint", "spam"], speech={"keywords": KEYWORDS}
    )


async def metric(daemon: Daemon, line: str) -> str | None:
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as response:
        text = await response.text()
    return next((m for m in text.splitlines() if m.startswith(line)), None)


async def test_a_call_saying_a_phrase_ends_with_its_automatic_tag(
    daemon: Daemon, tmp_path: Path
) -> None:
    need_espeak()
    carrier = workdir(tmp_path / "uac")
    speech_pcap(KEYWORD_TEXT, carrier / "pcap" / "g711a.pcap")  # what uac_audio.xml plays
    async with real_line(tmp_path / "uas") as real:
        await place_call(STATIC.lstrip("+"), carrier, scenario="uac_audio.xml")
        await real.wait()
    stored = await daemon.wait_call(STATIC)
    await daemon.wait_converted(stored["id"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        call = next(c for c in await daemon.calls() if c["id"] == stored["id"])
        if call["tags"]:
            break
        await asyncio.sleep(0.3)
    assert call["tags"] == ["callback", "lead"], daemon.log.read_text()[-3000:]
    assert await metric(daemon, 'calltrack_speech_calls_total{outcome="analysed"}') is not None
    assert await metric(daemon, "calltrack_speech_backlog ") is not None
    # this call's analysis is stored; the gauge itself may count other calls: the daemon reads
    # the lab's shared CDR at start, and earlier tests' converted calls wait for analysis too
    with contextlib.closing(sqlite3.connect(tmp_path / "calltrack.db")) as db:
        analysed = db.execute(
            "SELECT analysed_at FROM call_speech WHERE call_id = ?", (stored["id"],)
        ).fetchone()
    assert analysed is not None and analysed[0] is not None
