"""Tell systemd how the daemon is doing (sd_notify): serving, alive, stopping.

Under `Type=notify` systemd counts the service as started only once it says READY=1, after the
database and the routes are up and the HTTP port listens. With `WatchdogSec=` it restarts a
daemon that stops saying WATCHDOG=1: the pings are sent by a task of the event loop itself, so a
loop that freezes (a blocking call, a runaway computation) stops them and systemd restarts the
daemon, with or without the PBX link (whose LoopWatchdog thread only runs beside it).

The protocol is one datagram per message to the unix socket named in NOTIFY_SOCKET (a leading
'@' names an abstract socket). Without NOTIFY_SOCKET (not under systemd) nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not under systemd or it failed."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:  # the socket too: out of descriptors (EMFILE) for a moment, the next ping goes out
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:  # systemd gone or the socket wrong: the daemon serves on
        log.warning("could not notify systemd (%s): %s", message, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half the timeout systemd set in WATCHDOG_USEC, as
    systemd advises; None when it asks no pings of this process (sd_watchdog_enabled's rules)."""
    if not environ.get("NOTIFY_SOCKET"):
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def serving(text: str) -> None:
    """`web.run_app`'s print hook: it is called once every site listens, after the app's
    startup (database, PBX link), which is when systemd should hear READY=1."""
    print(text, flush=True)
    notify("READY=1")


async def _ping(interval: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def supervised(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context, the app's last: pings while it runs; as the first step of shutdown,
    STOPPING=1, so systemd shows the stop as intended rather than as a crash."""
    interval = watchdog_interval()
    pings = asyncio.create_task(_ping(interval), name="systemd-watchdog") if interval else None
    yield
    notify("STOPPING=1")
    await cancel_and_wait(pings)
