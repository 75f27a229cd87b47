"""All of doctor's checks in the order an admin fixes things: Asterisk, then this host."""

from __future__ import annotations

from collections.abc import Callable

from pbx.doctor import Result, fail
from pbx.doctor.local_checks import (
    UnknownWriter,
    asterisk_writer,
    calltrack_reader,
    cdr_check,
    database_check,
    disk_check,
    reads_unchecked,
    recordings_check,
)
from pbx.doctor.pbx_checks import pbx_checks
from pbx.settings import Settings

DEFAULT_MIN_FREE = 2**30


async def diagnose(
    settings: Settings,
    config: str,
    min_free: int = DEFAULT_MIN_FREE,
    *,
    daemon_user: str | None = None,
) -> list[Result]:
    results: list[Result] = []
    if settings.asterisk is None:
        results.append(
            fail("asterisk", f"{config} has no `asterisk:` section", "add it (config/example.yaml)")
        )
    else:
        pbx, said_user, here = await pbx_checks(settings, config, daemon_user)
        results += pbx
        found = calltrack_reader()  # as root: whose reads to check instead of doctor's
        reader = None if isinstance(found, UnknownWriter) else found
        results += _on_files("CDR", lambda: [cdr_check(settings, reader)])
        writer = asterisk_writer(said_user, here)
        results += _on_files("recordings", lambda: [recordings_check(settings, writer, reader)])
        if isinstance(found, UnknownWriter):
            results.append(reads_unchecked(found))
    results.append(await database_check(settings, config))
    results += _on_files("disk", lambda: disk_check(settings, min_free))
    return results


def _on_files(check: str, run: Callable[[], list[Result]]) -> list[Result]:
    """A check of this host's files, with a folder on the way it may not enter (EACCES: its
    user not yet in Asterisk's group) as its FAIL line, not a traceback losing the report."""
    try:
        return run()
    except OSError as exc:
        where = exc.filename or "a file"
        return [
            fail(
                check,
                f"cannot look at {where}: {exc.strerror or exc}",
                "let the user running calltrack reach it (its group, the folders' modes); a"
                " group just joined counts from the next login",
            )
        ]
