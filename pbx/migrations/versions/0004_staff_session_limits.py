"""staff sessions: the fingerprint of the password hash they were opened with

Revision ID: 0004_staff_sessions
Revises: 0003

Sessions from before this revision have an empty fingerprint, which matches no password: their
users log in once more.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_staff_sessions"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("password_sha256", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.drop_column("password_sha256")
