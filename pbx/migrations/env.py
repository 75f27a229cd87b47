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
    context.run_migrations()
