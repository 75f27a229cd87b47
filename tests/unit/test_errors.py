"""Which database failures pass by themselves: the driver's own errors too, as the short
transactions meet them on the driver's connection (SQLite's sqlite3, PostgreSQL's asyncpg)."""

from __future__ import annotations

import sqlite3

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
