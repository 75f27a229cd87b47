"""write_behind_progress: the last write-behind part each daemon committed (PostgreSQL)

A part whose COMMIT lost its connection may have landed: it is written again only if its number
is not the writer's last, so that page views and page counts are not doubled.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "write_behind_progress",
        sa.Column("writer", sa.String(length=32), nullable=False),
        sa.Column("part", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("writer", name=op.f("pk_write_behind_progress")),
    )
    op.create_index(
        op.f("ix_write_behind_progress_written_at"), "write_behind_progress", ["written_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_write_behind_progress_written_at"), table_name="write_behind_progress")
    op.drop_table("write_behind_progress")
