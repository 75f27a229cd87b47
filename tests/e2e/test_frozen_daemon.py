"""A daemon whose event loop freezes must not hold ringing calls: Asterisk waits for a FastAGI
answer without a time limit once connected, and the kernel still accepts the connection."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from pbx.settings import Settings, load_settings
from pbx.watchdog import EXIT_STATUS
from tests.e2e.conftest import Daemon, call

pytestmark = pytest.mark.asterisk

# The real app, whose loop a bug blocks 2 s after start-up (this script is the test's, not the
# product's: the product has no way to freeze itself).
FREEZING_DAEMON = """
import asyncio, sys, time
from aiohttp import web
from pbx.app import build_app
from pbx.settings import load_settings

settings = load_settings(sys.argv[1])
app = build_app(settings)

async def freeze_later(app):
    asyncio.get_running_loop().call_later(2.0, time.sleep, 60)

app.on_startup.append(freeze_later)
web.run_app(app, host="127.0.0.1", port=settings.http.port)
"""


async def test_frozen_loop_exits_and_the_call_still_reaches_the_real_line(
    lab_dialplan: Settings, daemon_config: Path, tmp_path: Path
) -> None:
    daemon = Daemon(daemon_config, load_settings(daemon_config).http.port, tmp_path / "log")
    daemon.start([sys.executable, "-c", FREEZING_DAEMON])
    try:
        await daemon.wait_ready()
        await asyncio.sleep(2.5)  # frozen now: AGI connects are accepted, never answered
        started = time.monotonic()
        await call("+74990000009", tmp_path)  # asserts the real line got the INVITE
        assert daemon.proc.wait(5) == EXIT_STATUS
        assert "event loop stalled" in daemon.log.read_text()
        assert time.monotonic() - started < 20
    finally:
        daemon.kill()
