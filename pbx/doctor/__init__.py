"""`calltrack doctor`: what is wrong on the PBX side, one line each, and what to fix.

An admin who installed calltrack beside Asterisk needs to know which of the pieces it relies on
(AMI user, events, dialplan, FastAGI, CDR, recordings, database, disk) is missing, without
reading logs. Each check returns Results; a check that needs more AMI rights than the
configured user has is skipped with the right to add, never failed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    OK = "ok"
    # works now but will not for long (low disk), or likely does not but this host cannot tell
    # (an address another host's NAT may lead here): does not fail the run
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Result:
    """One line of the report. `fix` says what to change (FAIL, WARN) or what is needed to run
    the check (SKIP)."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value.upper():<4} {self.check}: {self.message}"
        if self.status is Status.SKIP:
            return f"{text} — needs {self.fix}" if self.fix else text
        return f"{text} — fix: {self.fix}" if self.fix else text


def ok(check: str, message: str) -> Result:
    return Result(check, Status.OK, message)


def fail(check: str, message: str, fix: str) -> Result:
    return Result(check, Status.FAIL, message, fix)


def skip(check: str, message: str, needs: str) -> Result:
    return Result(check, Status.SKIP, message, needs)


def failed(results: list[Result]) -> bool:
    return any(r.status is Status.FAIL for r in results)
