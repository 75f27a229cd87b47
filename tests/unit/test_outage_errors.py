"""Which errors a request answers as the database away (503, try again) and which stay faults
(500, logged): is_outage, told apart from the write paths' broader is_transient."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from pbx.storage.errors import is_outage, is_transient
from tests.helpers import db_error


@pytest.mark.parametrize(
    "error",
    [
        db_error(OperationalError, "database is locked"),
        db_error(OperationalError, "could not connect to server", connection_invalidated=True),
        sqlite3.OperationalError("database or disk is full"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
    ],
    ids=["locked", "lost", "full", "starting"],
)
def test_the_database_away_locked_or_full_is_an_outage(error: Exception) -> None:
    assert is_outage(error)


def test_what_the_write_paths_wait_out_but_a_request_must_not_hide() -> None:
    unreadable = PermissionError(13, "Permission denied")
    refused_value = InterfaceError(
        "INSERT ...", {}, asyncpg.exceptions._base.DataError("value out of int32 range")
    )
    for error in (unreadable, refused_value):
        assert is_transient(error) and not is_outage(error)
    assert not is_outage(db_error(IntegrityError, "UNIQUE constraint failed: calls.linkedid"))
    assert not is_outage(RuntimeError("a bug"))
