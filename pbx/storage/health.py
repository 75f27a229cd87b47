"""Whether the database takes writes. A full disk still answers reads (`SELECT 1` works), so
/healthz also hears from the writers: the last failed write is shown for a while, and logged
once when writes start failing and once when they work again, not once per request."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.errors import outage_reason

log = logging.getLogger(__name__)

#: a failed write is shown this long after it, unless a write succeeds meanwhile
SHOWN_FOR = 10.0
#: while writes keep failing, the log says so again this often
REPEAT_EVERY = 60.0
#: less free space than this on the SQLite file's filesystem is reported as full
LOW_DISK_BYTES = 1 << 20


class WriteHealth:
    """What the short write transactions (visits, leases, write-behind) last met."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._failing_since: float | None = None
        self._last_failure = 0.0
        self._logged_at = 0.0
        self._failures = 0
        self._reason = ""

    def failed(self, error: BaseException) -> None:
        now = self._clock()
        self._reason = outage_reason(error)
        self._last_failure = now
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = self._logged_at = now
            log.error(
                "database cannot take writes (%s): visitors see the site's own numbers, calls"
                " wait in memory and in Asterisk's CDR until it can",
                self._reason,
            )
        elif now - self._logged_at >= REPEAT_EVERY:
            self._logged_at = now
            log.error(
                "database still cannot take writes (%s): %d writes failed in %.0f s",
                self._reason,
                self._failures,
                now - self._failing_since,
            )

    def ok(self) -> None:
        if self._failing_since is None:
            return
        log.warning(
            "database takes writes again after %.1f s (%d writes failed meanwhile)",
            self._clock() - self._failing_since,
            self._failures,
        )
        self._failing_since = None
        self._failures = 0

    def problem(self) -> str | None:
        """The reason the last write failed, if it failed lately and none worked since."""
        if self._failing_since is None or self._clock() - self._last_failure >= SHOWN_FOR:
            return None
        return self._reason


def low_disk(engine: AsyncEngine) -> str | None:
    """ "full: ..." when a SQLite file's filesystem has (almost) no space left: writes will
    fail even before one has been tried. None for PostgreSQL and in-memory SQLite."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return None
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None  # the database itself says what is wrong with its folder
    if free >= LOW_DISK_BYTES:
        return None
    return f"full: {free} bytes free on {folder}"
