"""The checks on this host's files: the CDR calltrack reconciles from, the recordings folder,
the database's schema, free disk."""

from __future__ import annotations

import csv
import io
import os
import pwd
import re
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

from ami_bridge.reconcile import CDR_TIME_FORMAT
from dialplan.generator import CDR_START_PREFIX
from pbx.doctor import Result, Status, fail, ok
from pbx.settings import Settings
from pbx.storage.db import is_sqlite, open_engine, schema_revisions

CDR_FIX = (
    "in cdr.conf [csv]: loguniqueid = yes, newcdrcolumns = yes, loguserfield = yes"
    " (asterisk.conf.d/cdr.conf), then `module reload cdr_csv`"
)
_UNIQUEID = re.compile(r"^\d+\.\d+$")
_TAIL = 64 * 1024  # enough for the last rows of a Master.csv of any size


def _last_row(path: Path) -> list[str] | None:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - _TAIL))
        text = f.read().decode("utf-8", errors="replace")
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    return rows[-1] if rows else None


def cdr_check(settings: Settings) -> Result:
    """Master.csv is there, readable, and its rows carry uniqueid, userfield and linkedid
    (cdr_csv writes no header: the columns are told by their count and content)."""
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
        row = _last_row(path)
    except OSError as exc:
        return fail("CDR", f"cannot read {path}: {exc.strerror}", "let calltrack's user read it")
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
    if (hours := _hours_from_utc(row)) is not None:
        return fail(
            "CDR",
            f"{path}: the last row's start is {hours:+g} h from the call's own start: its times"
            " are local, and calltrack reads them as UTC (calls recovered from it would be"
            " hours off, or skipped as too old)",
            "in cdr.conf [csv]: usegmtime = yes, then `module reload cdr_csv`",
        )
    return ok("CDR", f"{path} has the uniqueid, userfield and linkedid columns")


def _hours_from_utc(row: list[str]) -> float | None:
    """How far (in hours) the row's start, read as UTC, is from the exact start the dialplan
    wrote into its userfield; None when they agree or the row has no exact start."""
    try:
        start = datetime.strptime(row[9], CDR_TIME_FORMAT).replace(tzinfo=UTC).timestamp()
        exact = float(row[17].removeprefix(CDR_START_PREFIX))
    except ValueError:
        return None
    off = start - exact
    return round(off / 900) / 4 if abs(off) > 120 else None  # time zones: quarter hours


def may_write(mode: int, owner: int, group: int, uid: int, gids: set[int]) -> bool:
    """Whether Unix permissions let `uid` (in `gids`) create files in a folder."""
    if uid == 0:
        return True
    if uid == owner:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if group in gids:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def _user_ids(name: str) -> tuple[int, set[int]] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, set(os.getgrouplist(name, entry.pw_gid))


def recordings_check(settings: Settings, asterisk_user: str | None) -> Result:
    """Asterisk writes the recordings (MixMonitor), calltrack reads them. `asterisk_user` is
    the Unix user Asterisk says it runs as, when the AMI user may ask."""
    folder = settings.asterisk_recordings_dir
    fix = f"`install -d -o {asterisk_user or 'asterisk'} -m 2775 {folder}` and let calltrack's"
    fix += " user read it (same group)"
    if not folder.is_dir():
        return fail("recordings", f"{folder} is not a folder on this host", fix)
    if not os.access(folder, os.R_OK | os.X_OK):
        return fail("recordings", f"calltrack cannot read {folder}", fix)
    info = folder.stat()
    ids = _user_ids(asterisk_user) if asterisk_user else None
    if ids is not None:
        uid, gids = ids
        if not may_write(info.st_mode, info.st_uid, info.st_gid, uid, gids):
            return fail(
                "recordings",
                f"{folder} (mode {stat.filemode(info.st_mode)}) is not writable by {asterisk_user}",
                fix,
            )
        return ok("recordings", f"{folder}: {asterisk_user} writes, calltrack reads")
    if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return fail(
            "recordings",
            f"{folder} (mode {stat.filemode(info.st_mode)}) is writable by nobody",
            fix,
        )
    who = (
        "Asterisk's user unknown: it runs as root or the AMI user lacks `write = command`"
        if asterisk_user is None
        else f"Asterisk runs as {asterisk_user}, not a user on this host"
    )
    return ok("recordings", f"{folder}: calltrack reads, it has write permission ({who})")


def sqlite_path(url: str) -> Path | None:
    if not is_sqlite(url) or ":memory:" in url:
        return None
    return Path(url.split(":///", 1)[1])


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
