"""A daemon that cannot take the AMI consumer lock says why at the default log level, once per
reason: meanwhile no daemon follows AMI, and a lasting reason is the admin's to fix."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from pbx.ami_role import AmiConsumerLock


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free again once closed: nothing listens there


async def test_a_lock_it_cannot_take_is_warned_about_once_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql+asyncpg://calltrack@127.0.0.1:{closed_port()}/calltrack"
    lock = AmiConsumerLock(url, retry_every=0.1, idle_limit=1.0)
    with caplog.at_level(logging.WARNING, logger="pbx.ami_role"), pytest.raises(TimeoutError):
        await asyncio.wait_for(lock.acquire(), 1.0)  # ~10 attempts, all refused
    await lock.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "AMI lock: cannot take it" in warnings[0] and "Connect call failed" in warnings[0]


async def test_a_holder_whose_checks_stop_answering_stops_before_the_lock_can_be_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server frees the lock idle_limit after it answered the last good check. Each check
    got idle_limit - retry_every after its sleep, so the holder gave up idle_limit after the
    last good one was sent, at the moment the lock could be freed or after it: another daemon
    could take over while this one still followed AMI."""
    import time

    lock = AmiConsumerLock("postgresql+asyncpg://x@127.0.0.1:1/x", retry_every=0.2, idle_limit=1.0)
    sent: list[float] = []

    async def query(sql: str, within: float | None = None, **params: int) -> object:
        sent.append(time.monotonic())
        async with asyncio.timeout(within):
            if len(sent) > 1:  # the database stops answering after the first check
                await asyncio.Event().wait()
        return 1

    monkeypatch.setattr(lock, "_query", query)
    await asyncio.wait_for(lock.hold(), 5)
    stopped = time.monotonic()
    # the server could free it 1.0 s after answering the good check, sent at sent[0]
    assert stopped - sent[0] < 1.0, stopped - sent[0]
    await lock.close()
