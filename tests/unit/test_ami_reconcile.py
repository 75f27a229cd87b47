"""Reconciliation from cdr_csv's Master.csv as the lab's Asterisk 22 writes it with
asterisk.conf.d/cdr.conf (tests/fixtures/ami/Master.csv: the same three calls as lab_calls.ami).
"""

from __future__ import annotations

import csv
import io
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ami_bridge.reconcile import CdrRow, parse_row, read_cdr_reports
from ami_bridge.tracker import CallTracker, parse_stream
from attribution.calls import CALLER_MAX, CallStatus

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ami"
MASTER = FIXTURES / "Master.csv"
CONTEXTS = {"calltrack-inbound", "calltrack-inbound-call"}


def read_rows(path: Path) -> list[CdrRow]:
    with path.open(newline="") as f:
        return [row for fields in csv.reader(f) if isinstance(row := parse_row(fields), CdrRow)]


def test_rows_carry_uniqueid_and_linkedid() -> None:
    rows = read_rows(MASTER)
    assert len(rows) == 5
    assert all(r.linkedid == r.uniqueid for r in rows)
    assert rows[0].dst == "74990000002" and rows[0].lastapp == "Dial"


def test_one_report_per_call_matching_the_live_ones() -> None:
    reports = read_cdr_reports(MASTER, since=0, contexts=CONTEXTS)
    tracker = CallTracker()
    live = [
        r
        for e in parse_stream((FIXTURES / "lab_calls.ami").read_text())
        for r in tracker.feed(e, 0.0)
    ]
    assert [r.linkedid for r in reports] == [r.linkedid for r in live]
    for cdr, seen in zip(reports, live, strict=True):
        assert (cdr.did, cdr.caller, cdr.status) == (seen.did, seen.caller, seen.status)
        # whole seconds in the CDR
        assert abs(cdr.started_at - seen.started_at) < 1
        assert abs(cdr.ended_at - seen.ended_at) < 1
        assert abs(cdr.talk_seconds - seen.talk_seconds) <= 1
    assert [r.dial_status for r in reports] == ["ANSWER", "BUSY", "NOANSWER"]
    assert reports[0].recording == "1795807245.16.wav"
    assert reports[1].recording is None


def test_a_caller_who_hung_up_while_it_rang_is_abandoned(tmp_path: Path) -> None:
    """cdr.conf's canceldispositionenabled: Asterisk writes CANCEL for it (NO ANSWER without)."""
    text = MASTER.read_text().replace('"NO ANSWER"', '"CANCEL"')
    assert text != MASTER.read_text()
    (tmp_path / "Master.csv").write_text(text)
    reports = read_cdr_reports(tmp_path / "Master.csv", since=0, contexts=CONTEXTS)
    assert [r.status for r in reports][-1] is CallStatus.ABANDONED


def test_since_and_context_filter() -> None:
    # the busy and the unanswered call ended at 19:20:59 and 19:21:05 UTC
    since = 1795807259.0
    assert [r.did for r in read_cdr_reports(MASTER, since, CONTEXTS)] == [
        "+74990000003",
        "+74990000004",
    ]
    assert read_cdr_reports(MASTER, 0, {"from-internal"}) == []


def test_recording_named_only_if_the_file_has_audio(tmp_path: Path) -> None:
    name = "1795807245.16.wav"
    (tmp_path / name).write_bytes(b"RIFF" + b"\0" * 40)  # MixMonitor's empty WAV
    (report, *_) = read_cdr_reports(MASTER, 0, CONTEXTS, recordings_dir=tmp_path)
    assert report.status is CallStatus.ANSWERED and report.recording is None
    (tmp_path / name).write_bytes(b"RIFF" + b"\0" * 4000)
    (report, *_) = read_cdr_reports(MASTER, 0, CONTEXTS, recordings_dir=tmp_path)
    assert report.recording == name


def test_a_call_read_again_after_a_restore_keeps_its_converted_recording(tmp_path: Path) -> None:
    """Restored from a backup, the database lacks the calls stored since, and reconciliation
    reads them again from the CDR; their WAVs were converted and deleted meanwhile. They came
    back without a recording, and their MP3s stayed on the disk with nothing pointing at them."""
    (tmp_path / "1795807245.16.mp3").write_bytes(b"ID3" + b"\0" * 4000)
    (report, *_) = read_cdr_reports(MASTER, 0, CONTEXTS, recordings_dir=tmp_path)
    # named by its WAV: the recording worker then points the call at the MP3 it finds beside
    # it, with its length and waveform (test_recordings: ..._a_power_cut_undid_finds_...)
    assert report.recording == "1795807245.16.wav"
    (tmp_path / "1795807245.16.mp3").unlink()
    (report, *_) = read_cdr_reports(MASTER, 0, CONTEXTS, recordings_dir=tmp_path)
    assert report.recording is None


def test_rows_of_other_formats_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    shutil.copy(MASTER, path)
    with path.open("a") as f:
        f.write('"","1","2","calltrack-inbound-call"\n')
    assert len(read_cdr_reports(path, 0, CONTEXTS)) == 3


def test_exact_start_from_the_dialplans_userfield() -> None:
    """The CSV keeps whole seconds; the userfield (loguserfield=yes) keeps the exact start, so a
    call read back after an outage is matched to a lease that began within the same second."""
    [row] = read_rows(FIXTURES / "Master-userfield.csv")
    assert row.start == 1795808104.0
    assert row.exact_start == 1795808104.429731
    [report] = read_cdr_reports(FIXTURES / "Master-userfield.csv", since=0, contexts=CONTEXTS)
    assert report.started_at == 1795808104.429731


def test_an_over_long_caller_id_is_cut_to_its_column(tmp_path: Path) -> None:
    lines = MASTER.read_text().splitlines(keepends=True)
    first = next(csv.reader(lines[:1]))
    first[1] = "7" * 200  # src: the caller
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(first)
    master = tmp_path / "Master.csv"
    master.write_text(out.getvalue() + "".join(lines[1:]))
    (report, *_) = read_cdr_reports(master, 0, CONTEXTS)
    assert report.caller == "7" * CALLER_MAX


def test_a_national_dialled_number_is_read_in_the_region(tmp_path: Path) -> None:
    """The dialplan answers 8 499 ... too (region RU); the CDR keeps the number as dialled."""
    national = tmp_path / "Master.csv"
    national.write_text(
        MASTER.read_text()
        .replace('"74990000002"', '"84990000002"')
        .replace('"74990000003"', '"4990000003"')
    )
    assert [r.did for r in read_cdr_reports(national, 0, CONTEXTS, region="RU")] == [
        "+74990000002",
        "+74990000003",
        "+74990000004",
    ]


def test_a_local_line_read_back_as_the_live_fold_saw_it() -> None:
    """Master-local-lines.csv: the CDR of local_lines.ami's two calls. The rows of the PBX's own
    dialplan (context lab-pbx: the ring group's Dial and its voicemail) tell whether a phone
    answered; both calls come back as they were seen live."""
    reports = read_cdr_reports(FIXTURES / "Master-local-lines.csv", since=0, contexts=CONTEXTS)
    tracker = CallTracker()
    live = [
        r
        for e in parse_stream((FIXTURES / "local_lines.ami").read_text())
        for r in tracker.feed(e, 0.0)
    ]
    assert [r.status for r in reports] == [CallStatus.ANSWERED, CallStatus.VOICEMAIL]
    for cdr, seen in zip(reports, live, strict=True):
        assert (cdr.linkedid, cdr.status, cdr.recording) == (
            seen.linkedid,
            seen.status,
            seen.recording,
        )
        assert abs(cdr.ended_at - seen.ended_at) < 1
        assert abs(cdr.talk_seconds - seen.talk_seconds) <= 1
        assert abs(cdr.ring_seconds - seen.ring_seconds) <= 1  # the voicemail's: 3 s, live


def test_callers_connected_to_a_logged_in_agent_are_read_back_under_the_fold_s_keys() -> None:
    """Master-agent-calls.csv: the CDR of agent_calls.ami. Both callers' rows were written
    with the agent's Linkedid (one of them under its own as well), as were the agent's rows.
    Each call is read back once, under the Linkedid the AMI fold stored it with: before, the
    first came back under the agent's Linkedid, a second copy of a call already stored. The
    agent's rows with each caller (or its Local line) as their peer say that a person took it
    and when it ended."""
    reports = read_cdr_reports(FIXTURES / "Master-agent-calls.csv", since=0, contexts=CONTEXTS)
    tracker = CallTracker()
    live = [
        r
        for e in parse_stream((FIXTURES / "agent_calls.ami").read_text())
        for r in tracker.feed(e, 0.0)
    ]
    assert [(r.linkedid, r.caller, r.status) for r in reports] == [
        (r.linkedid, r.caller, r.status) for r in live
    ]
    assert {r.status for r in reports} == {CallStatus.ANSWERED}  # from the agent's rows
    for cdr, seen in zip(reports, live, strict=True):
        assert abs(cdr.started_at - seen.started_at) < 0.01  # the dialplan's exact start
        assert cdr.recording == seen.recording
        assert abs(cdr.ended_at - seen.ended_at) < 1  # the agent's row with the caller
        assert abs(cdr.talk_seconds - seen.talk_seconds) <= 1


def test_an_agents_rows_go_to_the_caller_they_were_with_across_an_asterisk_restart(
    tmp_path: Path,
) -> None:
    """Asterisk numbers its channels anew when it restarts: a caller an hour later (after a
    restart, the agent gone) may have the first caller's channel names. The agent's rows name
    their peer by channel name; they go to the call that was on then, not to the later one."""
    fixture = (FIXTURES / "Master-agent-calls.csv").read_text()
    first = "1796209060.1"  # its context rows: PJSIP/trunk-00000001, Local/agent@...-00000000
    later = "1796212660.1"  # an hour later, the same names, nobody to take it
    rows = [r for r in fixture.splitlines() if f'"{first}"' in r and "calltrack-inbound" in r]
    rows = [
        r.replace("10:57:", "11:57:").replace(first, later).replace("1796209054.0", later)
        for r in rows
    ]
    master = tmp_path / "Master.csv"
    master.write_text(fixture + "\n".join(rows) + "\n")
    reports = read_cdr_reports(master, since=0, contexts=CONTEXTS)
    status = {r.linkedid: r.status for r in reports}
    assert status[first] is CallStatus.ANSWERED and status[later] is CallStatus.VOICEMAIL


def test_an_agents_row_begun_a_second_after_the_callers_rows_still_goes_to_that_caller(
    tmp_path: Path,
) -> None:
    """CDR times are whole seconds, cut down: the agent's row with the first caller, begun the
    moment the caller's own rows ended, may read a second later. It is still that caller's
    (its end is the call's)."""
    fixture = (FIXTURES / "Master-agent-calls.csv").read_text()
    with_caller = '"PJSIP/agentphone-00000000","PJSIP/trunk-00000001","AgentLogin","1001,s",'
    begun = '"2026-12-02 10:57:41","2026-12-02 10:57:41",'
    assert fixture.count(with_caller + begun) == 1
    master = tmp_path / "Master.csv"
    master.write_text(
        fixture.replace(with_caller + begun, with_caller + begun.replace(":41", ":42"))
    )
    first = next(r for r in read_cdr_reports(master, 0, CONTEXTS) if r.linkedid == "1796209060.1")
    assert first.status is CallStatus.ANSWERED
    assert first.ended_at == datetime(2026, 12, 2, 10, 57, 50, tzinfo=UTC).timestamp()


def test_a_phone_of_the_pbx_calling_a_tracking_number_is_read_back_as_the_fold_saw_it() -> None:
    """Master-internal-call.csv: the CDR of internal_call.ami, a phone of the PBX calling a
    tracking number through a Local channel; the ring group went to voicemail. The phone's own
    row, answered by the Local channel the caller is on, is the caller's, not a person's."""
    [cdr] = read_cdr_reports(FIXTURES / "Master-internal-call.csv", since=0, contexts=CONTEXTS)
    tracker = CallTracker()
    [seen] = [
        r
        for e in parse_stream((FIXTURES / "internal_call.ami").read_text())
        for r in tracker.feed(e, 0.0)
    ]
    assert (cdr.linkedid, cdr.caller, cdr.status) == (seen.linkedid, "agentphone", seen.status)
    assert cdr.status is CallStatus.VOICEMAIL


def test_a_call_transferred_into_the_pbxs_dialplan_ends_with_the_callers_channel(
    tmp_path: Path,
) -> None:
    """After a blind transfer the caller's channel goes on in the PBX's dialplan (here
    from-internal, dialling extension 201): the call ends when that channel does, as the AMI
    fold takes its Hangup; a phone of the call that stays up after does not stretch it."""
    master = tmp_path / "Master.csv"
    inbound = MASTER.read_text().splitlines()[0]
    linkedid = "1795807245.16"
    transferred = (
        '"","sipp","201","from-internal","","PJSIP/trunk-00000010","PJSIP/201-00000020","Dial",'
        '"PJSIP/201,20","2026-11-27 19:20:54","2026-11-27 19:20:56","2026-11-27 19:22:10",76,74,'
        f'"ANSWERED","DOCUMENTATION","{linkedid}","","{linkedid}",30'
    )
    phone = (
        '"","201","202","from-internal","","PJSIP/201-00000020","PJSIP/202-00000021","Dial",'
        '"PJSIP/202,20","2026-11-27 19:22:10","2026-11-27 19:22:11","2026-11-27 19:25:00",170,169,'
        f'"ANSWERED","DOCUMENTATION","1795807245.20","","{linkedid}",31'
    )
    unrelated = transferred.replace(linkedid, "1795807299.40").replace(",30", ",32")
    master.write_text(f"{inbound}\n{transferred}\n{phone}\n{unrelated}\n")
    [report] = read_cdr_reports(master, since=0, contexts=CONTEXTS)
    assert report.linkedid == linkedid and report.status is CallStatus.ANSWERED
    assert report.ended_at == 1795807330.0  # 2026-11-27 19:22:10 UTC


def test_a_number_the_calltrack_context_passes_on_to_the_pbxs_own_is_not_a_tracked_call(
    tmp_path: Path,
) -> None:
    """Every number the trunk delivers may enter the calltrack context, which sends the ones it
    does not track on through `include => other_numbers_context`. An extension matched through
    an include keeps the including context, so the main line's call (Dial straight to the
    reception phone) has a row in calltrack-inbound: it was read back as a tracked call to
    +74951234567 every pass, with a call.completed webhook (a Bitrix24 lead) each."""
    master = tmp_path / "Master.csv"
    main_line = (
        '"","79161234567","74951234567","calltrack-inbound","","PJSIP/trunk-00000011",'
        '"PJSIP/reception-00000012","Dial","PJSIP/reception,30","2026-11-27 19:30:00",'
        '"2026-11-27 19:30:04","2026-11-27 19:31:00",60,56,"ANSWERED","DOCUMENTATION",'
        '"1795807800.50","","","1795807800.50",40'
    )
    tracked = MASTER.read_text().splitlines()[0]
    master.write_text(f"{main_line}\n{tracked}\n")
    [report] = read_cdr_reports(master, since=0, contexts=CONTEXTS)
    assert report.did != "+74951234567" and report.linkedid == "1795807245.16"
