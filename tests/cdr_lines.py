"""Calls as rows of Asterisk's cdr_csv Master.csv (20 columns, as asterisk.conf.d/cdr.conf asks),
made fast enough for files of a million rows; for the reconciliation tests and bench."""

from __future__ import annotations

from datetime import UTC, datetime

CONTEXT = "calltrack-inbound-call"  # the dialplan's, under the default asterisk.context
DID = "+74990000101"  # tests/helpers' config: the static number of source "billboard"


def cdr_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def busy_call(linkedid: str, at: float, did: str = DID) -> str:
    """A call the real line answered busy: its Dial row and its Hangup row."""
    t = cdr_time(at)
    head = f'"","79160000001","{did}","{CONTEXT}","","PJSIP/trunk-1"'
    return (
        f'{head},"PJSIP/realline-2","Dial","PJSIP/realline","{t}",,"{t}",0,0,"BUSY","",'
        f'"{linkedid}","","{linkedid}",1\n'
        f'{head},"","Hangup","","{t}",,"{t}",0,0,"BUSY","","{linkedid}","","{linkedid}",2\n'
    )


def many_calls(first: int, count: int, at: float) -> str:
    """`count` one-row calls numbered from `first` (linkedid "1.<number>"), all ending at `at`."""
    t = cdr_time(at)
    head = f'"","79160000001","{DID}","{CONTEXT}","","PJSIP/trunk-1","","Hangup","","{t}",,"{t}"'
    tail = ',0,0,"BUSY","","1.{0}","","1.{0}",1\n'
    return "".join(head + tail.format(n) for n in range(first, first + count))
