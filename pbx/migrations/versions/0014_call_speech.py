"""call_speech, call_keywords, call_tags.automatic: what the speech worker heard in a call

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "call_tags",
        sa.Column("automatic", sa.Boolean(), server_default="0", nullable=False),
    )
    op.create_table(
        "call_speech",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("analysed_at", sa.Float(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("segments", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_speech_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_call_speech")),
    )
    op.create_index(op.f("ix_call_speech_analysed_at"), "call_speech", ["analysed_at"])
    op.create_table(
        "call_keywords",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("phrase", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("at_seconds", sa.Float(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_keywords_call_id_calls")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_keywords")),
    )
    op.create_index(op.f("ix_call_keywords_call_id"), "call_keywords", ["call_id"])
    op.create_index("ix_call_keywords_phrase_call_id", "call_keywords", ["phrase", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_call_keywords_phrase_call_id", table_name="call_keywords")
    op.drop_index(op.f("ix_call_keywords_call_id"), table_name="call_keywords")
    op.drop_table("call_keywords")
    op.drop_index(op.f("ix_call_speech_analysed_at"), table_name="call_speech")
    op.drop_table("call_speech")
    with op.batch_alter_table("call_tags") as batch:
        batch.drop_column("automatic")
