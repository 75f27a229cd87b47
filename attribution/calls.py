"""What the PBX reports about a finished call, and the facts derived from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import PurePosixPath

# Widths of the calls table's columns (pbx/storage/tables.py is built from these): what the PBX
# sends is fitted to them where it becomes a CallReport, so no odd value gets a call refused.
#: Asterisk's are "<epoch>.<sequence>", prefixed with asterisk.conf's systemname when set; its
#: public unique ids may be 149 characters (AST_MAX_PUBLIC_UNIQUEID). Never cut: it is the key.
LINKEDID_MAX = 150
CALLER_MAX = 64
DID_MAX = 16  # E.164: "+" and at most 15 digits
DIAL_STATUS_MAX = 32
RECORDING_MAX = 255
#: how MixMonitor's file is named (the generated dialplan): a recording still so named waits for
#: conversion (recordings/worker.py); any other name is the converted file, ready for speech
AS_RECORDED = ".wav"
NOTES_MAX = 5000  # what staff or the CRM may write on a call


def stored_notes(text: str | None) -> str | None:
    """Notes as they are kept, from the staff form or the CRM alike: a browser's textarea
    sends CRLF line ends, a CRM LF; trimmed, and none for blank. One form, so saving the
    same notes again is no change (no call.updated)."""
    notes = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    return notes or None


class CallStatus(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"  # the real line did not answer in time
    BUSY = "busy"
    ABANDONED = "abandoned"  # the caller hung up while it rang
    FAILED = "failed"  # the real line could not be reached
    #: the real line took the call but no person did: voicemail, an IVR, a queue the caller left
    #: (a Local line, such as a FreePBX ring group, that no phone of answered)
    VOICEMAIL = "voicemail"


def is_local_channel(channel: str) -> bool:
    """A Local channel: a leg into the PBX's own dialplan (a ring group, a queue, voicemail),
    whose answer may be a machine's (CallStatus.VOICEMAIL); any other is a device's."""
    return channel.startswith("Local/")


def local_partner(channel: str) -> str:
    """The other half of a Local channel (`Local/600@ctx-00000001;1` for `...;2`, and back);
    any other channel is its own."""
    head, _, half = channel.rpartition(";")
    if not is_local_channel(channel) or half not in ("1", "2"):
        return channel
    return f"{head};{'2' if half == '1' else '1'}"


#: what reports count as missed, and what leaves a caller to call back
UNANSWERED = tuple(str(s) for s in CallStatus if s is not CallStatus.ANSWERED)

_STATUS_BY_DIAL = {
    "ANSWER": CallStatus.VOICEMAIL,  # without answered_at: no person answered
    "NOANSWER": CallStatus.MISSED,
    "BUSY": CallStatus.BUSY,
    "CANCEL": CallStatus.ABANDONED,
}


@dataclass(frozen=True)
class CallReport:
    """One inbound call as the PBX saw it, keyed by Asterisk's Linkedid.

    Times are Unix epoch seconds. `recording` is a file name relative to the recordings folder,
    built by the dialplan from the channel's unique id only. `answered_at` is when a person
    answered; a `dial_status` of ANSWER without it is a call the PBX itself took (voicemail).
    """

    linkedid: str
    caller: str
    did: str
    started_at: float
    ended_at: float
    answered_at: float | None
    dial_status: str
    recording: str | None = None
    #: when the real line took the call: a person's answer, or a voicemail's (which ends the
    #: caller's wait as much), so that a voicemail's ring time is not its message's length too
    line_answered_at: float | None = None

    def fitted(self) -> CallReport:
        """The report as the PBX boundary lets it in: caller and dial status cut to their
        columns, and no recording unless it is a plain file name that fits (the dialplan names
        it after the channel; anything else, such as a path, is not ours to open)."""
        recording = self.recording
        if recording is not None and not _plain_file_name(recording):
            recording = None
        return replace(
            self,
            caller=self.caller[:CALLER_MAX],
            dial_status=self.dial_status[:DIAL_STATUS_MAX],
            recording=recording,
        )

    @property
    def status(self) -> CallStatus:
        if self.answered_at is not None:
            return CallStatus.ANSWERED
        return _STATUS_BY_DIAL.get(self.dial_status.upper(), CallStatus.FAILED)

    @property
    def ring_seconds(self) -> float:
        rang_until = next(
            (t for t in (self.answered_at, self.line_answered_at) if t is not None), self.ended_at
        )
        return max(0.0, rang_until - self.started_at)

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


def _plain_file_name(name: str) -> bool:
    return (
        0 < len(name) <= RECORDING_MAX
        and PurePosixPath(name).name == name
        and name not in (".", "..")
        and "\\" not in name
        and name.isprintable()
    )


@dataclass(frozen=True)
class Route:
    """Where the dialplan sends a call, and the caller-ID name staff see while it rings."""

    destination: str
    caller_name: str | None = None


def allowed_tags(configured: list[str], current: list[str]) -> list[str]:
    """The tags staff or the CRM may give a call: the configured ones, and any the call has
    already (from before a tag left the config, or added by a keyword the speech worker heard),
    so that keeping a call's tags is never refused."""
    return configured + [tag for tag in current if tag not in configured]
