"""Which database failures pass by themselves, so a write is worth retrying."""

from __future__ import annotations

from sqlalchemy import exc


def is_transient(error: Exception) -> bool:
    """True when the database could not be reached or could not take the write just now
    (unreachable, restarting, locked, read-only for a while, timed out): the same write can
    succeed later. False for what it will refuse every time (a value too long or of the wrong
    type, a broken constraint) and for anything that is not a database failure at all.
    """
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(
            error, exc.OperationalError | exc.InterfaceError
        )
    # a pool that has no connection to give, or a connection that could not be made
    return isinstance(error, exc.TimeoutError | exc.DisconnectionError | OSError)
