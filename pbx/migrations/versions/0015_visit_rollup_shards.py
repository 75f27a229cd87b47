"""visit_channels, visit_facets: a `shard` in the key, so concurrent visits count on different rows

A visit's rollup counts are upserted in its session's transaction, and on PostgreSQL the row's
lock is held until that transaction commits. Most visits of a day share a key (direct traffic,
an empty term), so every daemon's new visits waited on one row: 170 ms per upsert on average at
200 visits/s (bench/soak.py, pg_stat_statements). A count now goes to one of 16 rows of its key
(pbx.storage.visit_rollups); the rows already there become shard 0. SQLite has one writer and
keeps counting on shard 0.

Revision ID: 0015
Revises: 0014
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

KEYS = {
    "visit_channels": ["day", "site", "pool", "source", "medium", "campaign"],
    "visit_facets": ["facet", "day", "site", "source", "medium", "value"],
}


def _on_sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _batch(table: str) -> Any:
    """ALTER on PostgreSQL; on SQLite the table is copied, and stays WITHOUT ROWID."""
    sqlite = _on_sqlite()
    return op.batch_alter_table(
        table,
        recreate="always" if sqlite else "never",
        table_kwargs={"sqlite_with_rowid": False} if sqlite else {},
    )


def upgrade() -> None:
    sqlite = _on_sqlite()
    for table, keys in KEYS.items():
        with _batch(table) as batch:
            # before `visits` (on SQLite; PostgreSQL appends): SQLite 3.40's integrity_check
            # reads a WITHOUT ROWID table whose key column follows a non-key one wrongly and
            # reports "NULL value in visit_channels.visits" for every row (`calltrack backup`
            # checks its copy with it)
            batch.add_column(
                sa.Column("shard", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
                **({"insert_before": "visits"} if sqlite else {}),
            )
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", [*keys, "shard"])


def downgrade() -> None:
    bind = op.get_bind()
    for table, keys in KEYS.items():
        # the shards of a key summed into one row, as the key was before
        rows = bind.execute(
            sa.text(
                f"SELECT {', '.join(keys)}, SUM(visits) AS visits FROM {table}"
                f" GROUP BY {', '.join(keys)}"
            )
        ).mappings()
        summed = [dict(row) for row in rows]
        bind.execute(sa.text(f"DELETE FROM {table}"))
        with _batch(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.drop_column("shard")
            batch.create_primary_key(f"pk_{table}", keys)
        if summed:
            columns = ", ".join([*keys, "visits"])
            values = ", ".join(f":{c}" for c in [*keys, "visits"])
            bind.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), summed)
