"""A module whose import takes CALLTRACK_TEST_SLOW_IMPORT seconds, as a job module with heavy
imports (speech engines) keeps the fork server starting; and a job that takes its time."""

from __future__ import annotations

import os
import time
from pathlib import Path

time.sleep(float(os.environ.get("CALLTRACK_TEST_SLOW_IMPORT", "0")))


def slow_job(marker: str, seconds: float) -> None:
    Path(marker).touch()
    time.sleep(seconds)
