"""doctor's checks of this host's files, on real files and a real SQLite database."""

from __future__ import annotations

import grp
import os
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.doctor import Status
from pbx.doctor.local_checks import (
    UnknownWriter,
    Writer,
    asterisk_writer,
    calltrack_reader,
    cdr_check,
    database_check,
    disk_check,
    may_write,
    reads_unchecked,
    recordings_check,
    running_asterisk,
)
from pbx.doctor.run import diagnose
from tests.helpers import migrate, settings_for

# a Master.csv row of the lab (loguniqueid, loguserfield, newcdrcolumns): 21 columns
ROW_21 = (
    '"","sipp","74990000002","calltrack-inbound-call","""sipp"" <sipp>","PJSIP/trunk-00000000",'
    '"PJSIP/realline-00000001","Dial","PJSIP/realline,6","2026-11-30 09:27:44",'
    '"2026-11-30 09:27:44","2026-11-30 09:27:53",9,9,"ANSWERED","DOCUMENTATION",'
    '"1796030864.0","calltrack-start=1796030864.413772","","1796030864.0",0\n'
)
# the same call with cdr.conf's defaults: 16 columns, up to amaflags
ROW_16 = ROW_21.split(',"1796030864.0"', 1)[0] + "\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def _asterisk(tmp_path: Path, **overrides: object) -> dict[str, object]:
    recordings = tmp_path / "asterisk-recordings"
    recordings.mkdir(exist_ok=True)
    section: dict[str, object] = {
        "ami": {"secret": "x"},
        "recordings_dir": str(recordings),
        "cdr_csv": str(tmp_path / "Master.csv"),
    }
    section.update(overrides)
    return {"asterisk": section}


def test_cdr_with_the_columns_is_ok(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    (tmp_path / "Master.csv").write_text(ROW_16 + ROW_21)
    assert cdr_check(settings).status is Status.OK


def test_cdr_missing_or_without_columns_fails(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    missing = cdr_check(settings)
    assert missing.status is Status.FAIL and "does not exist" in missing.message
    (tmp_path / "Master.csv").write_text(ROW_21 + ROW_16)  # the newest row counts
    columns = cdr_check(settings)
    assert columns.status is Status.FAIL
    assert "16 columns" in columns.message and "loguniqueid = yes" in columns.fix
    unset = cdr_check(settings_for(tmp_path, **_asterisk(tmp_path, cdr_csv=None)))
    assert unset.status is Status.FAIL and "asterisk.cdr_csv" in unset.fix


def test_cdr_in_local_time_fails_with_its_offset(tmp_path: Path) -> None:
    """usegmtime off: Moscow's times, read as UTC, are 3 h late (west of UTC, early: calls
    recovered from it would be skipped as older than the last one stored)."""
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    local = ROW_21.replace(
        '"2026-11-30 09:27:44","2026-11-30 09:27:44","2026-11-30 09:27:53"',
        '"2026-11-30 12:27:44","2026-11-30 12:27:44","2026-11-30 12:27:53"',
    )
    assert local != ROW_21
    (tmp_path / "Master.csv").write_text(local)
    result = cdr_check(settings)
    assert result.status is Status.FAIL and "+3 h" in result.message
    assert "usegmtime = yes" in result.fix


def test_a_row_that_starts_minutes_after_its_call_is_not_a_time_zone(tmp_path: Path) -> None:
    """When the callee hangs up first, the caller's channel goes on in the dialplan and
    Asterisk starts a new CDR for it at that moment, with the call's userfield: after a
    5-minute call its start is 5 minutes after the exact start, on a PBX in UTC. It read as
    "+0 h from the call's own start" (20 minutes: "+0.25 h"), a FAIL with usegmtime = yes set."""
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    for minutes in (5, 20, 95):
        later = ROW_21.replace(
            '"2026-11-30 09:27:44","2026-11-30 09:27:44","2026-11-30 09:27:53"',
            f'"2026-11-30 {9 + (27 + minutes) // 60:02}:{(27 + minutes) % 60:02}:44",'
            '"2026-11-30 11:59:00","2026-11-30 11:59:01"',
        )
        assert later != ROW_21
        (tmp_path / "Master.csv").write_text(ROW_21 + later)
        result = cdr_check(settings)
        assert result.status is Status.OK, (minutes, result)


def test_empty_cdr_is_a_warning(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    (tmp_path / "Master.csv").write_text("")
    assert cdr_check(settings).status is Status.WARN


ROOT = Writer("root", 0, frozenset({0}))
ASTERISK = Writer("asterisk", 4321, frozenset({4321}))
UNKNOWN = UnknownWriter("Asterisk does not say", "`runuser` in asterisk.conf")


@pytest.fixture
def passable(tmp_path: Path) -> Iterator[Path]:
    """tmp_path with every folder above it open to pass through (pytest makes its own 0700):
    the recordings checks look at the way to the folder too."""
    above = [p for p in (tmp_path, *tmp_path.parents) if not p.stat().st_mode & stat.S_IXOTH]
    modes = {p: p.stat().st_mode for p in above}
    for p in above:
        p.chmod(p.stat().st_mode | 0o111)
    try:
        yield tmp_path
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_recordings_folder(passable: Path) -> None:
    tmp_path = passable
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    folder = tmp_path / "asterisk-recordings"
    os.chown(folder, 0, 0)
    folder.chmod(0o755)
    assert recordings_check(settings, ROOT).status is Status.OK
    theirs = recordings_check(settings, ASTERISK)
    assert theirs.status is Status.FAIL and "is not writable by asterisk" in theirs.message
    assert "install -d -o asterisk -m 2775" in theirs.fix
    os.chown(folder, 0, 4321)
    folder.chmod(0o2775)
    assert recordings_check(settings, ASTERISK).status is Status.OK
    folder.chmod(0o555)
    try:
        nobody = recordings_check(settings, UNKNOWN)
        assert nobody.status is Status.FAIL and "writable by nobody" in nobody.message
    finally:
        folder.chmod(0o755)
    folder.rmdir()
    gone = recordings_check(settings, ROOT)
    assert gone.status is Status.FAIL and "is not a folder" in gone.message


def test_recordings_folder_of_an_asterisk_that_does_not_say_who_it_is(passable: Path) -> None:
    """Asterisk says "User name and group: /" unless asterisk.conf names a runuser, also when
    systemd's User= or -U started it as another user: a folder only root may write in was
    passed with OK, and no recording was ever written. Unknown, it is skipped with what would
    tell, unless anyone may write in the folder."""
    tmp_path = passable
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    folder = tmp_path / "asterisk-recordings"
    os.chown(folder, 0, 0)
    folder.chmod(0o755)
    unknown = recordings_check(settings, UNKNOWN)
    assert unknown.status is Status.SKIP
    assert "drwxr-xr-x" in unknown.message and "Asterisk does not say" in unknown.message
    assert unknown.fix == "`runuser` in asterisk.conf"
    folder.chmod(0o1777)
    assert recordings_check(settings, UNKNOWN).status is Status.OK


def fake_process(proc: Path, pid: int, comm: str, uid: int, groups: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "comm").write_text(f"{comm}\n")
    (proc / str(pid) / "cmdline").write_bytes(f"/usr/sbin/{comm}\0-f\0".encode())
    (proc / str(pid) / "status").write_text(
        f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
        f"Groups:\t{groups}\n"
    )


def test_the_asterisk_running_here_is_who_writes(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_process(proc, 1, "systemd", 0, "")
    fake_process(proc, 200, "sh", 4321, "")
    assert running_asterisk(proc) is None
    fake_process(proc, 300, "asterisk", 4321, "20 29")
    fake_process(proc, 310, "asterisk", 0, "")  # root's console: asterisk -rx "core show ..."
    (proc / "310" / "cmdline").write_bytes(b"asterisk\0-rx\0core show channels\0")
    (proc / "self").mkdir()
    assert running_asterisk(proc) == Writer("uid 4321", 4321, frozenset({4321, 20, 29}))
    fake_process(proc, 301, "asterisk", 0, "")  # another one, another user: cannot tell
    assert running_asterisk(proc) is None


def test_who_asterisk_writes_as() -> None:
    assert asterisk_writer("root", here=False) == Writer("root", 0, frozenset({0}))
    stranger = asterisk_writer("no-such-user-here", here=False)
    assert isinstance(stranger, UnknownWriter) and "a user this host does not have" in stranger.why
    not_said = asterisk_writer("", here=False)
    assert isinstance(not_said, UnknownWriter) and "`runuser`" in not_said.needs
    assert "it runs on another host" in not_said.why
    not_asked = asterisk_writer(None, here=None)
    assert isinstance(not_asked, UnknownWriter) and "`write = command`" in not_asked.needs


def test_write_permission_by_owner_group_other() -> None:
    drwxr_xr_x = stat.S_IFDIR | 0o755
    drwxrwsr_x = stat.S_IFDIR | 0o2775
    assert may_write(drwxr_xr_x, 100, 100, 100, frozenset({100}))
    assert not may_write(drwxr_xr_x, 100, 100, 200, frozenset({100}))  # group lacks w
    assert may_write(drwxrwsr_x, 100, 100, 200, frozenset({100}))
    assert not may_write(drwxrwsr_x, 100, 100, 200, frozenset({300}))  # other lacks w
    assert may_write(stat.S_IFDIR | 0o500, 100, 100, 0, frozenset())  # root


async def test_database_at_the_current_migration(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    missing = await database_check(settings, "c.yaml")
    assert missing.status is Status.FAIL and missing.fix == "`calltrack db upgrade -c c.yaml`"
    (tmp_path / "calltrack.db").write_bytes(b"")  # a file, no schema
    empty = await database_check(settings, "c.yaml")
    assert empty.status is Status.FAIL and "no calltrack schema" in empty.message
    await migrate(settings)
    assert (await database_check(settings, "c.yaml")).status is Status.OK


async def test_a_sqlite_url_with_parameters_is_found(tmp_path: Path) -> None:
    """`?timeout=20` was read as part of the file's name: "does not exist"."""
    settings = settings_for(tmp_path)
    await migrate(settings)
    with_query = settings.model_copy(update={"database": settings.database + "?timeout=20"})
    assert (await database_check(with_query, "c.yaml")).status is Status.OK


def test_free_disk_warns_under_the_threshold(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    plenty = disk_check(settings, free // 2)
    assert plenty and all(r.status is Status.OK for r in plenty)
    short = disk_check(settings, free * 2)
    assert short and all(r.status is Status.WARN for r in short)


async def test_a_folder_it_may_not_enter_is_a_fail_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's is_file/is_dir/exists raise on EACCES (a folder on the way that calltrack's
    user may not enter: its group just joined, not yet in effect). Tests run as root, whom no
    mode stops, so the refusal is the kernel's answer stood in for on the paths concerned."""
    await migrate(
        settings := settings_for(
            tmp_path,
            **_asterisk(
                tmp_path, ami={"secret": "x", "port": closed_port(), "action_timeout": "0.2s"}
            ),
        )
    )
    refused = {tmp_path / "Master.csv", tmp_path / "calltrack.db", tmp_path / "asterisk-recordings"}
    stat_of = Path.stat

    def stat(path: Path, **kwargs: bool) -> os.stat_result:
        if path in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return stat_of(path, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    results = {r.check: r for r in await diagnose(settings, "calltrack.yaml")}
    for check, path in (
        ("CDR", "Master.csv"),
        ("recordings", "asterisk-recordings"),
        ("database", "calltrack.db"),
    ):
        assert results[check].status is Status.FAIL, results[check]
        assert f"{path}: Permission denied" in results[check].message, results[check]
    assert results["disk"].status is Status.OK, "free space where it may look"


def test_a_folder_asterisk_may_not_enter_on_the_way_is_a_fail(passable: Path) -> None:
    """The README put the recordings in /var/lib/calltrack/recordings (2770, calltrack's group,
    Asterisk's user added to it) inside /var/lib/calltrack (0750): Asterisk may write in the
    folder but, without that group, not reach it, and doctor said OK."""
    settings = settings_for(passable, **_asterisk(passable))
    state = passable / "asterisk-recordings"
    os.chown(state, 4321, 4321)
    state.chmod(0o2770)
    assert recordings_check(settings, ASTERISK).status is Status.OK
    passable.chmod(0o750)  # the state folder, root's, no way through for others
    try:
        closed = recordings_check(settings, ASTERISK)
        assert closed.status is Status.FAIL, closed
        assert f"asterisk (Asterisk) may not enter {passable} (drwxr-x---)" in closed.message
        assert recordings_check(settings, ROOT).status is Status.OK
        state.chmod(0o777)  # anyone may write in it, yet nobody unknown gets there
        assert recordings_check(settings, UNKNOWN).status is Status.SKIP
    finally:
        passable.chmod(0o755)


def test_a_run_group_drops_the_users_other_groups() -> None:
    """With asterisk.conf's rungroup (or -G) Asterisk calls setgroups(0, NULL): the groups its
    user was added to with usermod are gone, and doctor counted them."""
    root_groups = frozenset(os.getgrouplist("root", 0))
    assert asterisk_writer("root/", here=False) == Writer("root", 0, root_groups)
    group = grp.getgrgid(0).gr_name
    assert asterisk_writer(f"root/{group}", here=False) == Writer("root", 0, frozenset({0}))
    assert isinstance(asterisk_writer("root/no-such-group", here=False), UnknownWriter)


def test_the_process_running_here_wins_over_what_asterisk_conf_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asterisk.conf names a runuser, but the process has the groups the kernel gave it (a -G
    on safe_asterisk's command line, systemd's User=): those decide what it may write."""
    from pbx.doctor import local_checks

    real = Writer("asterisk", 4321, frozenset({4321}))
    monkeypatch.setattr(local_checks, "running_asterisk", lambda: real)
    assert asterisk_writer("root/root", here=True) == real
    assert asterisk_writer("root/root", here=False) == Writer("root", 0, frozenset({0}))


def test_unique_ids_with_asterisk_confs_systemname_are_unique_ids(tmp_path: Path) -> None:
    """With `systemname` in asterisk.conf Asterisk writes `name-1764583200.1`: a healthy CDR
    failed as "not the 21 columns" with the fix to log unique ids it already logged."""
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    named = ROW_21.replace('"1796030864.0"', '"pbx1-1796030864.0"')
    assert named.count("pbx1-") == 2
    (tmp_path / "Master.csv").write_text(named)
    assert cdr_check(settings).status is Status.OK, cdr_check(settings)


def test_a_call_minutes_off_is_no_time_zone(tmp_path: Path) -> None:
    """Any gap of 7.5 minutes or more (the call's first rows cut off by the tail after a
    transfer) was rounded to a quarter hour and failed as local times; a zone is a whole number
    of quarter hours to the second."""
    settings = settings_for(tmp_path, **_asterisk(tmp_path))
    late = ROW_21.replace(
        '"2026-11-30 09:27:44","2026-11-30 09:27:44"', '"2026-11-30 09:38:13","2026-11-30 09:38:13"'
    )
    (tmp_path / "Master.csv").write_text(late)
    assert cdr_check(settings).status is Status.OK, cdr_check(settings)
    local = ROW_21.replace(
        '"2026-11-30 09:27:44","2026-11-30 09:27:44"', '"2026-11-30 12:27:44","2026-11-30 12:27:44"'
    )
    (tmp_path / "Master.csv").write_text(local)
    zone = cdr_check(settings)
    assert zone.status is Status.FAIL and "+3 h" in zone.message, zone


# -- doctor run as root: the daemon's user must read the CDR and the recordings ---------------

CALLTRACK = Writer("calltrack", 4400, frozenset({4400}))


def test_as_root_the_cdr_is_read_as_calltracks_user(passable: Path) -> None:
    """Root reads every file: doctor run as root said OK for a Master.csv of Asterisk's group
    (0640) that the daemon, not in that group, could not open, and no call was recovered."""
    settings = settings_for(passable, **_asterisk(passable))
    cdr = passable / "Master.csv"
    cdr.write_text(ROW_21)
    os.chown(cdr, 4321, 4321)
    cdr.chmod(0o640)
    assert cdr_check(settings).status is Status.OK  # root's own reads
    refused = cdr_check(settings, CALLTRACK)
    assert refused.status is Status.FAIL, refused
    assert f"calltrack (calltrack's user) may not read {cdr} (-rw-r-----" in refused.message
    group = grp.getgrgid(4321).gr_name if 4321 in {g.gr_gid for g in grp.getgrall()} else "4321"
    assert f"usermod -aG {group} calltrack" in refused.fix
    in_group = Writer("calltrack", 4400, frozenset({4400, 4321}))
    assert cdr_check(settings, in_group).status is Status.OK
    passable.chmod(0o700)  # the way there closed to it
    try:
        closed = cdr_check(settings, in_group)
        assert closed.status is Status.FAIL
        assert f"calltrack (calltrack's user) may not enter {passable}" in closed.message
    finally:
        passable.chmod(0o755)


def test_as_root_the_recordings_are_read_as_calltracks_user(passable: Path) -> None:
    settings = settings_for(passable, **_asterisk(passable))
    folder = passable / "asterisk-recordings"
    os.chown(folder, 4321, 4321)
    folder.chmod(0o2770)
    assert recordings_check(settings, ASTERISK).status is Status.OK
    refused = recordings_check(settings, ASTERISK, CALLTRACK)
    assert refused.status is Status.FAIL
    assert f"calltrack (calltrack's user) may not read {folder} (drwxrws---" in refused.message
    in_group = Writer("calltrack", 4400, frozenset({4400, 4321}))
    assert recordings_check(settings, ASTERISK, in_group).status is Status.OK


def _serving(proc: Path, pid: int, uid: int, groups: str, argv: list[str]) -> None:
    fake_process(proc, pid, "python3", uid, groups)
    (proc / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")


def test_as_root_whose_reads_is_the_calltrack_serve_running_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbx.doctor import local_checks

    monkeypatch.setattr(local_checks.os, "geteuid", lambda: 0)
    monkeypatch.setattr(local_checks, "DAEMON_USER", "no-such-user-here")
    proc = tmp_path / "proc"
    fake_process(proc, 1, "systemd", 0, "")
    _serving(
        proc, 90, 0, "", ["/opt/calltrack/bin/python", "/opt/calltrack/bin/calltrack", "doctor"]
    )
    unknown = calltrack_reader(proc)
    assert isinstance(unknown, UnknownWriter), unknown
    assert "no-such-user-here" in unknown.why and "sudo -u" in unknown.needs
    line = reads_unchecked(unknown)
    assert line.status is Status.SKIP and line.check == "calltrack's reads"
    argv = ["/opt/calltrack/bin/python3", "/opt/calltrack/bin/calltrack", "serve", "-c", "x.yaml"]
    _serving(proc, 100, 4400, "4321", argv)
    assert calltrack_reader(proc) == Writer("uid 4400", 4400, frozenset({4400, 4321}))
    _serving(proc, 101, 4400, "4321", ["python3", "-m", "pbx.cli", "serve", "-c", "x.yaml"])
    assert calltrack_reader(proc) == Writer("uid 4400", 4400, frozenset({4400, 4321}))
    _serving(proc, 102, 0, "", ["python3", "-m", "pbx.cli", "serve", "-c", "other.yaml"])
    several = calltrack_reader(proc)
    assert isinstance(several, UnknownWriter) and "different users" in several.why
    monkeypatch.setattr(local_checks.os, "geteuid", lambda: 1000)
    assert calltrack_reader(proc) is None  # not root: doctor's own reads are the daemon's


def test_as_root_with_no_daemon_running_the_readmes_user_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbx.doctor import local_checks

    monkeypatch.setattr(local_checks.os, "geteuid", lambda: 0)
    monkeypatch.setattr(local_checks, "DAEMON_USER", "root")  # a user every host has
    (tmp_path / "proc").mkdir()
    reader = calltrack_reader(tmp_path / "proc")
    assert isinstance(reader, Writer) and reader.name == "root" and reader.uid == 0


async def test_diagnose_says_when_it_cannot_tell_whose_reads_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbx.doctor import run

    await migrate(
        settings := settings_for(
            tmp_path,
            **_asterisk(
                tmp_path, ami={"secret": "x", "port": closed_port(), "action_timeout": "0.2s"}
            ),
        )
    )
    unknown = UnknownWriter("doctor runs as root", "run doctor as the daemon's user")
    monkeypatch.setattr(run, "calltrack_reader", lambda: unknown)
    results = {r.check: r for r in await diagnose(settings, "calltrack.yaml")}
    assert results["calltrack's reads"].status is Status.SKIP
    monkeypatch.setattr(run, "calltrack_reader", lambda: None)
    results = {r.check: r for r in await diagnose(settings, "calltrack.yaml")}
    assert "calltrack's reads" not in results


def _grant_read_acl(path: Path, uid: int) -> None:
    """`setfacl -m u:UID:r PATH`, written as the kernel's system.posix_acl_access (no acl
    package needed): owner rw, the user r, group r, mask r, other nothing."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 6, undefined), (0x02, 4, uid), (0x04, 4, undefined)]
    entries += [(0x10, 4, undefined), (0x20, 0, undefined)]
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, "system.posix_acl_access", acl)


def test_as_root_the_kernel_decides_acls_and_symlinks_count(passable: Path) -> None:
    """The mode bits alone FAILed a Master.csv an ACL lets calltrack read (a common way to
    grant log reads), and passed a recordings folder reached through a symlink into a folder
    closed to it: `test -r` run as the daemon's user answers as its own open() would."""
    settings = settings_for(passable, **_asterisk(passable))
    cdr = passable / "Master.csv"
    cdr.write_text(ROW_21)
    os.chown(cdr, 0, 0)
    cdr.chmod(0o640)
    assert cdr_check(settings, CALLTRACK).status is Status.FAIL
    _grant_read_acl(cdr, CALLTRACK.uid)
    assert cdr_check(settings, CALLTRACK).status is Status.OK, cdr_check(settings, CALLTRACK)
    assert cdr_check(settings, Writer("other", 4401, frozenset({4401}))).status is Status.FAIL

    hidden = passable / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "recordings").mkdir(mode=0o777)
    link = passable / "linked-recordings"
    link.symlink_to(hidden / "recordings")
    linked = settings_for(passable, **_asterisk(passable, recordings_dir=str(link)))
    refused = recordings_check(linked, ROOT, CALLTRACK)
    assert refused.status is Status.FAIL, refused
    assert f"calltrack (calltrack's user) may not enter {hidden} (drwx------)" in refused.message
    assert "`usermod -aG root calltrack`" in refused.fix  # the closed folder's group, root's

    # the other way round: a link inside a folder closed to calltrack, to an open one
    (passable / "open-recordings").mkdir(mode=0o777)
    (hidden / "link").symlink_to(passable / "open-recordings")
    through = settings_for(passable, **_asterisk(passable, recordings_dir=str(hidden / "link")))
    refused = recordings_check(through, ROOT, CALLTRACK)
    assert refused.status is Status.FAIL, refused
    assert f"may not enter {hidden} (drwx------)" in refused.message


def test_the_fix_for_a_reader_in_the_group_already_is_the_groups_bits(passable: Path) -> None:
    settings = settings_for(passable, **_asterisk(passable))
    cdr = passable / "Master.csv"
    cdr.write_text(ROW_21)
    os.chown(cdr, 4321, 4321)
    cdr.chmod(0o600)
    in_group = Writer("calltrack", 4400, frozenset({4400, 4321}))
    refused = cdr_check(settings, in_group)
    assert refused.status is Status.FAIL
    assert refused.fix.startswith(f"`chmod g+r {cdr}` (calltrack is in its group")
    nameless = cdr_check(settings, Writer("uid 4400", 4400, frozenset({4400})))
    assert "usermod" not in nameless.fix and "add uid 4400 to group" in nameless.fix


def test_sudo_and_the_shell_that_started_the_daemon_are_not_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbx.doctor import local_checks

    monkeypatch.setattr(local_checks.os, "geteuid", lambda: 0)
    argv = ["sudo", "/opt/calltrack/bin/calltrack", "serve", "-c", "x.yaml"]
    proc = tmp_path / "proc"
    fake_process(proc, 100, "sudo", 0, "")
    (proc / "100" / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    _serving(proc, 101, 4400, "4321", argv[1:])
    (proc / "101" / "comm").write_text("calltrack\n")  # a console script's process is named so
    assert calltrack_reader(proc) == Writer("uid 4400", 4400, frozenset({4400, 4321}))
