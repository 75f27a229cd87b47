"""Which database failures pass by themselves: the driver's own errors too, as the short
transactions meet them on the driver's connection (SQLite's sqlite3, PostgreSQL's asyncpg)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from pbx.storage.errors import is_transient
from tests.helpers import db_error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.exceptions.DiskFullError("could not extend file"), True),
        (asyncpg.exceptions.SerializationError("could not serialize access"), True),
        (
            asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
            True,
        ),
        (asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key value"), False),
        (asyncpg.exceptions.StringDataRightTruncationError("value too long"), False),
        (asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"), True),
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            False,
        ),
        (sqlite3.OperationalError("database or disk is full"), True),
        (db_error(OperationalError, "server closed the connection"), True),
        (db_error(IntegrityError, "UNIQUE constraint failed"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_passes_by_itself(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def _sqlite_error(*statements: str, path: str = ":memory:") -> sqlite3.Error:
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError(f"{statements} raised nothing")


def test_sqlite_statement_errors_do_not_pass_but_a_locked_database_does(tmp_path: Path) -> None:
    """Both are sqlite3.OperationalError; SQLite's result code tells a statement the database
    refuses every time (retried for ever, it would hold back what comes after it) from a lock."""
    missing = _sqlite_error("INSERT INTO calls VALUES (1)")
    garbled = _sqlite_error("INSERT INTO")
    path = str(tmp_path / "db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    locked = _sqlite_error("INSERT INTO t VALUES (1)", path=path)
    holder.close()
    assert all(isinstance(e, sqlite3.OperationalError) for e in (missing, garbled, locked))
    assert "no such table" in str(missing) and "locked" in str(locked)
    assert not is_transient(missing) and not is_transient(garbled)
    assert is_transient(locked)
    wrapped = [OperationalError("INSERT ...", {}, e) for e in (missing, locked)]
    assert [is_transient(e) for e in wrapped] == [False, True]
