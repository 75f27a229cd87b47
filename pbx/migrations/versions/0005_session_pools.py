"""session pools: a session leases one number per own number of the site

Revision ID: 0005
Revises: 0004_staff_sessions
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_staff_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_pools",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("replaces", sa.Text(), nullable=False),
        sa.Column("tracking", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_session_pools_session_id_sessions"
        ),
        sa.PrimaryKeyConstraint("session_id", "pool", name="pk_session_pools"),
    )
    op.create_index("ix_session_pools_started_at", "session_pools", ["started_at"], unique=False)
    # sessions so far had one pool, standing in for every own number ("" = all of them)
    op.execute(
        "INSERT INTO session_pools (session_id, pool, site, replaces, tracking, started_at)"
        " SELECT id, pool, site, '', tracking, started_at FROM sessions WHERE pool IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_session_pools_started_at", table_name="session_pools")
    op.drop_table("session_pools")
