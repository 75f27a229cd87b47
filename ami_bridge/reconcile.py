"""Calls the AMI link missed, read back from Asterisk's cdr_csv Master.csv.

AMI has no replay: events sent while calltrack was down or the link was broken are gone. The CDR
file has every call, at one-second precision; the store is idempotent on linkedid, so a call both
seen live and read here is kept once. Needs the cdr.conf from asterisk.conf.d (uniqueid and
linkedid columns, unanswered calls, times in UTC).

The daemon reads the file incrementally (ami_bridge.cdr_tail): each pass goes on from where the
last one stopped, follows logrotate's rotations and reads a capped amount, so a file of millions
of rows costs nothing when nothing is new and never blocks a pass for long.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ami_bridge.cdr_follow import Position
from ami_bridge.cdr_tail import read_tail
from attribution.calls import CallReport, is_local_channel, local_partner
from attribution.phone import PhoneNumberError, to_e164
from dialplan.generator import CDR_START_PREFIX, call_context
from pbx.settings import Settings
from recordings.files import converted_beside

log = logging.getLogger(__name__)

_DIAL_STATUS = {
    "ANSWERED": "ANSWER",
    "NO ANSWER": "NOANSWER",
    "BUSY": "BUSY",
    "FAILED": "CHANUNAVAIL",
    "CONGESTION": "CONGESTION",
    # the caller hung up while the real line rang (cdr.conf canceldispositionenabled; without
    # it Asterisk writes NO ANSWER, and such a call reads as missed)
    "CANCEL": "CANCEL",
}
PASS_BYTES = 4 << 20  # a pass reads about this much (some 16,000 rows, well under a second)
CDR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC (cdr.conf usegmtime; `calltrack doctor` checks)
# An empty WAV is its 44-byte header: MixMonitor creates one even for calls never bridged.
_EMPTY_WAV = 44


@dataclass(frozen=True)
class CdrRow:
    src: str
    dst: str
    dcontext: str
    channel: str
    dstchannel: str
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


def _columns(fields: list[str]) -> str:
    return f"{len(fields)} columns, expected 20 or 21 (see asterisk.conf.d/cdr.conf)"


def _time(text: str) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, CDR_TIME_FORMAT).replace(tzinfo=UTC).timestamp()


def _linkedid(fields: list[str]) -> str | None:
    """The call a row belongs to, read without parsing the row (None: not a row of ours)."""
    if len(fields) == 20:  # loguniqueid, newcdrcolumns
        return fields[18] or fields[16]
    if len(fields) == 21:  # ... and loguserfield
        return fields[19] or fields[16]
    return None


def parse_row(fields: list[str]) -> CdrRow | str | None:
    """The row, or why it cannot be read (None: a row without times, nothing to report)."""
    userfield = ""
    if len(fields) == 20:  # loguniqueid, newcdrcolumns
        uniqueid, linkedid, sequence = fields[16], fields[18], fields[19]
    elif len(fields) == 21:  # ... and loguserfield
        uniqueid, userfield, linkedid, sequence = fields[16], fields[17], fields[19], fields[20]
    else:
        return _columns(fields)
    try:
        start, end = _time(fields[9]), _time(fields[11])
        answer = _time(fields[10])
        number = int(sequence or 0)
    except ValueError:
        return f"unreadable times or sequence {fields[9:12]!r} {sequence!r}"
    if start is None or end is None:
        return None
    return CdrRow(
        src=fields[1],
        dst=fields[2],
        dcontext=fields[3],
        channel=fields[5],
        dstchannel=fields[6],
        lastapp=fields[7],
        start=start,
        answer=answer,
        end=end,
        disposition=fields[14],
        uniqueid=uniqueid,
        linkedid=linkedid or uniqueid,
        sequence=number,
        exact_start=_exact_start(userfield),
    )


def _answered(row: CdrRow) -> float | None:
    return row.answer if row.disposition == "ANSWERED" else None


def _person_in(row: CdrRow, callers: Collection[str]) -> bool:
    """A row joins two channels (its own and its peer); a person took the call in it when the
    peer is a device (a Dial answered by a phone), or the row is a device's own with a channel
    of the answering side as its peer (an agent, who took the caller without a Dial). A Local
    channel's answer may be a machine's, and `callers` (the caller's channel, and the far half
    of the Local channel the caller is on: a call from a phone of the PBX) answered nothing."""
    if not row.dstchannel or row.dstchannel in callers:
        return False
    if not is_local_channel(row.dstchannel):
        return True
    return not is_local_channel(row.channel) and row.channel not in callers


def _report(
    linkedid: str,
    rows: list[CdrRow],
    contexts: Collection[str],
    recordings_dir: Path | None,
    region: str | None,
) -> CallReport | None:
    """The call of `rows`, all of its linkedid's: the calltrack contexts' (the inbound channel's)
    and those of the PBX's own dialplan it went on to (a ring group's, a transfer's)."""
    rows.sort(key=lambda r: (r.start, r.sequence))
    ours = [r for r in rows if r.dcontext in contexts]
    # the number dialled, from a row of the context tracked numbers go on to: a number the
    # trunk delivers that the calltrack context only passes to the PBX's own (its include) has
    # rows in that context too, and is not a tracked call
    tracked = {call_context(c) for c in contexts} & set(contexts)
    did = None
    for row in ours:
        if row.dcontext not in tracked:
            continue
        try:
            did = to_e164(row.dst, region)  # the dialplan also answers national forms
            break
        except PhoneNumberError:
            continue
    if did is None:
        return None
    inbound = next((r for r in ours if r.uniqueid == linkedid), ours[0])
    # The line took the call when one of the inbound channel's Dials was answered; a person did
    # when a Dial to a device was (on a Local line, voicemail answers too: see CallStatus).
    line_answers = [a for r in ours if (a := _answered(r)) and r.dstchannel]
    callers = {inbound.channel, local_partner(inbound.channel)}
    person_answers = [a for r in rows if (a := _answered(r)) and _person_in(r, callers)]
    # no sooner than the line (as the AMI fold takes it): an agent's row was answered when the
    # agent logged in, and says nothing of when the caller reached them
    answered_at = (
        max(min(person_answers), min(line_answers)) if line_answers and person_answers else None
    )
    dials = [r for r in ours if r.lastapp == "Dial"]
    if line_answers:
        status = "ANSWER"
    elif dials:
        status = _DIAL_STATUS.get(dials[-1].disposition, "CHANUNAVAIL")
    else:
        status = "CANCEL"  # the caller left before the real line was dialed
    # a voicemail's recording holds the message
    recording = _recording_of(inbound.uniqueid, recordings_dir) if line_answers else None
    return CallReport(
        linkedid=linkedid,
        caller=inbound.src,
        did=did,
        started_at=inbound.exact_start or min(r.start for r in ours),
        # the caller's channel's end, wherever it went on (a transfer into the PBX's dialplan),
        # as the AMI fold takes its Hangup: not a phone's that stayed up after the caller left
        # (or an agent's row with it as the peer: the caller's channel was in it to its end)
        ended_at=max(
            r.end for r in rows if r.uniqueid == inbound.uniqueid or r.dstchannel == inbound.channel
        ),
        answered_at=answered_at,
        dial_status=status,
        recording=recording,
        line_answered_at=min(line_answers) if line_answers else None,
    ).fitted()


def _recording_of(uniqueid: str, folder: Path | None) -> str | None:
    """The call's recording as the dialplan names it, if it has sound or was converted already.
    A call read again from the CDR after a restore from a backup was stored, and its WAV
    converted and deleted, since the backup: named by its WAV, the recording worker finds the
    converted file beside it and reads its length and waveform back (recordings.files.convert,
    as after a power cut that undid the call's last commit)."""
    name = f"{uniqueid}.wav"
    if folder is None or _recorded(folder / name):
        return name
    return name if converted_beside(folder / name) is not None else None


def _recorded(path: Path) -> bool:
    """A recording with sound in it is at `path`; also when that cannot be looked at (the
    folder closed to the daemon, an NFS error): named, its conversion says what is wrong, where
    an error here would stop reconciliation at this call for good."""
    try:
        return path.is_file() and path.stat().st_size > _EMPTY_WAV
    except OSError as exc:
        log.warning("recording %s: cannot look at it (%s); named all the same", path, exc)
        return True


def _first_linkedid(fields: list[str], linkedid: str) -> str:
    """The Linkedid the call of a row through the calltrack contexts began with, as the AMI
    fold keys it. A row carries the Linkedid its channel had when the row was written, and a
    bridge gives every channel in it the Linkedid of its oldest one: a caller connected to an
    agent who logged in earlier (app_agent_pool's AgentRequest) goes on under the agent's.
    A caller's channel from a trunk began its own call: its Linkedid was its Uniqueid. A Local
    channel (a call to a tracking number from inside the PBX) began in its group's."""
    uniqueid, channel = fields[16], fields[5]
    return uniqueid if uniqueid and not is_local_channel(channel) else linkedid


def _meet(start: str, end: str, other_start: str, other_end: str) -> bool:
    """Whether two spans of CDR times meet, give or take a second: the times are whole seconds,
    cut down, so a row begun the moment another ended may read a second after its end."""
    try:
        a, b, c, d = (_time(t) for t in (start, end, other_start, other_end))
    except ValueError:
        return False  # the row's own parse will say what is wrong with it
    if a is None or b is None or c is None or d is None:
        return False
    return a <= d + 1 and b >= c - 1


def _by_call(
    groups: Mapping[str, list[list[str]]], contexts: Collection[str]
) -> dict[str, list[list[str]]]:
    """The rows of each call through `contexts` (`groups`: the rows of each Linkedid), by the
    Linkedid it began with. A call has its own rows wherever they are, and the PBX's rows of
    its own Linkedid (a ring group's legs). Of a Linkedid that no call began with (an agent's
    login, which several callers may have been connected to in turn), a row goes to the call
    whose channel it names as its peer (the agent connected to that caller, or to the far half
    of the Local line it dialed); the others are left out."""
    calls: dict[str, list[list[str]]] = defaultdict(list)
    for linkedid, rows in groups.items():
        for fields in rows:
            if fields[3] in contexts:
                calls[_first_linkedid(fields, linkedid)].append(fields)
    # the channels another party's row may name, with their call and its time span: Asterisk
    # numbers channels anew when it restarts, so a name is only its call's while that lasts
    peers: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for call, rows in calls.items():
        span = (call, min(f[9] for f in rows), max(f[11] for f in rows))
        for fields in rows:
            peers[fields[5]].append(span)
            if is_local_channel(fields[6]):
                peers[local_partner(fields[6])].append(span)
    began = set(calls)
    for linkedid, rows in groups.items():
        for fields in rows:
            if fields[3] in contexts:
                continue
            if linkedid in began:
                calls[linkedid].append(fields)
                continue
            # an agent's row with a caller (or its Local line) as its peer, while that call was on
            for call, start, end in peers.get(fields[6], ()):
                if _meet(fields[9], fields[11], start, end):
                    calls[call].append(fields)
                    break
    return calls


def _reports(
    table: Iterable[list[str]],
    where: Path,
    since: float,
    contexts: Collection[str],
    recordings_dir: Path | None,
    region: str | None,
) -> list[CallReport]:
    """Reports for the calls in `table` (csv rows of `where`) through `contexts` that ended at
    or after `since`.

    Rows are grouped by call before they are parsed, and only calls that ended since `since`
    are parsed: a CDR's times sort as text, so the many old calls of a big file cost a string
    comparison each, not a parse.
    """
    newest = datetime.fromtimestamp(math.ceil(since), UTC).strftime(CDR_TIME_FORMAT)
    groups: dict[str, list[list[str]]] = defaultdict(list)
    ended: dict[str, str] = {}
    ours: set[str] = set()  # linkedids with rows through `contexts`: the others are the PBX's own
    bad = 0
    for fields in table:
        linkedid = _linkedid(fields)
        if linkedid is None:
            bad += 1
            if bad == 1:
                log.warning("%s: %s", where, _columns(fields))
            continue
        groups[linkedid].append(fields)
        ended[linkedid] = max(ended.get(linkedid, ""), fields[11])
        if fields[3] in contexts:
            ours.add(linkedid)
    if bad > 1:  # one line however many rows: a file in another format is one fault
        log.warning("%s: %d rows skipped for their columns", where, bad)
    reports = []
    recent = {k: rows for k, rows in groups.items() if k in ours and ended[k] >= newest}
    for call, table_rows in _by_call(recent, contexts).items():
        rows = []
        for fields in table_rows:
            row = parse_row(fields)
            if isinstance(row, str):
                log.warning("%s: call %s: %s", where, call, row)
            elif row is not None:
                rows.append(row)
        try:
            report = _report(call, rows, contexts, recordings_dir, region) if rows else None
        except Exception:  # a bug in one call's rows: logged, and the pass goes on past it
            log.exception("%s: call %s could not be read back", where, call)
            continue
        if report is not None and report.ended_at >= since:
            reports.append(report)
    reports.sort(key=lambda r: r.started_at)
    return reports


def read_cdr_reports(
    path: Path,
    since: float,
    contexts: Collection[str],
    recordings_dir: Path | None = None,
    region: str | None = None,
) -> list[CallReport]:
    """Reports for calls in the whole file at `path` through `contexts` that ended at or after
    `since` (Unix time).

    A recording is named only if `recordings_dir` holds a non-empty file for it (or if no
    directory is given). A dialled number written nationally is read in `region`, as the
    config's numbers are.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        return _reports(csv.reader(f), path, since, contexts, recordings_dir, region)


def _parsed(rows: list[bytes]) -> list[list[str]]:
    """Each row's fields. Rows that are not plain lines (a newline inside, or an odd number of
    quotes: a row torn by a write cut short, or joined with one) are parsed each on its own
    (some 1.3 times slower), so that an open quote or a newline outside quotes spoils that
    row only, never the pass: an error here would stop reconciliation at this spot for good."""
    texts = [row.decode("utf-8", errors="replace") for row in rows]
    if not any(b"\n" in row or row.count(b'"') % 2 for row in rows):
        with contextlib.suppress(csv.Error):  # a stray carriage return outside quotes
            fields = list(csv.reader(texts))
            if len(fields) == len(texts):
                return fields
    return [_fields(text) for text in texts]


def _fields(text: str) -> list[str]:
    try:
        return next(csv.reader((text,)), [])
    except csv.Error:  # a newline outside quotes: rows torn and joined
        return []


def _whole_calls(rows: list[bytes]) -> int:
    """How many of `rows` come before the run of rows of the last call: Asterisk writes a
    call's rows one after another, so that run may go on past a pass's cap, or in rows not
    written yet; it is left for the next pass (cdr_tail.read_tail)."""
    linkedids = [_linkedid(fields) for fields in _parsed(rows[-64:])]
    last = linkedids[-1]
    run = 1
    while run < len(linkedids) and linkedids[-run - 1] == last:
        run += 1
    return len(rows) - run


@dataclass(frozen=True)
class Pass:
    reports: list[CallReport]
    rows: int  # CDR rows read
    position: Position | None  # where the next pass goes on
    caught_up: bool  # False: the cap stopped this pass, run another
    settling: bool = False  # the file was just written: its last call was left for a pass after
    unreadable: bool = False  # a CDR file could not be read: its rows wait (cdr_tail.Tail)


def reconcile_pass(
    settings: Settings,
    since: float,
    position: Position | None,
    max_bytes: int = PASS_BYTES,
    settle: float = 0.0,
) -> Pass:
    """Calls that ended since `since` among the rows `asterisk.cdr_csv` gained after `position`,
    about `max_bytes` of them (none if cdr_csv is not configured). If the file was written less
    than `settle` seconds ago, its last call's rows are left for a later pass: Asterisk may not
    have written all of them (a row per channel), and a call read without its phone's row is
    a voicemail.

    Reads and parses files: run it in a thread (asyncio.to_thread) from the daemon. The caller
    keeps `Pass.position` once it has stored the reports, and runs passes until `caught_up`.
    """
    if settings.asterisk is None or settings.asterisk.cdr_csv is None:
        return Pass([], 0, position, caught_up=True)
    path = settings.asterisk.cdr_csv
    if not path.exists():
        log.warning("CDR file %s does not exist (yet)", path)
    tail = read_tail(path, position, max_bytes, _whole_calls, settle)
    context = settings.asterisk.context
    reports = _reports(
        _parsed(tail.rows),
        path,
        since,
        {context, call_context(context)},
        settings.asterisk_recordings_dir,
        settings.region,
    )
    return Pass(
        reports, len(tail.rows), tail.position, tail.caught_up, tail.settling, tail.unreadable
    )
