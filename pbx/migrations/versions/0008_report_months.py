"""report months: closed months of the report, kept

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "month_versions",
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_month_versions")),
    )
    op.create_table(
        "report_months",
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("group_by", sa.String(length=16), nullable=False),
        sa.Column("probable", sa.Boolean(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tallies", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "group_by", "probable", "fingerprint", "month", name=op.f("pk_report_months")
        ),
    )


def downgrade() -> None:
    op.drop_table("report_months")
    op.drop_table("month_versions")
