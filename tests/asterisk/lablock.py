"""One holder of the lab per process: its SIP and AGI ports are shared by everything on this
machine, so another test run (or a benchmark) waits for the lock.

A plain module, not a conftest: conftest fixtures can be registered twice (tests/e2e imports the
lab fixtures), and a second flock on a new descriptor in the same process would wait forever.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

LAB_LOCK = Path("/run/calltrack-lab/tests.lock")
_held: list[IO[str]] = []


def hold_lab() -> None:
    """Take the lab for the rest of this process (released when the process exits)."""
    if not _held:
        LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = LAB_LOCK.open("w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held.append(lock)
