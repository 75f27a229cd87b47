"""Exit when the event loop stalls.

Asterisk waits for a FastAGI answer without any time limit once it is connected, and the kernel
accepts its connections even while the daemon's event loop is blocked (a bug, a runaway
computation). Every ringing call would then hang until the caller gives up. A thread outside
the loop notices that the loop stopped ticking and ends the process: the AGI connections close,
the dialplan's fall-through sends each call to the real line (still recorded), a supervisor
(systemd) starts the daemon again, and reconciliation stores the calls it missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_STATUS = 70  # EX_SOFTWARE


def _exit() -> None:
    os._exit(EXIT_STATUS)


class LoopWatchdog:
    def __init__(self, stall_limit: float, on_stall: Callable[[], None] = _exit) -> None:
        self._limit = stall_limit
        self._on_stall = on_stall
        self._tick = min(0.25, stall_limit / 4)
        self._last = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    async def _heartbeat(self) -> None:
        while True:
            self._last = time.monotonic()
            await asyncio.sleep(self._tick)

    def _watch(self) -> None:
        while not self._stopped.wait(self._tick):
            stalled = time.monotonic() - self._last
            if stalled > self._limit:
                log.critical("event loop stalled for %.1fs: exiting so calls fail over", stalled)
                self._on_stall()
                return

    def start(self) -> asyncio.Task[None]:
        """Start ticking in the running loop and watching from a thread; cancel to stop."""
        self._last = time.monotonic()
        task = asyncio.create_task(self._heartbeat(), name="loop-heartbeat")
        task.add_done_callback(lambda _task: self._stopped.set())
        self._thread.start()
        return task
