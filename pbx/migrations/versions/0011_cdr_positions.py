"""cdr_positions: where reconciliation stopped reading Asterisk's CDR file

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cdr_positions",
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("inode", sa.String(length=20), nullable=False),
        sa.Column("device", sa.String(length=20), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("mark", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_cdr_positions")),
    )


def downgrade() -> None:
    op.drop_table("cdr_positions")
