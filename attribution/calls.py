"""What the PBX reports about a finished call, and the facts derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CallStatus(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"  # the real line did not answer in time
    BUSY = "busy"
    ABANDONED = "abandoned"  # the caller hung up while it rang
    FAILED = "failed"  # the real line could not be reached


_STATUS_BY_DIAL = {
    "ANSWER": CallStatus.ANSWERED,
    "NOANSWER": CallStatus.MISSED,
    "BUSY": CallStatus.BUSY,
    "CANCEL": CallStatus.ABANDONED,
}


@dataclass(frozen=True)
class CallReport:
    """One inbound call as the PBX saw it, keyed by Asterisk's Linkedid.

    Times are Unix epoch seconds. `recording` is a file name relative to the recordings folder,
    built by the dialplan from the channel's unique id only.
    """

    linkedid: str
    caller: str
    did: str
    started_at: float
    ended_at: float
    answered_at: float | None
    dial_status: str
    recording: str | None = None

    @property
    def status(self) -> CallStatus:
        if self.answered_at is not None:
            return CallStatus.ANSWERED
        return _STATUS_BY_DIAL.get(self.dial_status.upper(), CallStatus.FAILED)

    @property
    def ring_seconds(self) -> float:
        rang_until = self.answered_at if self.answered_at is not None else self.ended_at
        return max(0.0, rang_until - self.started_at)

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


@dataclass(frozen=True)
class Route:
    """Where the dialplan sends a call, and the caller-ID name staff see while it rings."""

    destination: str
    caller_name: str | None = None
