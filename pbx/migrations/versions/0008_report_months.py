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
        sa.Column("filters", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tallies", sa.Text(), nullable=False),
        sa.Column("kept_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model",
            "group_by",
            "probable",
            "fingerprint",
            "filters",
            "month",
            name=op.f("pk_report_months"),
        ),
    )
    with op.batch_alter_table("report_months", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_months_kept_at"), ["kept_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_months", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_months_kept_at"))

    op.drop_table("report_months")
    op.drop_table("month_versions")
