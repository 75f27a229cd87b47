"""Jobs for tests of pbx.job_pool, importable by its worker processes: one that works, one
whose worker process dies (a decoder crash) once the other is under way beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def good_job(marker: str) -> str:
    Path(marker).touch()
    time.sleep(1.0)
    return "fine"


def poison_job(marker: str) -> str:
    deadline = time.monotonic() + 2.0
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(1)
