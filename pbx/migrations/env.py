"""Alembic environment: migrations run on a connection handed over by pbx.storage.db."""

from alembic import context

from pbx.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    was = context.get_context().get_current_revision()
    context.run_migrations()
    # pbx.storage.db.upgrade turns SQLite's foreign keys off for a batch migration's table
    # copy: what they would have refused is refused here, before the commit (only when a
    # migration ran: the check reads every referring table)
    migrated = context.get_context().get_current_revision() != was
    check = connection.dialect.name == "sqlite" and migrated
    if check and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
        raise RuntimeError(f"the migration left rows that refer to nothing: {broken[:5]}")
