"""The checks on this host's files: the CDR calltrack reconciles from, the recordings folder,
the database's schema, free disk."""

from __future__ import annotations

import csv
import grp
import io
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from sqlalchemy.engine import make_url

from ami_bridge.reconcile import CDR_TIME_FORMAT
from dialplan.generator import CDR_START_PREFIX
from pbx.doctor import Result, Status, fail, ok, skip
from pbx.settings import Settings
from pbx.storage.db import is_sqlite, open_engine, schema_revisions

CDR_FIX = (
    "in cdr.conf [csv]: loguniqueid = yes, newcdrcolumns = yes, loguserfield = yes"
    " (asterisk.conf.d/cdr.conf), then `module reload cdr_csv`"
)
#: seconds.sequence, after `systemname-` when asterisk.conf sets one (main/channel_internal_api.c)
_UNIQUEID = re.compile(r"^(?:[^,]+-)?\d+\.\d+$")
_TAIL = 64 * 1024  # enough for the last rows of a Master.csv of any size
#: the daemon's Unix user in the README's install (useradd) and contrib/calltrack.service
DAEMON_USER = "calltrack"


def _last_rows(path: Path) -> list[list[str]]:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - _TAIL))
        text = f.read().decode("utf-8", errors="replace")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def cdr_check(settings: Settings, reader: Writer | None = None) -> Result:
    """Master.csv is there, readable, and its rows carry uniqueid, userfield and linkedid
    (cdr_csv writes no header: the columns are told by their count and content). `reader`:
    the daemon's identity when doctor runs as root (calltrack_reader), who must read it too."""
    assert settings.asterisk is not None
    path = settings.asterisk.cdr_csv
    if path is None:
        return fail(
            "CDR",
            "asterisk.cdr_csv is not set: calls that end while the AMI link is down are lost",
            "set asterisk.cdr_csv to Asterisk's Master.csv (usually"
            " /var/log/asterisk/cdr-csv/Master.csv)",
        )
    if not path.is_file():
        return fail(
            "CDR",
            f"{path} does not exist",
            f"enable cdr_csv (cdr.conf [general] enable = yes, `module load cdr_csv.so`) or point"
            f" asterisk.cdr_csv at its Master.csv; {CDR_FIX}",
        )
    try:
        rows = _last_rows(path)
    except OSError as exc:
        return fail("CDR", f"cannot read {path}: {exc.strerror}", "let calltrack's user read it")
    if reader is not None and (refused := _refused_to("CDR", reader, path)) is not None:
        return refused
    row = rows[-1] if rows else None
    if row is None:
        return Result(
            "CDR", Status.WARN, f"{path} is empty: its columns are checked once a call is logged"
        )
    if len(row) != 21 or not (_UNIQUEID.match(row[16]) and _UNIQUEID.match(row[19])):
        return fail(
            "CDR",
            f"{path}: the last row has {len(row)} columns, not the 21 with uniqueid, userfield"
            " and linkedid",
            CDR_FIX,
        )
    call = [r for r in rows if len(r) == len(row) and r[19] == row[19]]  # the last call's rows
    if (hours := _hours_from_utc(call)) is not None:
        return fail(
            "CDR",
            f"{path}: the last row's start is {hours:+g} h from the call's own start: its times"
            " are local, and calltrack reads them as UTC (calls recovered from it would be"
            " hours off, or skipped as too old)",
            "in cdr.conf [csv]: usegmtime = yes, then `module reload cdr_csv`",
        )
    return ok("CDR", f"{path} has the uniqueid, userfield and linkedid columns")


def _hours_from_utc(call: list[list[str]]) -> float | None:
    """How far (in hours) the call's first start, read as UTC, is from the exact start the
    dialplan wrote into its rows' userfield; None when they agree or no row has it.

    The first start, not the last row's: a row can rightly start minutes after the call did
    (the caller's channel goes on after the callee hangs up, and Asterisk starts a new CDR
    for it, with the call's userfield); a time zone shifts every row of the call alike."""
    offsets = []
    for row in call:
        try:
            start = datetime.strptime(row[9], CDR_TIME_FORMAT).replace(tzinfo=UTC).timestamp()
            offsets.append(start - float(row[17].removeprefix(CDR_START_PREFIX)))
        except ValueError:
            continue
    if not offsets:
        return None
    # a time zone is a whole number of quarter hours, to the second: a call's first rows cut
    # off by the tail, or a start read after a split, are minutes off, not a zone
    quarters = round(min(offsets) / 900)
    if quarters == 0 or abs(min(offsets) - quarters * 900) > 2:
        return None
    return quarters / 4


def _allowed(mode: int, owner: int, group: int, uid: int, gids: frozenset[int], bits: int) -> bool:
    """Whether Unix permissions grant `uid` (in `gids`) every one of `bits` (as "other"'s: 0o2
    write, 0o1 search) on a folder, by the one class of owner, group or other it falls in."""
    if uid == 0:
        return True
    shift = 6 if uid == owner else 3 if group in gids else 0
    return (mode >> shift) & bits == bits


def may_write(mode: int, owner: int, group: int, uid: int, gids: frozenset[int]) -> bool:
    """Whether Unix permissions let `uid` (in `gids`) create files in a folder."""
    return _allowed(mode, owner, group, uid, gids, 0o3)


def may_enter(mode: int, owner: int, group: int, uid: int, gids: frozenset[int]) -> bool:
    """Whether Unix permissions let `uid` (in `gids`) pass through a folder to what is in it."""
    return _allowed(mode, owner, group, uid, gids, 0o1)


def may_read(path: Path, uid: int, gids: frozenset[int]) -> bool:
    """Whether Unix permissions let `uid` (in `gids`) read the file `path`, or list the folder
    `path` and open what is in it (POSIX ACLs are not read)."""
    info = path.stat()
    bits = 0o5 if stat.S_ISDIR(info.st_mode) else 0o4
    return _allowed(info.st_mode, info.st_uid, info.st_gid, uid, gids, bits)


def closed_on_the_way(folder: Path, uid: int, gids: frozenset[int]) -> Path | None:
    """The first folder above `folder` that `uid` may not pass through, if any: a recordings
    folder Asterisk may write in is no use inside one it may not enter (/var/lib/calltrack,
    0750, while Asterisk is not in calltrack's group)."""
    for above in reversed(folder.parents):
        info = above.stat()
        if not may_enter(info.st_mode, info.st_uid, info.st_gid, uid, gids):
            return above
    return None


@dataclass(frozen=True)
class Writer:
    """The Unix identity Asterisk creates its recordings with."""

    name: str
    uid: int
    gids: frozenset[int]


@dataclass(frozen=True)
class UnknownWriter:
    """Why it is not known who Asterisk writes as, and what would tell."""

    why: str
    needs: str


def writer_named(name: str, group: str = "") -> Writer | None:
    """The user `name` of this host, with the groups Asterisk runs with; None if this host has
    no such user (or group). With a run group (asterisk.conf's `rungroup`, `-G`) Asterisk
    drops every other group (main/asterisk.c: setgid, then setgroups(0, NULL)): a user added
    to calltrack's group with usermod still cannot write in a folder of that group."""
    try:
        entry = pwd.getpwnam(name)
        if group:
            return Writer(name, entry.pw_uid, frozenset({grp.getgrnam(group).gr_gid}))
    except KeyError:
        return None
    return Writer(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def running_asterisk(proc: Path = Path("/proc")) -> Writer | None:
    """The identity of the Asterisk process running on this host, from /proc: its effective
    user and its groups as the kernel has them (Asterisk started by systemd's User=, or with
    -U, says "/" when asked, since its asterisk.conf names no runuser). None when no Asterisk
    runs here, or several run as different users."""
    found = _identities(proc, _asterisk_identity)
    return _named(*next(iter(found))) if len(found) == 1 else None


def _identities(
    proc: Path, identity: Callable[[Path], tuple[int, frozenset[int]] | None]
) -> set[tuple[int, frozenset[int]]]:
    """The (user, groups) of every process in /proc that `identity` recognises."""
    return {
        found
        for entry in proc.iterdir()
        if entry.name.isdigit() and (found := identity(entry)) is not None
    }


def _named(uid: int, gids: frozenset[int]) -> Writer:
    """The identity with its user's name, or "uid N" for a user this host does not name."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return Writer(name, uid, gids)


def asterisk_writer(said: str | None, here: bool | None) -> Writer | UnknownWriter:
    """Who Asterisk writes files as. `said`: the user and group `core show settings` names
    ("asterisk/asterisk"; "/" or "" when it names none: no runuser in asterisk.conf; None when
    it could not be asked); `here`: Asterisk runs on this host. The process running here is
    the truth: it has the groups the kernel gave it, where asterisk.conf does not say a `-G`
    on the command line (FreePBX's safe_asterisk) or what systemd's User= started."""
    if here and (running := running_asterisk()) is not None:
        return running
    user, _, group = (said or "").partition("/")
    said = user.strip() if said is not None else None
    if said:
        named = writer_named(said, group.strip())
        if named is not None:
            return named
    if said:
        return UnknownWriter(
            f"Asterisk runs as {said}, a user this host does not have (another host, a container)",
            f"that {said} may write in it: check on Asterisk's host",
        )
    where = (
        "no Asterisk process is seen on this host"
        if here
        else "it runs on another host"
        if here is False
        else "its host is not known"
    )
    if said is None:
        return UnknownWriter(
            f"Asterisk could not be asked who it runs as, and {where}",
            "`write = command` for the AMI user",
        )
    return UnknownWriter(
        f"Asterisk does not say who it runs as (asterisk.conf names no runuser), and {where}",
        "`runuser` and `rungroup` in asterisk.conf [options], or a check on Asterisk's host",
    )


def _asterisk_identity(process: Path) -> tuple[int, frozenset[int]] | None:
    """The effective user and the groups of /proc's `process`, if it is an Asterisk."""
    try:
        if (process / "comm").read_text().strip() != "asterisk":
            return None
        arguments = (process / "cmdline").read_bytes().split(b"\0")
        if any(a.startswith((b"-r", b"-R")) for a in arguments):  # a console (asterisk -rx)
            return None
    except OSError:  # gone meanwhile
        return None
    return _identity(process)


def _calltrack_identity(process: Path) -> tuple[int, frozenset[int]] | None:
    """The effective user and the groups of /proc's `process`, if it is a `calltrack serve`:
    its console script run by Python (`python /opt/calltrack/bin/calltrack serve -c ...`) or
    the module (`python -m pbx.cli serve -c ...`)."""
    try:
        command = (process / "comm").read_text().strip()
        arguments = (process / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # the daemon's own process: not a `sudo calltrack serve` or a shell that started it
    if command != "calltrack" and not command.startswith("python"):
        return None
    if not any(
        program in (b"pbx.cli", b"calltrack") or program.endswith(b"/calltrack")
        for program, then in pairwise(arguments[:4])
        if then == b"serve"
    ):
        return None
    return _identity(process)


def _identity(process: Path) -> tuple[int, frozenset[int]] | None:
    """The effective user and the groups (the primary's and the supplementary) of a process."""
    try:
        status = dict(line.split(":", 1) for line in (process / "status").read_text().splitlines())
        uid = int(status["Uid"].split()[1])
        groups = {int(status["Gid"].split()[1]), *map(int, status.get("Groups", "").split())}
    except (OSError, ValueError, KeyError, IndexError):  # gone meanwhile, not ours to read
        return None
    return uid, frozenset(groups)


def recordings_check(
    settings: Settings, writer: Writer | UnknownWriter, reader: Writer | None = None
) -> Result:
    """Asterisk writes the recordings (MixMonitor), calltrack reads them. `writer`: who
    Asterisk writes as, or why that is not known (then only a folder anyone may write in is
    known to work: it is skipped with what would tell, not passed on a guess). `reader`: the
    daemon's identity when doctor runs as root (calltrack_reader)."""
    folder = settings.asterisk_recordings_dir
    owner = writer.name if isinstance(writer, Writer) else "asterisk"
    fix = f"`install -d -o {owner} -m 2775 {folder}` and let calltrack's user read it (same group)"
    if not folder.is_dir():
        return fail("recordings", f"{folder} is not a folder on this host", fix)
    if not os.access(folder, os.R_OK | os.X_OK):
        return fail("recordings", f"calltrack cannot read {folder}", fix)
    if reader is not None and (refused := _refused_to("recordings", reader, folder)) is not None:
        return refused
    info = folder.stat()
    mode = stat.filemode(info.st_mode)
    if isinstance(writer, Writer):
        if not may_write(info.st_mode, info.st_uid, info.st_gid, writer.uid, writer.gids):
            return fail("recordings", f"{folder} ({mode}) is not writable by {writer.name}", fix)
        closed = closed_on_the_way(folder, writer.uid, writer.gids)
        if closed is not None:
            return fail(
                "recordings",
                f"{writer.name} (Asterisk) may not enter {closed}"
                f" ({stat.filemode(closed.stat().st_mode)}), on the way to {folder}",
                f"a recordings folder {writer.name} can reach: README, On your PBX",
            )
        return ok("recordings", f"{folder}: {writer.name} (Asterisk) writes, calltrack reads")
    if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return fail("recordings", f"{folder} ({mode}) is writable by nobody", fix)
    if may_write(info.st_mode, info.st_uid, info.st_gid, -1, frozenset()) and not closed_on_the_way(
        folder, -1, frozenset()
    ):
        return ok("recordings", f"{folder}: anyone may write in it ({mode}), calltrack reads")
    return skip(
        "recordings",
        f"{folder} ({mode}) is writable by its owner or group, and {writer.why}",
        writer.needs,
    )


def calltrack_reader(proc: Path = Path("/proc")) -> Writer | UnknownWriter | None:
    """Whose reads the CDR and recordings lines must check. None when doctor does not run as
    root: its own reads are then the test (the README runs it as the daemon's user). As root,
    every read succeeds, so: the `calltrack serve` running on this host (its user and groups
    from /proc, as systemd's User= gave them), else the user `calltrack` of the README's
    install, else what is not known and what would tell."""
    if os.geteuid() != 0:
        return None
    found = _identities(proc, _calltrack_identity)
    if len(found) == 1:
        return _named(*next(iter(found)))
    named = writer_named(DAEMON_USER) if not found else None
    if named is not None:
        return named
    return UnknownWriter(
        "doctor runs as root, who reads everything, and"
        + (
            " several `calltrack serve` run here as different users"
            if found
            else f" neither a `calltrack serve` runs here nor a user {DAEMON_USER} exists"
        ),
        "run doctor as the daemon's user (`sudo -u USER calltrack doctor -c ...`)",
    )


def reads_unchecked(reader: UnknownWriter) -> Result:
    """The line said when doctor runs as root and cannot tell whose reads to check."""
    return skip("calltrack's reads", f"not checked: {reader.why}", reader.needs)


def _refused_to(check: str, reader: Writer, path: Path) -> Result | None:
    """The FAIL of the `check` line when the daemon's user may not read `path` (or pass a
    folder on the way to it); None when it may.

    Asked of the kernel itself where it can be: `test -r` run as that user (its groups too)
    counts ACLs, symlinks and every folder on the way as the daemon's own open() would (but
    outside the unit's sandbox: a path under /home or /tmp, which ProtectHome and PrivateTmp
    hide from the daemon, passes here). The mode bits only explain a refusal, or decide when
    the probe cannot run."""
    # the path as configured: the kernel walks the link's folders and the target's
    readable = _kernel_says_readable(reader, path)
    if readable:
        return None
    resolved = path.resolve()
    closed = closed_on_the_way(path, reader.uid, reader.gids) or closed_on_the_way(
        resolved, reader.uid, reader.gids
    )
    if readable is None and closed is None and may_read(resolved, reader.uid, reader.gids):
        return None
    who = f"{reader.name} (calltrack's user)"
    if closed is not None:
        return fail(
            check,
            f"{who} may not enter {closed} ({stat.filemode(closed.stat().st_mode)}), on the way"
            f" to {path}",
            _reach_fix(reader, closed, "g+x"),
        )
    info = resolved.stat()
    if not may_read(resolved, reader.uid, reader.gids):
        return fail(
            check,
            f"{who} may not read {path} ({stat.filemode(info.st_mode)}, group"
            f" {_group_name(info.st_gid)})",
            _reach_fix(reader, resolved, "g+rx" if resolved.is_dir() else "g+r"),
        )
    return fail(
        check,
        f"{who} may not read {path}, though its mode ({stat.filemode(info.st_mode)}) would let"
        " it: an ACL or a security module (AppArmor, SELinux) refuses",
        f"`getfacl {path}`; let {reader.name} read it",
    )


def _reach_fix(reader: Writer, blocking: Path, bits: str) -> str:
    """What lets `reader` through `blocking`: its group, or, in it already, the group's bits."""
    info = blocking.stat()
    group = _group_name(info.st_gid)
    if info.st_gid in reader.gids:
        return f"`chmod {bits} {blocking}` ({reader.name} is in its group {group})"
    join = (
        f"`usermod -aG {group} {reader.name}`"
        if not reader.name.startswith("uid ")
        else f"add {reader.name} to group {group}"
    )
    return (
        f"{join}, then `systemctl restart calltrack` (a group counts from the next start), or"
        f" another group for {blocking}"
    )


def _kernel_says_readable(reader: Writer, path: Path) -> bool | None:
    """`test -r` (and -x for a folder) run as `reader` with its groups: the kernel's answer,
    ACLs included; None when it cannot be asked (no /usr/bin/test, not root)."""
    test = shutil.which("test") or "/usr/bin/test"
    flags = ["-r", str(path), "-a", "-x", str(path)] if path.is_dir() else ["-r", str(path)]
    gids = sorted(reader.gids)
    try:
        done = subprocess.run(
            [test, *flags],
            user=reader.uid,
            group=gids[0] if gids else None,
            extra_groups=gids,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (its query, e.g. `?timeout=20`, is not part of it)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    return None if not database or database == ":memory:" else Path(database)


async def database_check(settings: Settings, config: str) -> Result:
    fix = f"`calltrack db upgrade -c {config}`"
    path = sqlite_path(settings.database)
    try:
        exists = path is None or path.is_file()
    except OSError as exc:  # a folder on the way it may not enter
        return fail(
            "database",
            f"cannot look at {path}: {exc.strerror}",
            "let the user running calltrack reach its folder",
        )
    if not exists:
        return fail("database", f"{path} does not exist", fix)
    engine = open_engine(settings.database, read_only=True)
    try:
        current, head = await schema_revisions(engine)
    except Exception as exc:  # unreachable server, not a database, refused login
        return fail("database", f"cannot read the schema: {exc}".splitlines()[0], fix)
    finally:
        await engine.dispose()
    if current != head:
        state = "has no calltrack schema" if current is None else f"is at revision {current}"
        return fail("database", f"the database {state}, this calltrack needs {head}", fix)
    return ok("database", f"at the current migration ({head})")


def disk_check(settings: Settings, min_free: int) -> list[Result]:
    """Free space where calltrack writes (SQLite database, recordings), one line per
    filesystem; under `min_free` bytes is a warning."""
    folders = [settings.recordings.dir, settings.asterisk_recordings_dir]
    if (db := sqlite_path(settings.database)) is not None:
        folders.insert(0, db.parent)
    seen: set[int] = set()
    results = []
    for folder in folders:
        try:
            device = folder.stat().st_dev
        except OSError:  # not there, or not to be entered: the recordings line says which
            continue
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(folder).free
        text = f"{free / 2**30:.1f} GiB free for {folder}"
        if free < min_free:
            results.append(
                Result(
                    "disk",
                    Status.WARN,
                    f"only {text}",
                    f"free space (under {min_free / 2**30:.1f} GiB); old recordings can go"
                    " (retention settings)",
                )
            )
        else:
            results.append(ok("disk", text))
    return results
