"""Stopping background tasks without swallowing the stopper's own cancellation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pbx.tasks import cancel_and_wait


async def _slow_to_stop() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)  # cleanup that takes a moment (a connection closing)
        raise


async def test_a_stopper_cancelled_while_it_waits_is_cancelled() -> None:
    """`suppress(CancelledError)` around `await task` swallowed the cancellation aimed at the
    stopper too: a daemon told to stop while stepping down from AMI went on to wait for the
    consumer lock again, and systemd killed it 30 s later."""
    child = asyncio.create_task(_slow_to_stop())
    await asyncio.sleep(0)
    went_on: list[bool] = []

    async def stopper() -> None:
        await cancel_and_wait(child, None)
        went_on.append(True)

    stopping = asyncio.create_task(stopper())
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert went_on == []


async def test_each_task_has_stopped_when_it_returns_and_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_on_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("could not close its file") from None

    slow = asyncio.create_task(_slow_to_stop())
    failing = asyncio.create_task(fails_on_stop(), name="journal")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="pbx.tasks"):
        await cancel_and_wait(slow, failing)
    assert slow.cancelled() and failing.done()
    assert "journal stopped with an error" in caplog.text
    assert "could not close its file" in caplog.text
    await cancel_and_wait()  # nothing to stop
