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
