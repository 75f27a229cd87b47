"""Which database failures pass by themselves, so a write is worth retrying, and what to call
them in the log and in /healthz."""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
from sqlalchemy import exc


def is_transient(error: Exception) -> bool:
    """True when the database could not be reached or could not take the write just now
    (unreachable, restarting, locked, full, read-only for a while, timed out): the same write
    can succeed later. False for what it will refuse every time (a value too long or of the
    wrong type, a broken constraint) and for anything that is not a database failure at all.

    sqlite3's and asyncpg's own errors count too: the short transactions (db.Transactions) run
    on the driver's connection, so a full disk or a lost server reaches their callers unwrapped.
    """
    if isinstance(error, exc.DBAPIError):
        if _sqlite_refuses_the_statement(error.orig):
            return False
        return (
            error.connection_invalidated
            or isinstance(error, exc.OperationalError | exc.InterfaceError)
            or _transient_sqlstate(getattr(error.orig, "sqlstate", None))
        )
    if _sqlite_refuses_the_statement(error):
        return False
    # asyncpg's own, as the short transactions on PostgreSQL (db._AsyncpgTx) meet them: the
    # server's by their code (a lost connection is class 08), and the client's refusal to use
    # a connection the server closed
    if isinstance(error, asyncpg.PostgresError):
        return _transient_sqlstate(error.sqlstate)
    if isinstance(error, asyncpg.InterfaceError):
        return "connection is closed" in str(error)
    # a pool that has no connection to give, or a connection that could not be made
    return isinstance(
        error, exc.TimeoutError | exc.DisconnectionError | OSError | sqlite3.OperationalError
    )


#: what a database failure can be raised as: SQLAlchemy's, or a driver's unwrapped (the short
#: transactions run on the driver's connection)
_DATABASE_ERRORS = (
    exc.DBAPIError,
    exc.TimeoutError,
    exc.DisconnectionError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def is_outage(error: Exception) -> bool:
    """The database away, locked or full, as a request meets it: a database error that
    is_transient. Not any OSError, which is_transient counts for the write paths (a connection
    refused): in a request a folder the daemon may not read raises one, which is a fault to fix,
    not a wait; nor a value asyncpg refused to send (its own DataError, an InterfaceError)."""
    driver = getattr(error, "orig", None) or error
    if isinstance(driver, asyncpg.exceptions._base.DataError):
        return False
    return isinstance(error, _DATABASE_ERRORS) and is_transient(error)


def _sqlite_refuses_the_statement(error: object) -> bool:
    """SQLite's SQLITE_ERROR: the statement is wrong for this database (no such table or column,
    SQL it cannot parse), every time; sqlite3 raises it as an OperationalError, as it does a
    locked, full or unreadable database (SQLITE_BUSY, SQLITE_FULL, SQLITE_IOERR...), which do
    pass. Told apart by the primary result code (its low byte)."""
    code = getattr(error, "sqlite_errorcode", None)
    return (
        isinstance(error, sqlite3.OperationalError)
        and isinstance(code, int)
        and code & 0xFF == sqlite3.SQLITE_ERROR
    )


#: PostgreSQL error codes that pass by themselves. Classes: 08 the connection failed, 53 out of
#: resources (disk full, too many connections), 57P0 the server is shutting down, starting up
#: or restarting (asyncpg's "cannot connect now", which SQLAlchemy wraps in a bare DBAPIError);
#: codes: 40001/40P01 serialization failure and deadlock (retrying is the cure), 25006 a
#: read-only transaction (a replica being promoted), 57014 a statement cancelled (its
#: statement_timeout on a loaded server, an admin's pg_cancel_backend) and 55P03 a lock not
#: had in time (lock_timeout).
_TRANSIENT_CLASSES = ("08", "53", "57P0")
_TRANSIENT_CODES = frozenset({"40001", "40P01", "25006", "57014", "55P03"})


def _transient_sqlstate(code: object) -> bool:
    return isinstance(code, str) and (
        code in _TRANSIENT_CODES or code.startswith(_TRANSIENT_CLASSES)
    )


REASON_MAX = 200


def outage_reason(error: BaseException) -> str:
    """What is wrong, in words an admin can act on: "full: database or disk is full
    (SQLITE_FULL)" when SQLite ran out of space, else "down: <the driver's error>"."""
    driver = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    name = getattr(driver, "sqlite_errorname", None)
    if name == "SQLITE_FULL":
        return f"full: {driver} ({name})"
    detail = f"{type(driver).__name__}: {driver}" if str(driver) else type(driver).__name__
    return f"down: {detail}"[:REASON_MAX]


def log_failure(logger: logging.Logger, what: str, error: BaseException) -> None:
    """Log that `what` failed (a job that is tried again): one line naming the database's state
    when it is away or full, which /healthz and storage.health report too, so an outage is not
    a traceback every few seconds; anything else, a bug, with its traceback."""
    if isinstance(error, Exception) and is_transient(error):
        logger.warning("%s: database %s", what, outage_reason(error))
    else:
        logger.error("%s", what, exc_info=error)
