"""Calls the AMI link missed, read back from Asterisk's cdr_csv Master.csv.

AMI has no replay: events sent while calltrack was down or the link was broken are gone. The CDR
file has every call, at one-second precision; the store is idempotent on linkedid, so a call both
seen live and read here is kept once. Needs the cdr.conf from asterisk.conf.d (uniqueid and
linkedid columns, unanswered calls, times in UTC).
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from attribution.calls import CallReport
from attribution.phone import PhoneNumberError, to_e164
from dialplan.generator import CDR_START_PREFIX
from pbx.settings import Settings

log = logging.getLogger(__name__)

_DIAL_STATUS = {
    "ANSWERED": "ANSWER",
    "NO ANSWER": "NOANSWER",
    "BUSY": "BUSY",
    "FAILED": "CHANUNAVAIL",
    "CONGESTION": "CONGESTION",
}
# An empty WAV is its 44-byte header: MixMonitor creates one even for calls never bridged.
_EMPTY_WAV = 44


@dataclass(frozen=True)
class CdrRow:
    src: str
    dst: str
    dcontext: str
    lastapp: str
    start: float
    answer: float | None
    end: float
    disposition: str
    uniqueid: str
    linkedid: str
    sequence: int
    exact_start: float | None = None  # from the dialplan's CDR userfield


def _exact_start(userfield: str) -> float | None:
    if not userfield.startswith(CDR_START_PREFIX):
        return None
    try:
        return float(userfield.removeprefix(CDR_START_PREFIX))
    except ValueError:
        return None


def _time(text: str) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def read_rows(path: Path) -> Iterator[CdrRow]:
    """Master.csv rows with uniqueid and linkedid (with or without the userfield column)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        for number, row in enumerate(csv.reader(f), 1):
            userfield = ""
            if len(row) == 20:  # loguniqueid, newcdrcolumns
                uniqueid, linkedid, sequence = row[16], row[18], row[19]
            elif len(row) == 21:  # ... and loguserfield
                uniqueid, userfield, linkedid, sequence = row[16], row[17], row[19], row[20]
            else:
                log.warning(
                    "%s:%d: %d columns, expected 20 or 21 (see asterisk.conf.d/cdr.conf)",
                    path,
                    number,
                    len(row),
                )
                continue
            try:
                start, end = _time(row[9]), _time(row[11])
                answer = _time(row[10])
            except ValueError:
                log.warning("%s:%d: unreadable times %r", path, number, row[9:12])
                continue
            if start is None or end is None:
                continue
            yield CdrRow(
                src=row[1],
                dst=row[2],
                dcontext=row[3],
                lastapp=row[7],
                start=start,
                answer=answer,
                end=end,
                disposition=row[14],
                uniqueid=uniqueid,
                linkedid=linkedid or uniqueid,
                sequence=int(sequence or 0),
                exact_start=_exact_start(userfield),
            )


def _report(
    linkedid: str, rows: list[CdrRow], recordings_dir: Path | None, region: str | None
) -> CallReport | None:
    rows.sort(key=lambda r: (r.start, r.sequence))
    did = None
    for row in rows:
        try:
            did = to_e164(row.dst, region)  # the dialplan also answers national forms
            break
        except PhoneNumberError:
            continue
    if did is None:
        return None
    inbound = next((r for r in rows if r.uniqueid == linkedid), rows[0])
    answers = [r.answer for r in rows if r.disposition == "ANSWERED" and r.answer]
    answered_at = min(answers) if answers else None
    dials = [r for r in rows if r.lastapp == "Dial"]
    if answered_at is not None:
        status = "ANSWER"
    elif dials:
        status = _DIAL_STATUS.get(dials[-1].disposition, "CHANUNAVAIL")
    else:
        status = "CANCEL"  # the caller left before the real line was dialed
    recording = None
    if answered_at is not None:
        name = f"{inbound.uniqueid}.wav"  # as the dialplan names it
        path = recordings_dir / name if recordings_dir else None
        if path is None or (path.is_file() and path.stat().st_size > _EMPTY_WAV):
            recording = name
    return CallReport(
        linkedid=linkedid,
        caller=inbound.src,
        did=did,
        started_at=inbound.exact_start or min(r.start for r in rows),
        ended_at=max(r.end for r in rows),
        answered_at=answered_at,
        dial_status=status,
        recording=recording,
    ).fitted()


def read_cdr_reports(
    path: Path,
    since: float,
    contexts: Collection[str],
    recordings_dir: Path | None = None,
    region: str | None = None,
) -> list[CallReport]:
    """Reports for calls through `contexts` that ended at or after `since` (Unix time).

    A recording is named only if `recordings_dir` holds a non-empty file for it (or if no
    directory is given). A dialled number written nationally is read in `region`, as the
    config's numbers are.
    """
    calls: dict[str, list[CdrRow]] = defaultdict(list)
    for row in read_rows(path):
        if row.dcontext in contexts:
            calls[row.linkedid].append(row)
    reports = []
    for linkedid, rows in calls.items():
        if max(r.end for r in rows) < since:
            continue
        report = _report(linkedid, rows, recordings_dir, region)
        if report is not None:
            reports.append(report)
    reports.sort(key=lambda r: r.started_at)
    return reports


def reconcile(settings: Settings, since: float) -> list[CallReport]:
    """Calls that ended since `since` per `asterisk.cdr_csv`; [] if that is not configured.

    Reads the whole file: run it in a thread (asyncio.to_thread) from the daemon.
    """
    if settings.asterisk is None or settings.asterisk.cdr_csv is None:
        return []
    path = settings.asterisk.cdr_csv
    if not path.exists():
        log.warning("CDR file %s does not exist (yet)", path)
        return []
    context = settings.asterisk.context
    return read_cdr_reports(
        path,
        since,
        {context, f"{context}-call"},
        settings.asterisk_recordings_dir,
        settings.region,
    )
