from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from pbx.watchdog import LoopWatchdog


async def _run_with(block_for: float) -> bool:
    stalled = threading.Event()
    watchdog = LoopWatchdog(stall_limit=0.3, on_stall=stalled.set)
    task = watchdog.start()
    await asyncio.sleep(0.2)
    time.sleep(block_for)  # noqa: ASYNC251  (the event loop is blocked, as by a bug)
    await asyncio.sleep(0.6)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return stalled.is_set()


async def test_a_blocked_loop_is_noticed() -> None:
    assert await _run_with(block_for=1.0)


async def test_a_healthy_loop_is_left_alone() -> None:
    assert not await _run_with(block_for=0.05)
