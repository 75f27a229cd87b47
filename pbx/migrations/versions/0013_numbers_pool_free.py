"""numbers: an index in the order of the allocation rule, so taking a number reads one entry

"Free the longest" (number_claims._LONGEST_FREE) orders a pool's free numbers by held_until
with the never-leased (NULL) first, then by number. PostgreSQL's index on (site, pool,
held_until) keeps NULLs last, so every lease sorted the whole free list: 13 ms a lease at
41,000 numbers a pool, which capped two daemons at ~90 new visits/s (bench/soak.py). With this
index the same query reads one entry (0.06 ms). SQLite puts NULLs first in ascending order
anyway, so there the index is the plain columns.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    held_until = sa.text("held_until NULLS FIRST") if postgres else "held_until"
    op.create_index("ix_numbers_pool_free", "numbers", ["site", "pool", held_until, "number"])


def downgrade() -> None:
    op.drop_index("ix_numbers_pool_free", table_name="numbers")
