"""All of doctor's checks in the order an admin fixes things: Asterisk, then this host."""

from __future__ import annotations

from pbx.doctor import Result, fail
from pbx.doctor.local_checks import cdr_check, database_check, disk_check, recordings_check
from pbx.doctor.pbx_checks import pbx_checks
from pbx.settings import Settings

DEFAULT_MIN_FREE = 2**30


async def diagnose(
    settings: Settings, config: str, min_free: int = DEFAULT_MIN_FREE
) -> list[Result]:
    results: list[Result] = []
    if settings.asterisk is None:
        results.append(
            fail("asterisk", f"{config} has no `asterisk:` section", "add it (config/example.yaml)")
        )
    else:
        pbx, asterisk_user = await pbx_checks(settings, config)
        results += pbx
        results.append(cdr_check(settings))
        results.append(recordings_check(settings, asterisk_user))
    results.append(await database_check(settings, config))
    results += disk_check(settings, min_free)
    return results
