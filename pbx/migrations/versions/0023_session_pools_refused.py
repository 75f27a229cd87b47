"""session_pools.refused: a visit the pool refused stays lost when a later page gets a number

`session_pools.tracking` is the pool's latest outcome for the session, since it is read back as
the session's state: a visit that got the fallback number (the pool exhausted, or its client
holding too many numbers) and a number at a later page counted as tracked, so the pool-size
report undercounted short bursts of exhaustion. `refused` keeps the first refusal and is never
cleared; for the rows stored before, it is what their latest outcome says.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("session_pools", sa.Column("refused", sa.String(16)))
    op.execute(
        "UPDATE session_pools SET refused = tracking WHERE tracking IN ('exhausted', 'ip_cap')"
    )


def downgrade() -> None:
    op.drop_column("session_pools", "refused")
