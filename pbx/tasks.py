"""Stopping background tasks: cancel them and wait until each has finished.

`task.cancel(); with suppress(CancelledError): await task` is the usual spelling, and it is
wrong when the caller itself is cancelled while it waits: the CancelledError aimed at the caller
is swallowed with the task's own, and the caller goes on. A daemon told to stop while it was
stepping down from AMI went back to wait for the consumer lock, and systemd killed it 30 s
later with its write-behind unflushed (review finding).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` (None: none) and return once each has finished; the caller's own
    cancellation is raised, not swallowed. An error a task ended with is logged."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    if not running:
        return
    await asyncio.wait(running)
    for task in running:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s stopped with an error", task.get_name(), exc_info=error)
