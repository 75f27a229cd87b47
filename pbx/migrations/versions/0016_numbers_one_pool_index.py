"""numbers: drop ix_numbers_pool_held, a prefix of ix_numbers_pool_free

(site, pool, held_until) is the start of (site, pool, held_until, number), which migration 0013
added for the allocation rule, and every query that could use the shorter one can use the
longer one: a pool's never-leased numbers (held_until IS NULL), its free ones, its held ones.
Both indexes change whenever a number is taken or its lease extended (held_until moves), so the
shorter one only cost writes: two of the ~28 pages a new visit wrote to SQLite's WAL on its own
(bench/README.md), and on PostgreSQL a second index entry per row version of a hot row.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_numbers_pool_held", table_name="numbers")


def downgrade() -> None:
    op.create_index("ix_numbers_pool_held", "numbers", ["site", "pool", "held_until"])
