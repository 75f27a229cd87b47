"""`calltrack backup -c CONFIG FILE`: a consistent copy of the SQLite database, while it serves.

Copying calltrack.db with `cp` is not a backup: the daemon keeps recent transactions in the WAL
file beside it (it checkpoints on its own schedule) and writes meanwhile, so a copy can miss them
or catch a page half-written. SQLite's online backup API copies the database as one read
transaction sees it: a snapshot of committed data, taken while writers go on (WAL readers never
block them). The copy is written beside FILE and renamed into place, so FILE is either the old
file or a whole backup, never part of one.

PostgreSQL has its own tool for this: the command says which `pg_dump` to run instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pbx.settings import ConfigError, load_settings

# a reader waits this long for a moment when the WAL can be read (e.g. during its recovery)
BUSY_TIMEOUT = 30.0


class BackupError(Exception):
    """Why no backup was made; the message is for the admin."""


# the query parameters libpq (pg_dump's driver) knows that a calltrack URL may carry
LIBPQ_PARAMETERS = frozenset(
    {
        "host",  # a Unix socket's folder: ?host=/run/postgresql
        "port",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "application_name",
        "connect_timeout",
        "options",
        "target_session_attrs",
    }
)


def pg_dump_advice(database: str, target: str) -> str:
    """The pg_dump (and pg_restore) commands for a PostgreSQL `database` URL, password left out,
    quoted for a shell (a backup file's name may hold a space).

    The URL is asyncpg's; pg_dump's is libpq's: asyncpg's `ssl` is libpq's `sslmode` (the same
    mode names), and a parameter libpq does not know would make pg_dump refuse the whole URL,
    so it is left out and named."""
    url = make_url(database)
    query: dict[str, str | tuple[str, ...]] = {}
    dropped: list[str] = []
    for key, value in url.query.items():
        if key == "ssl":
            query["sslmode"] = value
        elif key in LIBPQ_PARAMETERS:
            query[key] = value
        else:
            dropped.append(key)
    plain = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, query
    ).render_as_string(hide_password=False)
    uri, file = shlex.quote(plain), shlex.quote(target)
    db, owner = shlex.quote(url.database or "calltrack"), shlex.quote(url.username or "calltrack")
    left_out = (
        f"\n(left out of the URL, pg_dump does not know them: {', '.join(sorted(dropped))})"
        if dropped
        else ""
    )
    return (
        "calltrack backup copies SQLite databases only; this one is PostgreSQL: back it up with\n"
        f"  pg_dump --format=custom --file={file} {uri}\n"
        "and restore it with every daemon stopped, into the database emptied (a dump of an\n"
        "older calltrack lacks tables a later one added, which --clean would leave in place),\n"
        "as PostgreSQL's superuser:\n"
        f"  dropdb {db} && createdb --owner={owner} {db}\n"
        f"then:\n  pg_restore --exit-on-error --single-transaction --dbname={uri} {file}\n"
        "and run `calltrack db upgrade`\n"
        f"(the password: PGPASSWORD or ~/.pgpass){left_out}"
    )


def backup_sqlite(source: Path, target: Path, *, force: bool) -> str | None:
    """Copy the database at `source` to `target`; the backup's migration revision."""
    try:
        _check(source, target, force=force)
    except OSError as exc:  # a folder on the way it may not enter
        raise BackupError(f"{exc.filename or target}: {exc.strerror or exc}") from None
    try:
        return _copy(source, target)
    except OSError as exc:  # a folder it may not write in, a full disk: FILE was not written
        raise BackupError(f"{target}: {exc.strerror or exc}") from None


def _check(source: Path, target: Path, *, force: bool) -> None:
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    if target.is_dir():
        raise BackupError(f"{target} is a folder: name the backup file")
    if _is_part_of(target, source):
        # renamed over the live file, the copy would be a file the daemon no longer writes to,
        # beside the old file's WAL: the next open mixes the two into a corrupt database
        raise BackupError(f"{target} is the database itself: name another file for the backup")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: pass --force to overwrite it")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such folder")


def _is_part_of(target: Path, source: Path) -> bool:
    """`target` is the database file or one SQLite keeps beside it (WAL, shared memory,
    rollback journal), by any name or link that leads there."""
    parts = [source, *(source.with_name(source.name + end) for end in ("-wal", "-shm", "-journal"))]
    resolved = target.resolve()
    for part in parts:
        if resolved == part.resolve():
            return True
        with contextlib.suppress(OSError):  # a part that does not exist (no WAL yet)
            if target.exists() and target.samefile(part):
                return True
    return False


def _copy(source: Path, target: Path) -> str | None:
    # a name of its own (two backups to one FILE at once, a cron run and a manual one, must not
    # rename each other's unfinished copy into place), created 0600: it holds every call and visit
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        reader = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        with contextlib.closing(reader), contextlib.closing(sqlite3.connect(partial)) as copy:
            reader.backup(copy)  # in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one file, no WAL beside it
            revision = _revision(copy)
        partial.replace(target)
    except sqlite3.Error as exc:
        # the database is opened read-only: a full disk is the backup's, and the live file is
        # not to be blamed for what failed on the other side
        if exc.sqlite_errorname == "SQLITE_FULL":
            raise BackupError(
                f"{target.parent}: no space left for the backup; nothing written, the database"
                f" {source} is untouched"
            ) from None
        raise BackupError(f"the backup of {source} to {target} failed: {exc}") from None
    finally:
        for left in (partial, *(Path(f"{partial}{end}") for end in ("-journal", "-wal", "-shm"))):
            left.unlink(missing_ok=True)
    return revision


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no calltrack schema (yet)
        return None
    return None if row is None else str(row[0])


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        database = load_settings(args.config).database
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        url = make_url(database)
    except ArgumentError:
        print(f"calltrack: {args.config}: database is not a database URL", file=sys.stderr)
        return 2
    if url.get_backend_name() == "postgresql":
        print(pg_dump_advice(database, args.file), file=sys.stderr)
        return 2
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        print(f"calltrack: {args.config}: the database is not a SQLite file", file=sys.stderr)
        return 2
    try:
        revision = backup_sqlite(
            Path(url.database or "").resolve(), Path(args.file), force=args.force
        )
    except BackupError as exc:
        print(f"calltrack: {exc}", file=sys.stderr)
        return 2
    print(f"backup written to {args.file} (database revision {revision or 'none'})")
    return 0


def add_commands(commands: Any) -> None:
    """The `backup` command, on calltrack's subcommand parser."""
    backup = commands.add_parser("backup", help="copy the SQLite database, also while serving")
    backup.add_argument("-c", "--config", required=True)
    backup.add_argument("file", help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(run=cmd_backup)
