"""A pooled connection the server closed is replaced when it is checked out, with no round trip.

calltrack's PostgreSQL engine has no pool_pre_ping (a round trip per checkout, ~8 % of a daemon's
CPU under load); a connection whose server side went away (PostgreSQL restarted, the backend
killed) is dropped at checkout instead, as asyncpg already knows it closed (pbx.storage.db)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from pbx.storage.db import open_engine


async def test_a_connection_the_server_closed_is_not_handed_out(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    killer = open_engine(postgres_url)
    try:
        async with engine.connect() as conn:  # the pool keeps this connection afterwards
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with killer.connect() as conn:
            # waits (up to 5 s) for the backend to have exited
            assert await conn.scalar(text(f"SELECT pg_terminate_backend({pid}, 5000)"))
        await asyncio.sleep(0.2)  # the loop reads the close on the idle connection's socket
        async with engine.connect() as conn:  # without the check: "connection is closed"
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
        await killer.dispose()
