"""staff UI: call review fields, tags, converted recordings, staff sessions

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_tags",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name=op.f("fk_call_tags_call_id_calls")),
        sa.PrimaryKeyConstraint("call_id", "tag", name=op.f("pk_call_tags")),
    )
    with op.batch_alter_table("call_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_call_tags_tag"), ["tag"], unique=False)

    op.create_table(
        "staff_sessions",
        sa.Column("id_sha256", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_staff_sessions")),
    )
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_staff_sessions_last_seen"), ["last_seen"], unique=False
        )

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("recording_peaks", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sale_cents", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        for column in (
            "reviewed_at",
            "reviewed_by",
            "sale_cents",
            "notes",
            "score",
            "recording_peaks",
            "recording_seconds",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("staff_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_staff_sessions_last_seen"))
    op.drop_table("staff_sessions")
    with op.batch_alter_table("call_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_tags_tag"))
    op.drop_table("call_tags")
